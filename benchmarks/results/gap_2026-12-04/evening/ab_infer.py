"""Interleaved A/B of compiled INT8 IRs (u8 NHWC fused preprocessing, latency hint): median infer ms per round."""
import os, sys
import numpy as np, openvino as ov
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _ab import rounds
from edge_mlla.runtimes import openvino as rov
core = ov.Core()
reqs = [core.compile_model(rov._fuse_preprocess(ov, core.read_model(p)), "CPU", {"PERFORMANCE_HINT": "LATENCY"})
        .create_infer_request() for p in sys.argv[1:]]
x = np.random.randint(0, 255, (1, 416, 416, 3), dtype=np.uint8)
for r in reqs:
    for _ in range(30): r.infer({0: x})
rounds([lambda r=r: r.infer({0: x}) for r in reqs], 5, 200, [os.path.basename(os.path.dirname(p)) for p in sys.argv[1:]])
