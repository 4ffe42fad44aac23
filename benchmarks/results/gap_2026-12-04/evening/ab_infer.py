"""Interleaved A/B of compiled INT8 IRs (u8 NHWC fused preprocessing, latency hint): median infer ms per round."""
import sys, time, statistics, numpy as np, openvino as ov
from edge_mlla.runtimes import openvino as rov
core = ov.Core()
paths = sys.argv[1:]
reqs = []
for p in paths:
    c = core.compile_model(rov._fuse_preprocess(ov, core.read_model(p)), "CPU", {"PERFORMANCE_HINT": "LATENCY"})
    reqs.append(c.create_infer_request())
x = np.random.randint(0, 255, (1, 416, 416, 3), dtype=np.uint8)
for r in reqs:
    for _ in range(30): r.infer({0: x})
for rnd in range(5):
    t = [[] for _ in reqs]
    for k in range(200):
        for j in range(len(reqs)):
            i = (j + k) % len(reqs)
            a = time.perf_counter(); reqs[i].infer({0: x}); t[i].append(time.perf_counter() - a)
    med = [statistics.median(v) * 1e3 for v in t]
    print(f"round {rnd}: " + "  ".join(f"{m:.3f}" for m in med) + "  ratios " + " ".join(f"{m/med[0]:.3f}" for m in med[1:]))
