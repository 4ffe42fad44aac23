"""Detector end-to-end latency vs the backend's raw inference, and vs Ultralytics' predict, as a markdown table.

For each available backend and input size: the model is exported once (edge_mlla.export), then

* ``raw``: ``backend.infer(batch)`` on an already-preprocessed batch (the runtime alone);
* ``e2e``: ``Detector(image)`` (letterbox + infer + decode/NMS) on the same image;
* ``pre+post``: the SDK's own share inside those same e2e calls (``det.last_timing``);
* ``ultralytics``: ``YOLO(same file).predict(image)`` at the same conf/iou/imgsz (for ``.pt`` it runs
  the training form on a minimum-rectangle input, e.g. 640x480 instead of 640x640).

Raw, e2e and Ultralytics runs are interleaved so background load hits all alike; medians are reported.
"overhead in-call" is the SDK's pre+post time over the inference time within the same Detector calls,
the number least affected by a noisy machine. Batch 1,
one 640x480 BCCD image, f32 unless the row says otherwise. Not a test: run it by hand.

    .venv/bin/python benchmarks/bench_detector.py --weights edge_mlla/weights/yolo11n-mlla-bccd.pt
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _median_ms(xs: list[float]) -> float:
    return 1000 * statistics.median(xs)


def _ultralytics_precision(yolo) -> str:
    """What OpenVINO compiled Ultralytics' model in (it sets no precision hint)."""
    try:
        for obj in (yolo.predictor.model, getattr(yolo.predictor.model, "backend", None)):
            for attr in ("ov_compiled_model", "compiled_model", "model"):
                cm = getattr(obj, attr, None)
                if cm is not None and hasattr(cm, "get_property"):
                    return cm.get_property("INFERENCE_PRECISION_HINT").get_type_name() + " (device default)"
    except Exception:
        pass
    return "device default"


def bench_one(name: str, model: Path, imgsz: int, image: np.ndarray, runs: int, warmup: int, ul: bool) -> dict:
    from edge_mlla import Detector
    from edge_mlla.ops import preprocess

    kw = {"imgsz": imgsz} if name == "torch" else {}
    det = Detector(model, backend=name, conf=0.25, iou=0.45, **kw)
    batch, _ = preprocess([image], det.imgsz, det.stride, batch_size=det.batch)
    yolo = None
    if ul:
        from ultralytics import YOLO

        yolo = YOLO(str(model.parent if model.suffix == ".xml" else model), task="detect")

    def ul_predict() -> None:
        yolo.predict(image, imgsz=imgsz, conf=0.25, iou=0.45, verbose=False)

    for _ in range(warmup):
        det.backend.infer(batch)
        det(image)
        if yolo is not None:
            ul_predict()
    raw, e2e, sdk, inf_in, ult = [], [], [], [], []
    for _ in range(runs):  # interleaved, so background load hits all three alike
        t0 = time.perf_counter()
        det.backend.infer(batch)
        raw.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        det(image)
        e2e.append(time.perf_counter() - t0)
        t = det.last_timing
        sdk.append(t.preprocess + t.postprocess)
        inf_in.append(t.infer)
        if yolo is not None:
            t0 = time.perf_counter()
            ul_predict()
            ult.append(time.perf_counter() - t0)
    row = {
        "backend": name,
        "device": det.device,
        "precision": det.precision,
        "imgsz": imgsz,
        "raw": _median_ms(raw),
        "e2e": _median_ms(e2e),
        "sdk": _median_ms(sdk),
        "overhead": _median_ms(e2e) / _median_ms(raw) - 1,
        "overhead_in_call": statistics.median(s / i for s, i in zip(sdk, inf_in)),
        "ul": _median_ms(ult) if ult else None,
        "ul_prec": "",
    }
    if yolo is not None:
        if model.suffix == ".xml":
            row["ul_prec"] = _ultralytics_precision(yolo)
        elif name == "torch":  # Ultralytics letterboxes .pt input to the minimum rectangle (640x480 -> 640x480, not 640x640)
            row["ul_prec"] = "f32, training form, rect input"
        else:
            row["ul_prec"] = "f32"
    det.close()
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", type=Path, default=ROOT / "edge_mlla" / "weights" / "yolo11n-mlla-bccd.pt")
    ap.add_argument("--sizes", type=int, nargs="+", default=[320, 640])
    ap.add_argument("--backends", nargs="+", default=None, help="default: every available backend")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--no-ultralytics", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import edge_mlla.nn  # noqa: F401  offline set-up before Ultralytics
    from edge_mlla.export import export
    from edge_mlla.runtimes import available

    status = available()
    names = args.backends or [n for n, s in status.items() if s.available]
    image = cv2.imread(str(sorted((ROOT / "edge_mlla" / "data" / "bccd" / "images" / "val").glob("*.jpg"))[0]))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            files = {
                "openvino": export(args.weights, format="openvino", imgsz=size, output=Path(tmp) / f"ov{size}"),
                "onnx": export(args.weights, format="onnx", imgsz=size, output=Path(tmp) / f"onnx{size}"),
                "pt": args.weights,
            }
            for name in names:
                model = {"openvino": files["openvino"], "onnxruntime": files["onnx"], "cuda": files["onnx"], "torch": files["pt"]}[name]
                print(f"... {name} @ {size}", file=sys.stderr, flush=True)
                rows.append(bench_one(name, Path(model), size, image, args.runs, args.warmup, not args.no_ultralytics))

    import onnxruntime
    import openvino

    print(
        f"\nbatch 1, one {image.shape[1]}x{image.shape[0]} BCCD image, median of {args.runs} runs after {args.warmup} warm-up; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; openvino {openvino.__version__.split('-')[0]}, "
        f"onnxruntime {onnxruntime.__version__}\n"
    )
    print("| backend | device | precision | imgsz | raw infer ms | Detector e2e ms | SDK pre+post ms | overhead e2e/raw | overhead in-call | Ultralytics predict ms (precision) | Ultralytics / Detector |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ul = f"{r['ul']:.1f} ({r['ul_prec']})" if r["ul"] is not None else "-"
        ratio = f"{r['ul'] / r['e2e']:.2f}x" if r["ul"] is not None else "-"
        print(
            f"| {r['backend']} | {r['device']} | {r['precision']} | {r['imgsz']} | {r['raw']:.1f} | {r['e2e']:.1f} | "
            f"{r['sdk']:.2f} | {100 * r['overhead']:+.1f}% | {100 * r['overhead_in_call']:.1f}% | {ul} | {ratio} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
