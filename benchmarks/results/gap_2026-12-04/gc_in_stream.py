import sys, time, gc, collections
from edge_mlla import Detector
from edge_mlla.clips import bundled_clip
from edge_mlla.stream import StreamRunner
det = Detector(sys.argv[1], hint="throughput")
clip = bundled_clip()
if len(sys.argv) > 2 and sys.argv[2] == "freeze":
    gc.collect(); gc.freeze()
st = {}; tot = collections.Counter(); cnt = collections.Counter()
def cb(phase, info):
    if phase == "start": st["t"] = time.perf_counter()
    else:
        tot[info["generation"]] += time.perf_counter() - st["t"]; cnt[info["generation"]] += 1
print("objects tracked:", len(gc.get_objects()), "threshold", gc.get_threshold())
for rnd in range(4):
    gc.callbacks.append(cb)
    n = 0; t0 = time.perf_counter(); tot.clear(); cnt.clear()
    with StreamRunner(det, clip, max_frames=300) as run:
        for _ in run: n += 1
    dt = time.perf_counter() - t0
    gc.callbacks.remove(cb)
    print(f"round {rnd}: {n/dt:.1f} fps; gc per gen (count, ms total): " + ", ".join(f"g{g}: {cnt[g]} / {tot[g]*1e3:.1f}" for g in sorted(cnt)))
