"""A/B: float IR/ONNX exported with and without split_cv1, Detector end to end at batch 1 (interleaved)."""
import sys, time, statistics
from edge_mlla import Detector
from edge_mlla.bench.run import default_image
from edge_mlla.ops import read_image
img = read_image(default_image())
old, new = sys.argv[1], sys.argv[2]
for kw in ({"precision": "bf16"}, {"precision": "f32"}, {"backend": "onnxruntime"}):
    o_, n_ = (old, new) if "backend" not in kw else (sys.argv[3], sys.argv[4])
    dets = [Detector(p, **kw) for p in (o_, n_)]
    for d in dets:
        for _ in range(10): d(img)
    rs = []
    for rnd in range(4):
        t = [[], []]
        for k in range(60):
            for j in (0, 1):
                i = (j + k) % 2
                a = time.perf_counter(); dets[i](img); t[i].append(time.perf_counter() - a)
        m = [statistics.median(v) * 1e3 for v in t]; rs.append(m[1] / m[0])
    print(kw, f"old {m[0]:.2f} ms new {m[1]:.2f} ms; new/old median {statistics.median(rs):.3f} ({min(rs):.3f}-{max(rs):.3f})", flush=True)
    for d in dets: d.close()
