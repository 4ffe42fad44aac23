"""Interleaved A/B of Detector end to end at batch 1 (latency hint) on INT8 IRs: per-round medians and ratios."""
import sys, time, statistics
from edge_mlla import Detector
from edge_mlla.bench.run import default_image
from edge_mlla.ops import read_image
img = read_image(default_image())
dets = [Detector(p, conf=0.25, iou=0.45) for p in sys.argv[1:]]
for d in dets:
    for _ in range(20): d(img)
ratios = []
for rnd in range(int(__import__("os").environ.get("ROUNDS", 6))):
    t = [[] for _ in dets]
    for k in range(150):
        for j in range(len(dets)):
            i = (j + k) % len(dets)
            a = time.perf_counter(); dets[i](img); t[i].append(time.perf_counter() - a)
    med = [statistics.median(v) * 1e3 for v in t]
    ratios.append(med[1] / med[0])
    print(f"round {rnd}: " + "  ".join(f"{m:.3f} ms" for m in med) + f"  ratio {med[1]/med[0]:.3f}", flush=True)
print(f"median ratio {statistics.median(ratios):.3f} (range {min(ratios):.3f}-{max(ratios):.3f})")
