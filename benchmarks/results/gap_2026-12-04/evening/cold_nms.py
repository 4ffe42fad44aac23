import sys, time, statistics, collections
import numpy as np
from edge_mlla import Detector
from edge_mlla.bench.run import default_image
from edge_mlla.ops import read_image, preprocess
from edge_mlla.ops import boxes as B
from edge_mlla.ops import letterbox as L
img = read_image(default_image())
det = Detector(sys.argv[1])
for _ in range(20): det(img)
x, metas = preprocess([img], det.imgsz, det.stride, rgb=False, batch_size=det.batch, layout=det._layout)
outs = det.backend.infer(x)
pred = B._split_output(outs[0], 3)[0][0]
by_class = pred[:, 4:].T; best = by_class.max(0); cand = np.flatnonzero(best > 0.25); cls = by_class[:, cand].argmax(0); score = best[cand]
xyxy = B.xywh2xyxy(pred[cand, :4])
seg = collections.defaultdict(list); pc = time.perf_counter
for it in range(300):
    det.backend.infer(x)
    t = [pc()]
    order = np.argsort(-np.asarray(score), kind="stable"); t.append(pc())
    b = np.asarray(xyxy, np.float32)[order]; c = np.asarray(cls)[order]; t.append(pc())
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]); t.append(pc())
    o = B._overlap_matrix(b, area, 0.45); t.append(pc())
    o &= B._UPPER[:len(b), :len(b)]; s = o; t.append(pc())
    s &= c[:, None] == c; t.append(pc())
    keep = np.ones(len(b), bool); n_it = 0
    for _ in range(len(b)):
        new = ~(keep @ s); n_it += 1
        if (new == keep).all(): break
        keep = new
    t.append(pc())
    k = np.flatnonzero(keep); t.append(pc())
    for n, a, bb in zip(["argsort", "gather", "area", "_overlaps", "triu", "class mask", f"loop ({n_it} it)", "flatnonzero"], t, t[1:]): seg[n].append((bb - a) * 1e6)
    # the letterbox, cold too
    det.backend.infer(x)
    t0 = pc(); im = L.as_bgr(img, False, False) if hasattr(L, "as_bgr") else img; t1 = pc()
    preprocess([img], det.imgsz, det.stride, rgb=False, batch_size=det.batch, layout=det._layout); t2 = pc()
    seg["preprocess (cold)"].append((t2 - t1) * 1e6)
for n, v in seg.items(): print(f"{statistics.median(v):8.1f} us  {n}")
