import time, statistics, sys
import numpy as np
from edge_mlla import Detector
from edge_mlla.bench.run import default_image
from edge_mlla.ops import read_image
from edge_mlla.ops import preprocess, postprocess, as_bgr
img = read_image(default_image())
det = Detector(sys.argv[1])
for _ in range(20): det(img)
x, metas = preprocess([img], det.imgsz, det.stride, rgb=False, batch_size=det.batch, layout=det._layout)
outs = det.backend.infer(x)
def t(f, n=300):
    ts = []
    for _ in range(n):
        a = time.perf_counter(); f(); ts.append(time.perf_counter() - a)
    return statistics.median(ts) * 1e3
print("img", img.shape, "out", outs[0].shape, "n det", len(det(img)))
print(f"as_bgr      {t(lambda: as_bgr(img, False, det.strict)):.3f} ms")
print(f"preprocess  {t(lambda: preprocess([img], det.imgsz, det.stride, rgb=False, batch_size=det.batch, layout=det._layout)):.3f} ms")
print(f"_prepare    {t(lambda: det._prepare(img, False)):.3f} ms")
print(f"infer       {t(lambda: det.backend.infer(x), 200):.3f} ms")
print(f"_finish     {t(lambda: det._finish(outs, metas)):.3f} ms")
print(f"whole call  {t(lambda: det(img), 200):.3f} ms")
import cProfile, pstats
pr = cProfile.Profile(); pr.enable()
for _ in range(300): det._finish(outs, metas)
pr.disable(); pstats.Stats(pr).sort_stats("tottime").print_stats(14)
pr = cProfile.Profile(); pr.enable()
for _ in range(300): det._prepare(img, False)
pr.disable(); pstats.Stats(pr).sort_stats("tottime").print_stats(10)
