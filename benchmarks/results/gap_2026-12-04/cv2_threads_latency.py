import time, statistics, sys, cv2
from edge_mlla import Detector
from edge_mlla.bench.run import default_image
from edge_mlla.ops import read_image, preprocess
img = read_image(default_image())
det = Detector(sys.argv[1])
for _ in range(20): det(img)
x, metas = preprocess([img], det.imgsz, det.stride, rgb=False, batch_size=det.batch, layout=det._layout)
res = {1: [], 2: []}
tot = {1: [], 2: []}
for rnd in range(6):
    for nt in (1, 2):
        cv2.setNumThreads(nt)
        for _ in range(60):
            outs = det.backend.infer(x)
            a = time.perf_counter(); det._prepare(img, False); b = time.perf_counter()
            res[nt].append(b - a)
        for _ in range(40):
            a = time.perf_counter(); det(img); tot[nt].append(time.perf_counter() - a)
for nt in (1, 2):
    print(f"cv2 threads {nt}: prepare after infer {statistics.median(res[nt])*1e3:.3f} ms; whole call {statistics.median(tot[nt])*1e3:.3f} ms")
