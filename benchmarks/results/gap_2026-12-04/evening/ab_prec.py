import sys, time, statistics
from edge_mlla import Detector
from edge_mlla.bench.run import default_image
from edge_mlla.ops import read_image
img = read_image(default_image())
dets = [Detector(sys.argv[1]), Detector(sys.argv[1], precision="f32")]
print([d.float_precision for d in dets])
for d in dets:
    for _ in range(20): d(img)
rs = []
for rnd in range(5):
    t = [[], []]
    for k in range(150):
        for j in (0, 1):
            i = (j + k) % 2
            a = time.perf_counter(); dets[i](img); t[i].append(time.perf_counter() - a)
    m = [statistics.median(v) * 1e3 for v in t]; rs.append(m[1] / m[0])
    print(f"round {rnd}: bf16 float ops {m[0]:.3f} ms, f32 float ops {m[1]:.3f} ms, ratio {m[1]/m[0]:.3f}", flush=True)
print(f"median {statistics.median(rs):.3f}")
