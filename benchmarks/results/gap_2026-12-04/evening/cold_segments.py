"""Where the cold (right after an inference) pre- and postprocessing time goes, segment by segment (medians, us)."""
import sys, time, statistics, collections
import numpy as np
from edge_mlla import Detector
from edge_mlla.bench.run import default_image
from edge_mlla.ops import read_image, preprocess
from edge_mlla.ops import boxes as B
from edge_mlla.ops.letterbox import scale_boxes
from edge_mlla.results import Detections
img = read_image(default_image())
det = Detector(sys.argv[1])
for _ in range(20): det(img)
x, metas = preprocess([img], det.imgsz, det.stride, rgb=False, batch_size=det.batch, layout=det._layout)
seg = collections.defaultdict(list)
pc = time.perf_counter
for it in range(300):
    outs = det.backend.infer(x)
    t = [pc()]
    B.check_thresholds(0.25, 0.45, 300); t.append(pc())
    preds, e2e = B._split_output(outs[0], 3); t.append(pc())
    pred = preds[0]
    by_class = pred[:, 4:].T; best = by_class.max(0); t.append(pc())
    cand = np.flatnonzero(best > 0.25); cls = by_class[:, cand].argmax(0); score = best[cand]; t.append(pc())
    xyxy = B.xywh2xyxy(pred[cand, :4]); t.append(pc())
    keep = B.nms(xyxy, score, 0.45, cls, 300); t.append(pc())
    xyxy, score, cls = xyxy[keep], score[keep], cls[keep]; t.append(pc())
    xyxy = scale_boxes(xyxy, metas[0]); t.append(pc())
    d = Detections(xyxy=np.ascontiguousarray(xyxy, np.float32), confidence=score.astype(np.float32), class_id=cls.astype(np.int64), names=det.names); t.append(pc())
    prep = det._prepare(img, False); t.append(pc())
    names = ["check", "split_output", "class max", "candidates", "xywh2xyxy", "nms", "gather", "scale_boxes", "Detections", "_prepare (next image)"]
    for n, a, b in zip(names, t, t[1:]): seg[n].append((b - a) * 1e6)
tot = 0
for n, v in seg.items():
    m = statistics.median(v); tot += m
    print(f"{m:8.1f} us  {n}")
print(f"{tot:8.1f} us  sum of medians; candidates {len(cand)}, kept {len(keep)}")
