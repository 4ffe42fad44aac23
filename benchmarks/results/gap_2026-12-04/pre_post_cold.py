import time, statistics, sys
from edge_mlla import Detector
from edge_mlla.bench.run import default_image
from edge_mlla.ops import read_image, preprocess
img = read_image(default_image())
det = Detector(sys.argv[1], **({"threads": int(sys.argv[2])} if len(sys.argv) > 2 else {}))
for _ in range(20): det(img)
x, metas = preprocess([img], det.imgsz, det.stride, rgb=False, batch_size=det.batch, layout=det._layout)
res = {}
for mode in ("after_infer", "after_sleep_2ms", "after_sleep_20ms"):
    fin, pre = [], []
    for _ in range(150):
        outs = det.backend.infer(x)
        if mode == "after_sleep_2ms": time.sleep(0.002)
        if mode == "after_sleep_20ms": time.sleep(0.02)
        a = time.perf_counter(); det._finish(outs, metas); b = time.perf_counter()
        det._prepare(img, False); c = time.perf_counter()
        fin.append(b - a); pre.append(c - b)
    print(f"{mode:18s} finish {statistics.median(fin)*1e3:.3f} ms  prepare(after finish) {statistics.median(pre)*1e3:.3f} ms")
