"""``make demo``: the product on bundled defaults, offline, in a few minutes on a 2-core CPU.

1. the bundled YOLO11n-MLLA trained here on BCCD (``edge_mlla/weights``) is re-parameterized and exported to
   ONNX and OpenVINO IR,
2. quantized to INT8 (OpenVINO via NNCF, preset chosen by measurement here; ONNX Runtime QDQ) with BCCD train
   images as calibration data,
3. every backend x precision is scored (mAP50-95 on BCCD val, Ultralytics' metric), timed (Detector end to end,
   median) and run through the stream runner on the bundled 640x480 clip (FPS, every frame),
4. one table, a PNG chart and an annotated video land in the output folder.

Training stays one command (``edge-mlla train``); ``--train N`` adds a short run from the yaml first.

Usage: ``python -m edge_mlla.demo [--out runs/demo] [--imgsz N] [--train EPOCHS]``

Imports inside functions: torch, Ultralytics, OpenVINO, NNCF and matplotlib load in the step that uses them, so that
``--help`` (and a bad argument) answer at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

WEIGHTS = Path(__file__).parent / "weights" / "yolo11n-mlla-bccd.pt"


def _step(n: int, text: str) -> None:
    print(f"\n=== [{n}] {text}", flush=True)


def _cpu() -> str:
    from edge_mlla.bench import describe_machine

    m = describe_machine()
    flags = ", ".join(k for k, v in (m.get("isa") or {}).items() if v) or "no AVX2"
    return f"{m.get('cpu', '?')}, {(m.get('cores') or {}).get('os_cpu_count', '?')} cores, {flags}"


def _train_imgsz(pt: Path) -> int:
    """The size the bundled checkpoint was trained at (its ``train_args``), 640 when unknown."""
    import torch

    ck = torch.load(str(pt), map_location="cpu", weights_only=False)
    args = ck.get("train_args") or {}
    size = args.get("imgsz", 640)
    return int(size if isinstance(size, int) else size[0])


#: latency: the median of LATENCY_REPEATS calls on each of the first LATENCY_IMAGES BCCD val images
LATENCY_IMAGES, LATENCY_REPEATS = 8, 3


def _latency(det, images, repeats: int = LATENCY_REPEATS) -> float:
    for _ in range(3):
        det(images[0])
    times = []
    for img in images:
        for _ in range(repeats):
            times.append(det(img).timing.total)
    return 1000.0 * statistics.median(times)


def _stream_fps(det, clip: Path, frames: int, video: Path | None = None) -> float:
    import cv2

    from edge_mlla.stream import StreamRunner

    writer = None
    with StreamRunner(det, clip, max_frames=frames) as run:
        for r in run:
            if video is not None:
                if writer is None:
                    h, w = r.frame.shape[:2]
                    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), run.source_fps, (w, h))
                writer.write(r.detections.draw(r.frame))
        fps = run.stats.fps
    if writer is not None:
        writer.release()
    return fps


def _plot(rows: list[dict], path: Path, title: str) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    short = {"openvino": "OpenVINO", "onnxruntime": "ORT"}  # short, two lines: five bars side by side stay apart
    labels = [f"{short.get(r['backend'], r['backend'])}\n{r['precision'].split(' (')[0]}" for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, key, name in zip(axes, ("map50_95", "latency_ms", "stream_fps"), ("mAP50-95 (BCCD val)", "latency ms (lower is better)", "stream FPS (higher is better)")):
        vals = [r[key] or 0 for r in rows]
        ax.bar(range(len(rows)), vals, color=["#4c72b0" if "int8" not in r["precision"] else "#dd8452" for r in rows])
        ax.set_xticks(range(len(rows)), labels, fontsize=8)
        for i, v in enumerate(vals):
            ax.text(i, v, f"{v:.3g}", ha="center", va="bottom", fontsize=8)
        ax.set_title(name, fontsize=10)
    fig.suptitle(title + " (int8: float ops at the device's float precision)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="edge_mlla end-to-end demo on bundled data")
    ap.add_argument("--out", default="runs/demo")
    ap.add_argument("--imgsz", type=int, default=None, help="input size (default: the size the model was trained at)")
    ap.add_argument("--train", type=int, default=0, metavar="EPOCHS", help="first train YOLO11n-MLLA from its yaml briefly")
    ap.add_argument("--calib", type=int, default=32, help="calibration images for INT8")
    ap.add_argument("--frames", type=int, default=300, help="clip frames per stream run")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("edge_mlla").setLevel(logging.WARNING)  # the demo prints its own summary
    logging.getLogger("nncf").setLevel(logging.WARNING)
    logging.captureWarnings(True)
    from edge_mlla.errors import EdgeMLLAError

    try:
        return _run(args)
    except EdgeMLLAError as e:
        print(f"demo: error: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    """The demo's four steps: (train,) export, INT8, then score / time / stream every backend and precision."""
    from edge_mlla.data import validate_dataset

    t_start = time.perf_counter()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    validate_dataset("bccd", splits=("train", "val"))
    print(f"machine: {_cpu()}")
    weights = _train(args, out) if args.train > 0 else WEIGHTS
    imgsz = args.imgsz or _train_imgsz(weights)
    onnx_path, xml_path = _export(weights, imgsz, out)
    ov_q, ort_q = _quantize(args, onnx_path, xml_path, out)
    runs: list[tuple[str, Path, str | None]] = [("openvino", xml_path, None), ("openvino", xml_path, "f32"),
                                                ("openvino", Path(ov_q.output), None),
                                                ("onnxruntime", onnx_path, None), ("onnxruntime", Path(ort_q.output), None)]  # fmt: skip
    _step(3, "score, time and stream every backend x precision (BCCD val; bundled clip)")
    rows = _measure(runs, args.frames, out)
    _write(rows, weights, imgsz, ov_q, out, args.frames)
    print(f"demo finished in {time.perf_counter() - t_start:.0f} s")
    return 0


