import sys, collections, numpy as np, openvino as ov
core = ov.Core()
m = core.read_model(sys.argv[1])
if len(sys.argv) > 2 and sys.argv[2] == "ppp":
    from edge_mlla.runtimes import openvino as rov
    m = rov._fuse_preprocess(ov, m)
c = core.compile_model(m, "CPU", {"PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": "YES"})
r = c.create_infer_request()
x = np.random.randint(0, 255, tuple(c.inputs[0].shape), dtype=np.uint8) if c.inputs[0].element_type == ov.Type.u8 else np.random.rand(*c.inputs[0].shape).astype(np.float32)
tot = collections.Counter(); byty = collections.Counter(); cnt = collections.Counter()
N = 200
for i in range(N + 20):
    r.infer({0: x})
    if i >= 20:
        for p in r.profiling_info:
            us = p.real_time.total_seconds() * 1e6
            tot[(p.node_name, p.node_type, p.exec_type)] += us
print("input", c.inputs[0].element_type, c.inputs[0].shape, "precision", c.get_property("INFERENCE_PRECISION_HINT"))
s = sum(tot.values()) / N
print(f"total {s/1000:.2f} ms/infer (sum of layers)")
for (n, t, e), us in tot.items():
    byty[(t, e.split('_')[0] if e else e)] += us; cnt[(t, e.split('_')[0] if e else e)] += 1
print("by type/exec:")
for k, us in byty.most_common(25):
    print(f"  {us/N/1000:6.3f} ms  {cnt[k]:4d}  {k}")
print("top nodes:")
for (n, t, e), us in tot.most_common(25):
    print(f"  {us/N:7.1f} us  {t:16s} {e:28s} {n[:80]}")
