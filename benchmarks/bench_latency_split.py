"""Where batch-1 latency goes on each deploy path (a script, not a test): ours (`Detector`, its `timing`) against
Ultralytics' `YOLO(ir).predict` (its `speed`), the two called alternately on one image, medians in ms.

Usage:
    .venv/bin/python benchmarks/bench_latency_split.py OURS_INT8.xml ULTRALYTICS_INT8_openvino_model/ [--calls 150]

Both IRs from the same checkpoint (e.g. the files `bench_vs_ultralytics.py` makes). Recorded run:
`benchmarks/results/latency_split.md` (with the machine).
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ours")
    ap.add_argument("ultralytics")
    ap.add_argument("--calls", type=int, default=150)
    ap.add_argument("--imgsz", type=int, default=416)
    a = ap.parse_args()

    from ultralytics import YOLO

    from edge_mlla import Detector
    from edge_mlla.bench.machine import describe_machine, machine_line
    from edge_mlla.bench.run import default_image
    from edge_mlla.ops import read_image

    img = read_image(default_image())
    det, ul = Detector(a.ours), YOLO(a.ultralytics, task="detect")
    kw = dict(imgsz=a.imgsz, conf=det.conf, iou=det.iou, verbose=False)
    for _ in range(5):
        det(img), ul.predict(img, **kw)
    keys = ("preprocess", "inference", "postprocess", "total")
    ours: dict[str, list[float]] = {k: [] for k in keys}
    theirs: dict[str, list[float]] = {k: [] for k in keys}
    for _ in range(a.calls):
        t = time.perf_counter()
        tm = det(img).timing
        ours["total"].append((time.perf_counter() - t) * 1e3)
        for k, v in zip(keys, (tm.preprocess, tm.infer, tm.postprocess)):
            ours[k].append(v * 1e3)
        t = time.perf_counter()
        r = ul.predict(img, **kw)[0]
        theirs["total"].append((time.perf_counter() - t) * 1e3)
        for k in keys[:3]:
            theirs[k].append(r.speed[k])
    print(f"Machine: {machine_line(describe_machine())}; {a.calls} alternating calls, medians, ms.\n")
    print("| | " + " | ".join(keys) + " |\n|---|" + "---:|" * len(keys))
    for name, d in (("ours (`Detector`)", ours), ("Ultralytics (`predict`, its `speed`)", theirs)):
        print(f"| {name} | " + " | ".join(f"{statistics.median(d[k]):.2f}" for k in keys) + " |")


if __name__ == "__main__":
    main()
