import sys, time, numpy as np
from edge_mlla import Detector
from edge_mlla.clips import bundled_clip
from edge_mlla.stream import StreamRunner
from edge_mlla.ops import read_image, preprocess
from edge_mlla.bench.run import default_image
det = Detector(sys.argv[1], hint="throughput")
clip = bundled_clip()
def stream():
    n = 0; c0 = time.process_time(); w0 = time.perf_counter()
    with StreamRunner(det, clip, max_frames=300) as run:
        for _ in run: n += 1
    return n, time.process_time() - c0, time.perf_counter() - w0
def rawinfer(n=300):
    img = read_image(default_image())
    x, metas = preprocess([img], det.imgsz, det.stride, rgb=False, batch_size=det.batch, layout=det._layout)
    c0 = time.process_time(); w0 = time.perf_counter()
    futs = []
    for i in range(n):
        futs.append(det.backend.submit(x))
        if len(futs) > 3: futs.pop(0).result()
    for f in futs: f.result()
    return n, time.process_time() - c0, time.perf_counter() - w0
def submitfull(n=300):
    img = read_image(default_image())
    c0 = time.process_time(); w0 = time.perf_counter()
    futs = []
    for i in range(n):
        futs.append(det.submit(img))
        if len(futs) > 3: futs.pop(0).result()
    for f in futs: f.result()
    return n, time.process_time() - c0, time.perf_counter() - w0
for f in (stream, rawinfer, submitfull): f()
for r in range(3):
    for f in (stream, rawinfer, submitfull):
        n, c, w = f()
        print(f"{f.__name__:10s} {n/w:6.1f} fps  CPU {c/n*1e3:.2f} ms/frame  wall {w/n*1e3:.2f} ms/frame")
