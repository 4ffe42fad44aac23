"""``edge-mlla bench``: argument parsing and printing; the work is in :func:`edge_mlla.bench.run_bench` (and
:func:`edge_mlla.bench.vs_ultralytics.compare` for ``--vs-ultralytics``).

Example:
    >>> import argparse
    >>> sub = argparse.ArgumentParser().add_subparsers()
    >>> add_commands(sub)
    >>> "bench" in sub.choices
    True

Imports inside functions: the bench itself (torch, Ultralytics, OpenVINO behind it) loads when the command runs, so
that ``edge-mlla --help`` and the other commands start fast.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def _quiet_run(verbose: bool) -> Iterator[None]:
    """Progress bars and the table say it all: Detector/quantize INFO lines only with -v; what third-party code
    prints meanwhile (NNCF's progress) goes to stderr, so stdout is the table's."""
    lg = logging.getLogger("edge_mlla")
    old = lg.level
    if not verbose:
        lg.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        lg.setLevel(old)


def _cmd_bench(a: argparse.Namespace) -> int:
    if a.vs_ultralytics:
        return _cmd_vs_ultralytics(a)
    if not a.model:
        from edge_mlla.errors import ConfigError

        raise ConfigError("give MODEL (a .pt, .onnx or .xml), or --vs-ultralytics best.pt --data D")
    from edge_mlla.bench import run_bench

    a.output = a.output or "runs/bench"
    with _quiet_run(getattr(a, "verbose", False)):
        res = run_bench(a.model, backends=a.backends, precisions=a.precisions,
                        imgsz=None if a.imgsz is None else ",".join(a.imgsz), baseline=a.baseline,
                        runs=50 if a.runs is None else a.runs,
                        warmup=a.warmup, throughput_runs=a.throughput_runs, int8=a.int8, calib_size=a.calib_size,
                        image=a.image, ultralytics=not a.no_ultralytics, peak=not a.no_peak, output=a.output,
                        keep_models=a.keep_models, progress=not a.no_progress)  # fmt: skip
    print(res.table())
    out = Path(a.output)
    print(f"wrote {out / 'bench.json'}, {out / 'bench.md'}, {out / 'latency_stages.png'}, {out / 'scaling.png'}",
          file=sys.stderr)  # fmt: skip
    if not any(c.ok for c in res.cells):
        print("edge-mlla bench: nothing could be measured here (see 'Not measured')", file=sys.stderr)
        return 1
    return 0


def _cmd_vs_ultralytics(a: argparse.Namespace) -> int:
    from edge_mlla.bench.vs_ultralytics import VsOptions, compare

    if a.model:
        from edge_mlla.errors import ConfigError

        raise ConfigError("--vs-ultralytics takes the checkpoint itself; give no MODEL beside it")
    imgsz = None if a.imgsz is None else ",".join(a.imgsz)
    opts = VsOptions.build(imgsz=imgsz, rounds=a.rounds, runs=a.runs, frames=a.frames, clip=a.clip,
                           val_limit=a.val_limit, calib_size=a.vs_calib_size, mode=a.mode,
                           throughput_s=a.throughput_s)  # fmt: skip
    with _quiet_run(getattr(a, "verbose", False)):
        res = compare(a.vs_ultralytics, data=a.data, options=opts, output=a.output or "runs/vs_ultralytics",
                      progress=not a.no_progress)  # fmt: skip
    print(res.table())
    print("wrote " + ", ".join(str(p) for p in res.paths.values()), file=sys.stderr)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``bench`` on the ``edge-mlla`` parser's subcommands."""
    p = sub.add_parser("bench", help="latency per stage, throughput, scaling and %% of peak over backends x precisions "
                                     "x sizes, with a stock YOLO11n baseline; or --vs-ultralytics: our deploy path "
                                     "against Ultralytics' on one checkpoint")  # fmt: skip
    p.add_argument("model", nargs="?", default=None,
                   help=".pt (exported at each --imgsz) or an exported .onnx / .xml (its own size)")
    p.add_argument("--backends", default="openvino,onnxruntime", help="comma-separated runtime backends")
    p.add_argument("--precisions", default="f32,bf16,int8",
                   help="comma-separated: f32, bf16, f16, int8 (one a backend or CPU cannot run is reported as skipped)")
    p.add_argument("--imgsz", nargs="+", default=None, metavar="N|HxW",
                   help="sizes, comma- or space-separated, each N or HxW, multiples of 32 "
                        "(default: 320,640,1280 for a .pt, the file's own size otherwise; --vs-ultralytics: "
                        "the checkpoint's training size)")
    p.add_argument("--baseline", default="yolo11n",
                   help="stock Ultralytics model built offline with random weights (yolo11n, yolo11s, ...), "
                        "a stock .pt, or 'none'")
    p.add_argument("--runs", type=int, default=None, help="timed calls per cell (median and p90; default 50, "
                                                           "--vs-ultralytics: 30 per round)")  # fmt: skip
    p.add_argument("--warmup", type=int, default=10, help="untimed calls per cell first")
    p.add_argument("--throughput-runs", type=int, default=None, help="images per async throughput measurement "
                                                                      "(default: --runs; 0: none)")  # fmt: skip
    p.add_argument("--int8", default=None, help="INT8 model to use instead of quantizing MODEL here")
    p.add_argument("--calib-size", type=int, default=32, help="BCCD train images to calibrate INT8 with")
    p.add_argument("--image", default=None, help="image to run on, as is (default: a BCCD test image resized per size)")
    p.add_argument("--no-ultralytics", action="store_true", help="do not run Ultralytics' predict on the same files")
    p.add_argument("--no-peak", action="store_true", help="do not measure the conv peak GFLOP/s (no %% of peak)")
    p.add_argument("--keep-models", action="store_true", help="keep exported/quantized files under OUTPUT/models")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("-o", "--output", default=None, help="folder for the report and charts (default runs/bench, "
                                                        "--vs-ultralytics: runs/vs_ultralytics)")  # fmt: skip
    g = p.add_argument_group("--vs-ultralytics: both deploy paths on one checkpoint")
    g.add_argument("--vs-ultralytics", metavar="BEST.PT", default=None,
                   help="Ultralytics' export(format='openvino'[, int8=True]) + YOLO.predict against edge-mlla export + "
                        "quantize + Detector / StreamRunner, float and INT8, interleaved rounds")
    g.add_argument("--data", default="bccd", help="data.yaml or bundled name: INT8 calibration (train) and mAP (val)")
    g.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians over rounds)")
    g.add_argument("--frames", type=int, default=150, help="clip frames per stream FPS measurement")
    g.add_argument("--throughput-s", type=float, default=None,
                   help="seconds of benchmark_app per model and round (default 3; 0: no throughput)")
    g.add_argument("--clip", default=None, help="video for stream FPS (default: the bundled bccd_pan.mp4)")
    g.add_argument("--val-limit", type=int, default=None, help="score mAP on the first N val images only")
    g.add_argument("--vs-calib-size", type=int, default=None,
                   help="calibration images for both INT8 paths (default: each tool's own default)")
    g.add_argument("--mode", choices=["fast", "thorough"], default="fast", help="our quantize mode")
    p.set_defaults(fn=_cmd_bench)
