import sys, time
from edge_mlla import Detector
from edge_mlla.clips import bundled_clip
from edge_mlla.stream import StreamRunner
clip = bundled_clip()
dets = {j: Detector(sys.argv[1], hint="throughput", **({"jobs": j} if j else {})) for j in (None, 2, 4, 6)}
def stream(det):
    n = 0; w0 = time.perf_counter(); t1 = None
    with StreamRunner(det, clip, max_frames=300) as run:
        for _ in run:
            n += 1
            if n == 1: t1 = time.perf_counter()
    return (n - 1) / (time.perf_counter() - t1)
for d in dets.values(): stream(d)
res = {j: [] for j in dets}
for r in range(4):
    for j, d in dets.items(): res[j].append(stream(d))
import statistics
for j, v in res.items(): print(f"jobs={j}: median {statistics.median(v):.1f} fps  {[round(x,1) for x in v]}")
