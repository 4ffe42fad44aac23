import sys, collections, numpy as np, openvino as ov
from edge_mlla.runtimes import openvino as rov
core = ov.Core()
m = rov._fuse_preprocess(ov, core.read_model(sys.argv[1]))
c = core.compile_model(m, "CPU", {"PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": "YES"})
r = c.create_infer_request()
x = np.random.randint(0, 255, tuple(c.inputs[0].shape), dtype=np.uint8)
tot = collections.Counter(); N = 300
for i in range(N + 30):
    r.infer({0: x})
    if i >= 30:
        for p in r.profiling_info:
            tot[(p.node_name, p.node_type, p.exec_type)] += p.real_time.total_seconds() * 1e6
pat = sys.argv[2] if len(sys.argv) > 2 else ""
print(f"total {sum(tot.values())/N/1000:.3f} ms")
sel = [(k, v) for k, v in tot.items() if pat in k[0] and k[1] not in ("Convolution",)]
print(f"non-conv nodes matching {pat!r}: {sum(v for _, v in sel)/N:.1f} us")
for (n, t, e), us in sorted(sel, key=lambda kv: -kv[1])[:40]:
    print(f"  {us/N:7.1f} us  {t:16s} {e:24s} {n[:90]}")
