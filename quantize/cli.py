"""``edge-mlla quantize`` (and ``python -m edge_mlla.quantize``): parsing and printing only; the work is in
:func:`edge_mlla.quantize.quantize`. Registered by :func:`add_commands`; torch, NNCF and OpenVINO are imported by the
handler, when the command runs, so that ``edge-mlla --help`` stays fast."""

from __future__ import annotations

import argparse

from edge_mlla.cliargs import add_imgsz, run_command


def _cmd_quantize(a: argparse.Namespace) -> int:
    from edge_mlla.quantize import quantize

    report = quantize(a.model, calib=a.calib, backend=a.backend, output=a.output, imgsz=a.imgsz, mode=a.mode,
                      subset_size=a.subset_size, preset=a.preset, budget=a.budget, latency_runs=a.latency_runs,
                      max_drop=a.max_drop, val=None if a.val == "none" else a.val, scope=a.scope, method=a.method,
                      every=a.every, threads=a.threads, val_split=a.val_split, bias_correction=a.bias_correction,
                      progress=not a.no_progress)  # fmt: skip
    print(report.table() if hasattr(report, "table") else report)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``quantize`` to the ``edge-mlla`` sub-commands."""
    p = sub.add_parser("quantize", help="INT8 post-training quantization with calibration data")
    p.add_argument("model", help="exported .onnx or .xml")
    p.add_argument("--calib", required=True, help="image folder, video file, or data.yaml (train split)")
    p.add_argument("--backend", choices=["openvino", "onnxruntime"], default="openvino")
    p.add_argument("--mode", choices=["fast", "thorough"], default="fast",
                   help="fast: 64 images, fast bias correction, one candidate (+ the accurate one if over --budget); "
                        "thorough: 300 images, full bias correction, every candidate ranked")
    p.add_argument("--subset-size", type=int, default=None, help="calibration images (default: 64 fast, 300 thorough)")
    p.add_argument("--preset", choices=["auto", "mixed", "performance"], default="auto",
                   help="auto: quantize the candidates of --mode, measure speed and accuracy here, keep the fastest "
                        "within --budget")
    p.add_argument("--budget", default="0.005",
                   help="largest mAP50-95 drop auto accepts: absolute (0.005 = 0.5 points) or relative to the float "
                        "model's score ('1%%'); the report says which applied")
    p.add_argument("--latency-runs", type=int, default=30, help="timed runs per model (0: no timing)")
    p.add_argument("--max-drop", type=float, default=None, help="accuracy control: max mAP50-95 drop (needs --val)")
    p.add_argument("--val", default="auto",
                   help="data.yaml or bundled name for the accuracy report/control; 'none': no accuracy; "
                        "default: --calib's own dataset when it is one")
    p.add_argument("--val-split", default="val", help="split of --val to score")
    p.add_argument("--scope", default=None,
                   help="groups kept in float, comma-separated (e.g. 'head,z'; 'all' or 'none'); "
                        "default: head,kv_matmul,z (+box for heads without DFL, YOLO26, on openvino)")
    p.add_argument("--method", choices=["minmax", "entropy", "percentile"], default="minmax",
                   help="ONNX Runtime calibration method")
    p.add_argument("--bias-correction", choices=["full", "fast", "none"], default=None,
                   help="OpenVINO/NNCF bias correction (default: fast in fast mode, full in thorough)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (calibration check, NNCF)")
    p.add_argument("--every", type=int, default=None, help="video calibration: take every k-th frame")
    p.add_argument("--threads", type=int, default=None, help="threads for the latency measurement")
    add_imgsz(p, None, "input size (must equal a static model's); N, HxW, H,W or 'H W'")
    p.add_argument("-o", "--output", default=None)
    p.set_defaults(fn=_cmd_quantize)


def main(argv: list[str] | None = None) -> int:
    """``python -m edge_mlla.quantize ...``: the ``edge-mlla quantize`` command on its own (same logging, errors and
    exit codes: :func:`edge_mlla.cliargs.run_command`)."""
    ap = argparse.ArgumentParser(prog="python -m edge_mlla")  # usage: "python -m edge_mlla quantize ...", the same
    sub = ap.add_subparsers(dest="cmd", required=True)
    add_commands(sub)
    return run_command(ap, ["quantize", *(argv or [])])
