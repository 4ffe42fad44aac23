"""``edge-mlla`` command line: argument parsing, progress and printing only; the work is in the library."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from edge_mlla import __version__
from edge_mlla.errors import EdgeMLLAError


def _imgsz(text: str) -> int | tuple[int, int]:
    parts = text.replace("x", ",").split(",")
    try:
        vals = [int(p) for p in parts if p]
    except ValueError:
        raise argparse.ArgumentTypeError(f"imgsz must be N or H,W (ints), got {text!r}") from None
    if len(vals) == 1:
        return vals[0]
    if len(vals) == 2:
        return (vals[0], vals[1])
    raise argparse.ArgumentTypeError(f"imgsz must be N or H,W, got {text!r}")


def _cmd_train(a: argparse.Namespace) -> int:
    from edge_mlla.train import train

    best = train(a.model, data=a.data, imgsz=a.imgsz, epochs=a.epochs, batch=a.batch, device=a.device,
                 project=a.project, name=a.name)
    print(f"best weights: {best}")
    return 0


def _cmd_export(a: argparse.Namespace) -> int:
    from edge_mlla.export import export

    out = export(a.checkpoint, format=a.format, imgsz=a.imgsz, batch=a.batch, dynamic=a.dynamic, half=a.half,
                 output=a.output)
    print(f"exported: {out}")
    return 0


def _cmd_quantize(a: argparse.Namespace) -> int:
    from edge_mlla.quantize import quantize

    report = quantize(a.model, calib=a.calib, backend=a.backend, subset_size=a.subset_size, preset=a.preset,
                      max_drop=a.max_drop, val=a.val, output=a.output, imgsz=a.imgsz, scope=a.scope,
                      method=a.method, every=a.every, threads=a.threads, val_split=a.val_split)
    print(report.table() if hasattr(report, "table") else report)
    return 0


def _cmd_predict(a: argparse.Namespace) -> int:
    import cv2

    from edge_mlla import Detector

    det = Detector(a.model, backend=a.backend, device=a.device, precision=a.precision, conf=a.conf, iou=a.iou)
    sources = [Path(s) for s in a.source]
    files = [p for s in sources for p in (sorted(s.glob("*.jpg")) + sorted(s.glob("*.png")) if s.is_dir() else [s])]
    if a.save:
        Path(a.save).mkdir(parents=True, exist_ok=True)
    for f in files:
        dets = det(f)
        counts: dict[str, int] = {}
        for name in dets.class_name:
            counts[str(name)] = counts.get(str(name), 0) + 1
        print(f"{f}: {len(dets)} detections " + json.dumps(counts))
        if a.save:
            img = cv2.imread(str(f))
            cv2.imwrite(str(Path(a.save) / f.name), dets.draw(img))
    return 0


def _cmd_eval(a: argparse.Namespace) -> int:
    from edge_mlla.eval import evaluate

    res = evaluate(a.model, data=a.data, split=a.split, backend=a.backend, precision=a.precision, imgsz=a.imgsz)
    print(json.dumps(res if isinstance(res, dict) else res.__dict__, indent=2, default=str))
    return 0


def _cmd_backends(a: argparse.Namespace) -> int:
    from edge_mlla.runtimes import available

    for name, status in available().items():
        print(f"{name:12s} {'available' if status else 'unavailable: ' + status.reason}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="edge-mlla", description="YOLO11-MLLA: train, export, quantize, run.")
    ap.add_argument("--version", action="version", version=f"edge-mlla {__version__}")
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("train", help="train a detector with Ultralytics (offline, bundled data by default)")
    p.add_argument("--model", default="yolo11n-mlla.yaml", help="model yaml (ours or Ultralytics') or checkpoint")
    p.add_argument("--data", default="bccd", help="bundled dataset name or data.yaml path")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--project", default="runs/train")
    p.add_argument("--name", default="exp")
    p.set_defaults(fn=_cmd_train)

    p = sub.add_parser("export", help="re-parameterize and export a checkpoint to ONNX or OpenVINO IR")
    p.add_argument("checkpoint")
    p.add_argument("--format", choices=["onnx", "openvino"], default="onnx")
    p.add_argument("--imgsz", type=_imgsz, default=640, help="N or H,W; each a multiple of the model stride (32)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--dynamic", action="store_true", help="dynamic batch and image size")
    p.add_argument("--half", action="store_true", help="fp16 weights")
    p.add_argument("-o", "--output", default=None, help="output folder")
    p.set_defaults(fn=_cmd_export)

    p = sub.add_parser("quantize", help="INT8 post-training quantization with calibration data")
    p.add_argument("model", help="exported .onnx or .xml")
    p.add_argument("--calib", required=True, help="image folder, video file, or data.yaml (train split)")
    p.add_argument("--backend", choices=["openvino", "onnxruntime"], default="openvino")
    p.add_argument("--subset-size", type=int, default=300)
    p.add_argument("--preset", choices=["mixed", "performance"], default="mixed")
    p.add_argument("--max-drop", type=float, default=None, help="accuracy control: max mAP50-95 drop (needs --val)")
    p.add_argument("--val", default=None, help="data.yaml or bundled name for accuracy report/control")
    p.add_argument("--val-split", default="val", help="split of --val to score")
    p.add_argument("--scope", default=None,
                   help="groups kept in float, comma-separated (e.g. 'head,z'; 'all' or 'none'); default: head,z")
    p.add_argument("--method", choices=["minmax", "entropy", "percentile"], default="minmax",
                   help="ONNX Runtime calibration method")
    p.add_argument("--every", type=int, default=None, help="video calibration: take every k-th frame")
    p.add_argument("--threads", type=int, default=None, help="threads for the latency measurement")
    p.add_argument("--imgsz", type=int, default=None)
    p.add_argument("-o", "--output", default=None)
    p.set_defaults(fn=_cmd_quantize)

    p = sub.add_parser("predict", help="run a model on images through Detector")
    p.add_argument("model")
    p.add_argument("source", nargs="+", help="image files or folders")
    p.add_argument("--backend", default="auto")
    p.add_argument("--device", default=None)
    p.add_argument("--precision", default=None)
    p.add_argument("--conf", type=float, default=0.25)
    p.add_argument("--iou", type=float, default=0.45)
    p.add_argument("--save", default=None, help="folder for annotated images")
    p.set_defaults(fn=_cmd_predict)

    p = sub.add_parser("eval", help="COCO-style mAP of a model file on a YOLO dataset")
    p.add_argument("model")
    p.add_argument("--data", default="bccd")
    p.add_argument("--split", default="val")
    p.add_argument("--backend", default="auto")
    p.add_argument("--precision", default=None)
    p.add_argument("--imgsz", type=int, default=None)
    p.set_defaults(fn=_cmd_eval)

    p = sub.add_parser("backends", help="which runtime backends work on this machine, and why not")
    p.set_defaults(fn=_cmd_backends)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        return args.fn(args)
    except EdgeMLLAError as e:
        print(f"edge-mlla {args.cmd}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