def _train(args: argparse.Namespace, out: Path) -> Path:
    _step(0, f"train YOLO11n-MLLA from its yaml on BCCD ({args.train} epochs; the full recipe is `edge-mlla train`)")
    from edge_mlla.train import train

    return train("yolo11n-mlla.yaml", data="bccd", imgsz=416, epochs=args.train, batch=16, project=out / "train",
                 name="demo", exist_ok=True)  # fmt: skip


def _export(weights: Path, imgsz: int, out: Path) -> tuple[Path, Path]:
    _step(1, f"re-parameterize and export {weights.name} at {imgsz} px (ONNX, OpenVINO IR)")
    from edge_mlla.export import export, op_audit

    onnx_path = export(weights, format="onnx", imgsz=imgsz, output=out / "models")
    xml_path = export(weights, format="openvino", imgsz=imgsz, output=out / "models")
    audit = op_audit(onnx_path, openvino=xml_path)
    print(f"ONNX {onnx_path.name}: {sum(audit.ops.values())} ops, {len(audit.mlla_blocks)} MLLA block(s), "
          f"violations: {audit.mlla_violations() or 'none'}\nIR   {xml_path}")  # fmt: skip
    return onnx_path, xml_path


def _quantize(args: argparse.Namespace, onnx_path: Path, xml_path: Path, out: Path) -> tuple:
    _step(2, f"INT8 with {args.calib} BCCD train images (OpenVINO: NNCF candidates measured here, the fastest within "
             "0.5 mAP points kept; ONNX Runtime: QDQ)")
    from edge_mlla.quantize import quantize

    ov_q = quantize(xml_path, calib="bccd", backend="openvino", subset_size=args.calib, output=out / "models",
                    latency_runs=20, bias_correction="fast", report_dir=out / "reports" / "openvino")  # fmt: skip
    print(ov_q.table())
    ort_q = quantize(onnx_path, calib="bccd", backend="onnxruntime", subset_size=args.calib, output=out / "models",
                     latency_runs=0, val=None, report_dir=out / "reports" / "onnxruntime")  # fmt: skip
    return ov_q, ort_q


