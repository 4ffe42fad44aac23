import sys, time, statistics, json
from edge_mlla import Detector
from edge_mlla.bench.run import default_image
from edge_mlla.ops import read_image
img = read_image(default_image())
cfgs = [None] + [json.loads(c) for c in sys.argv[2:]]
dets = [Detector(sys.argv[1], **({"config": c} if c else {})) for c in cfgs]
for d in dets:
    for _ in range(20): d(img)
rs = [[] for _ in dets[1:]]
for rnd in range(5):
    t = [[] for _ in dets]
    for k in range(150):
        for j in range(len(dets)):
            i = (j + k) % len(dets)
            a = time.perf_counter(); dets[i](img); t[i].append(time.perf_counter() - a)
    med = [statistics.median(v) * 1e3 for v in t]
    for r, m in zip(rs, med[1:]): r.append(m / med[0])
    print(f"round {rnd}: " + "  ".join(f"{m:.3f}" for m in med), flush=True)
for c, r in zip(cfgs[1:], rs): print(c, f"median ratio {statistics.median(r):.3f} ({min(r):.3f}-{max(r):.3f})")
