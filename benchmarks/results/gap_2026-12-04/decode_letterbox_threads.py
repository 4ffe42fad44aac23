import cv2, time, sys
def run(params):
    cap = cv2.VideoCapture("edge_mlla/data/clips/bccd_pan.mp4", cv2.CAP_FFMPEG, params)
    n = 0; t = time.process_time(); w = time.perf_counter()
    while True:
        ok, f = cap.read()
        if not ok: break
        n += 1
    return (time.process_time() - t) / n * 1e3, (time.perf_counter() - w) / n * 1e3, cap.get(cv2.CAP_PROP_N_THREADS)
print(cv2.__version__)
for r in range(3):
    for name, p in (("default", []), ("1 thread", [cv2.CAP_PROP_N_THREADS, 1]), ("2 threads", [cv2.CAP_PROP_N_THREADS, 2])):
        c, w, nt = run(p)
        print(f"{name:10s} CPU {c:.3f} ms/frame wall {w:.3f} (n_threads prop {nt})")
import numpy as np
from edge_mlla.ops import read_image
from edge_mlla.ops.letterbox import letterbox
img = read_image("edge_mlla/data/bccd/images/val/" + __import__("os").listdir("edge_mlla/data/bccd/images/val")[0])
for nt in (2, 1, 2, 1):
    cv2.setNumThreads(nt)
    t = time.process_time(); w = time.perf_counter()
    for _ in range(2000): letterbox(img, (416, 416))
    print(f"letterbox cv2 threads {nt}: CPU {(time.process_time()-t)/2:.3f} ms wall {(time.perf_counter()-w)/2:.3f} ms")