def _measure(runs: list[tuple[str, Path, str | None]], frames: int, out: Path) -> list[dict]:
    """mAP, latency and stream FPS of each (backend, model, precision); a precision that resolves to one already
    measured (no bf16 on this CPU) is skipped; the first run also writes the annotated video."""
    import cv2

    from edge_mlla import Detector
    from edge_mlla.clips import bundled_clip
    from edge_mlla.data import load_data_yaml
    from edge_mlla.eval import evaluate
    from edge_mlla.runtimes import available

    avail, clip = available(), bundled_clip()
    images = [cv2.imread(str(p)) for p in sorted(load_data_yaml("bccd")["val"].glob("*.jpg"))[:LATENCY_IMAGES]]
    rows, seen = [], set()
    for backend, path, prec in runs:
        if not avail.get(backend):
            print(f"skip {backend}: {avail[backend].reason}")
            continue
        det = Detector(path, backend=backend, precision=prec)
        key = (backend, str(path), det.precision)
        if key in seen:  # precision=None already ran f32 here (no bf16 on this CPU)
            det.close()
            continue
        seen.add(key)
        label = det.precision + (f" (float ops {det.float_precision})" if det.precision == "int8" else "")
        m = evaluate(path, data="bccd", split="val", backend=backend, precision=prec)
        lat = _latency(det, images)
        # video runs with OpenVINO's throughput hint (requests in flight), as quantize's FPS is measured: the two agree
        hint = {"hint": "throughput"} if backend == "openvino" else {}
        with Detector(path, backend=backend, precision=prec, **hint) as sd:
            fps = _stream_fps(sd, clip, frames)  # timed without drawing or writing
        if not rows:  # the annotated video: a second, untimed pass
            _stream_fps(det, clip, frames, out / "annotated.mp4")
        det.close()
        rows.append({"backend": backend, "precision": label, "model": path.name, "map50_95": m["mAP50-95"],
                     "map50": m["mAP50"], "latency_ms": lat, "stream_fps": fps})  # fmt: skip
        print(f"{backend:12s} {label:28s} mAP50-95 {m['mAP50-95']:.3f}  {lat:6.1f} ms  {fps:5.1f} FPS")
    return rows


def _write(rows: list[dict], weights: Path, imgsz: int, ov_q: Any, out: Path, frames: int) -> None:
    lines = ["| backend | precision | model | mAP50-95 | mAP50 | latency ms | stream FPS |", "|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['backend']} | {r['precision']} | {r['model']} | {r['map50_95']:.3f} | {r['map50']:.3f} | "
                     f"{r['latency_ms']:.1f} | {r['stream_fps']:.1f} |")  # fmt: skip
    table = "\n".join(lines)
    title = f"{weights.name} at {imgsz} px on {_cpu()}"
    (out / "demo.md").write_text(f"# edge_mlla demo\n\n{title}\n\n{table}\n\nINT8: {ov_q.reason}; {ov_q.recommendation}\n")
    (out / "demo.json").write_text(json.dumps({"model": str(weights), "imgsz": imgsz, "machine": _cpu(), "rows": rows,
                                               "int8_choice": ov_q.reason, "recommendation": ov_q.recommendation},
                                              indent=2))  # fmt: skip
    png = _plot(rows, out / "demo.png", title)
    print(f"\n{table}\n\nINT8 (OpenVINO): {ov_q.reason}\nrecommendation: {ov_q.recommendation}")
    print(f"\nlatency: Detector end to end (letterbox + inference + decode/NMS), median of {LATENCY_REPEATS * LATENCY_IMAGES} calls, batch 1;"
          f" stream FPS: every frame of the {frames}-frame 640x480 clip through StreamRunner (OpenVINO: throughput hint),"
          " no drawing")  # fmt: skip
    print(f"wrote {out / 'demo.md'}, {out / 'demo.json'}" + (f", {png}" if png else "") + f", {out / 'annotated.mp4'}")


if __name__ == "__main__":
    raise SystemExit(main())
