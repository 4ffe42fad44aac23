import sys, time, statistics, collections
import numpy as np, cv2
from edge_mlla import Detector
from edge_mlla.bench.run import default_image
from edge_mlla.ops import read_image, preprocess
import importlib; L = importlib.import_module("edge_mlla.ops.letterbox")
from edge_mlla.ops.images import as_bgr
img = read_image(default_image())
det = Detector(sys.argv[1])
for _ in range(20): det(img)
x, metas = preprocess([img], det.imgsz, det.stride, rgb=False, batch_size=det.batch, layout=det._layout)
seg = collections.defaultdict(list); pc = time.perf_counter
keep_buf = np.empty((1, 416, 416, 3), np.uint8)
for it in range(300):
    det.backend.infer(x)
    t = [pc()]
    im = as_bgr(img, False, det.strict); t.append(pc())
    meta = L.letterbox_meta(im.shape[:2], det.imgsz, det.stride, False); t.append(pc())
    out = np.empty((1, 416, 416, 3), np.uint8); t.append(pc())
    (left, top), (uh, uw) = meta.pad, meta.resized_shape
    window = out[0][top: top + uh, left: left + uw]
    cv2.resize(im, (uw, uh), dst=window, interpolation=cv2.INTER_LINEAR); t.append(pc())
    o = out[0]; o[:top] = 114; o[top + uh:] = 114; o[top: top + uh, :left] = 114; o[top: top + uh, left + uw:] = 114; t.append(pc())
    for n, a, b in zip(["as_bgr", "letterbox_meta", "np.empty", "cv2.resize", "borders"], t, t[1:]): seg[n].append((b - a) * 1e6)
    det.backend.infer(x)
    a = pc(); w2 = keep_buf[0][top: top + uh, left: left + uw]; cv2.resize(im, (uw, uh), dst=w2, interpolation=cv2.INTER_LINEAR); seg["cv2.resize into a reused buffer"].append((pc() - a) * 1e6)
for n, v in seg.items(): print(f"{statistics.median(v):8.1f} us  {n}")
