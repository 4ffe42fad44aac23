import sys, time, statistics
from edge_mlla import Detector
from edge_mlla.clips import bundled_clip
from edge_mlla.stream import StreamRunner
clip = bundled_clip()
det = Detector(sys.argv[1], hint="throughput")
cfg = [(None, None), (4, None), (6, None), (6, 4)]
dets = {c: (det if c[1] is None else Detector(sys.argv[1], hint="throughput", jobs=c[1])) for c in cfg}
def stream(d, mi):
    n = 0; t1 = None
    with StreamRunner(d, clip, max_frames=300, max_inflight=mi) as run:
        for _ in run:
            n += 1
            if n == 1: t1 = time.perf_counter()
    return (n - 1) / (time.perf_counter() - t1)
for c in cfg: stream(dets[c], c[0])
res = {c: [] for c in cfg}
for r in range(4):
    for c in cfg: res[c].append(stream(dets[c], c[0]))
for c, v in res.items(): print(f"max_inflight={c[0]} jobs={c[1]}: median {statistics.median(v):.1f} fps  {[round(x,1) for x in v]}")
