import sys, time, os
from edge_mlla import Detector
from edge_mlla.stream import StreamRunner
from edge_mlla.clips import CLIP
det = Detector(sys.argv[1], hint="throughput")
t_end = time.time() + float(sys.argv[2])
while time.time() < t_end:
    n = 0; t0 = time.perf_counter()
    with StreamRunner(det, CLIP, max_frames=300) as run:
        for _ in run: n += 1
    print(f"{n / (time.perf_counter() - t0):.1f} FPS", flush=True)
