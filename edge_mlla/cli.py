"""``edge-mlla`` command line: argument parsing, progress and printing only; the work is in the library."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from edge_mlla import __version__
from edge_mlla.errors import EdgeMLLAError


class _ImgszAction(argparse.Action):
    """``--imgsz 640``, ``--imgsz 192x640``, ``--imgsz 192,640`` or ``--imgsz 192 640``: one parser
    (:func:`edge_mlla.ops.parse_imgsz`) for every command and the library."""

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: ANN001
        from edge_mlla.errors import ConfigError
        from edge_mlla.ops import parse_imgsz

        text = " ".join(values) if isinstance(values, list) else str(values)
        try:
            h, w = parse_imgsz(text)
        except ConfigError:
            parser.error(f"imgsz must be N, HxW, H,W or 'H W' (integers), got {text!r}")
        setattr(namespace, self.dest, h if h == w else (h, w))


def _add_imgsz(p: argparse.ArgumentParser, default: object, help_text: str) -> None:
    p.add_argument("--imgsz", nargs="+", action=_ImgszAction, default=default, metavar="N|HxW", help=help_text)


def _square_size(text: str) -> int:
    if not text.strip().isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"training uses a square size N (a positive integer), got {text!r}")
    return int(text)


def _cmd_train(a: argparse.Namespace) -> int:
    from edge_mlla.train import train

    best = train(a.model, data=a.data, imgsz=a.imgsz, epochs=a.epochs, batch=a.batch, device=a.device,
                 project=a.project, name=a.name, exist_ok=a.exist_ok)
    print(f"best weights: {best}")
    return 0


def _cmd_export(a: argparse.Namespace) -> int:
    from edge_mlla.export import export

    out = export(a.checkpoint, format=a.format, imgsz=a.imgsz, batch=a.batch, dynamic=a.dynamic, half=a.half,
                 output=a.output, end2end=a.end2end)
    print(f"exported: {out}")
    return 0


def _cmd_quantize(a: argparse.Namespace) -> int:
    from edge_mlla.quantize import quantize

    report = quantize(a.model, calib=a.calib, backend=a.backend, output=a.output, imgsz=a.imgsz, mode=a.mode,
                      subset_size=a.subset_size, preset=a.preset, budget=a.budget, latency_runs=a.latency_runs,
                      max_drop=a.max_drop, val=None if a.val == "none" else a.val, scope=a.scope, method=a.method,
                      every=a.every, threads=a.threads, val_split=a.val_split, bias_correction=a.bias_correction,
                      progress=not a.no_progress)  # fmt: skip
    print(report.table() if hasattr(report, "table") else report)
    return 0


def _predict_files(sources: list[str], recursive: bool = False) -> list[Path]:
    """Image files named on the command line: files as given, folders expanded (any image suffix, any case; sub-folders
    with ``recursive``, else a note says how many images they hold)."""
    from edge_mlla.errors import MissingFileError
    from edge_mlla.ops import is_image_file, list_images

    files: list[Path] = []
    for s in sources:
        p = Path(s)
        if p.is_dir():
            found = list_images(p, recursive=recursive)
            if not recursive:
                below = len(list_images(p, recursive=True)) - len(found)
                if below:
                    print(f"{p}: {below} image(s) in sub-folders not read (pass --recursive)", file=sys.stderr)
            if not found:
                raise MissingFileError(f"no images in {p} (looked for any suffix OpenCV reads: jpg, jpeg, png, bmp, tif, webp, ...)")
            files += found
        elif p.is_file():
            if not is_image_file(p):
                raise MissingFileError(f"{p} is not an image file (suffix {p.suffix or 'none'}); pass images or folders")
            files.append(p)
        else:
            raise MissingFileError(f"no such image or folder: {p}")
    return files


def _save_names(files: list[Path]) -> list[Path]:
    """Where each annotated image goes inside --save: its own name, or, when two inputs share a name (a/x.jpg and
    b/x.jpg), its path below the inputs' common folder, so that no output overwrites another.

    Example:
        >>> [str(p) for p in _save_names([Path("a/x.jpg"), Path("b/x.jpg"), Path("b/y.jpg")])]
        ['a/x.jpg', 'b/x.jpg', 'b/y.jpg']
        >>> [str(p) for p in _save_names([Path("a/x.jpg"), Path("b/y.jpg")])]
        ['x.jpg', 'y.jpg']
    """
    import os

    if len({f.name for f in files}) == len(files):
        return [Path(f.name) for f in files]
    full = [f.resolve() for f in files]
    common = Path(os.path.commonpath([str(f.parent) for f in full]))
    return [f.relative_to(common) for f in full]


def _cmd_predict(a: argparse.Namespace) -> int:
    import cv2

    from edge_mlla import Detector
    from edge_mlla._io import ensure_writable_dir
    from edge_mlla.errors import ImageReadError, MissingFileError
    from edge_mlla.ops import read_image

    files = _predict_files(a.source, a.recursive)
    save = ensure_writable_dir(Path(a.save)) if a.save else None
    det = Detector(a.model, backend=a.backend, device=a.device, precision=a.precision, conf=a.conf, iou=a.iou,
                   imgsz=a.imgsz, strict=not a.no_strict)  # fmt: skip
    skipped = 0
    try:
        for f, out_name in zip(files, _save_names(files)):
            try:
                img = read_image(f, strict=not a.no_strict)
            except (ImageReadError, MissingFileError) as e:  # one bad file does not stop the run: counted below
                print(f"{f}: skipped: {e}", file=sys.stderr)
                skipped += 1
                continue
            dets = det(img)
            counts: dict[str, int] = {}
            for name in dets.class_name:
                counts[str(name)] = counts.get(str(name), 0) + 1
            print(f"{f}: {len(dets)} detections " + json.dumps(counts))
            if save is not None:
                (save / out_name).parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(save / out_name), dets.draw(img))
    finally:
        det.close()
    print(f"{len(files) - skipped} image(s) processed, {skipped} skipped", file=sys.stderr)
    return 1 if skipped == len(files) else 0


def _cmd_eval(a: argparse.Namespace) -> int:
    from edge_mlla.eval import evaluate

    res = evaluate(a.model, data=a.data, split=a.split, backend=a.backend, precision=a.precision, imgsz=a.imgsz,
                   limit=a.limit)
    print(json.dumps(res if isinstance(res, dict) else res.__dict__, indent=2, default=str))
    return 0


def _cmd_backends(a: argparse.Namespace) -> int:
    from edge_mlla.runtimes import available

    for name, status in available().items():
        print(f"{name:12s} {'available' if status else 'unavailable: ' + status.reason}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="edge-mlla", description="YOLO11/YOLO26 with MLLA attention: train, export, quantize, run, serve.")
    ap.add_argument("--version", action="version", version=f"edge-mlla {__version__}")
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("train", help="train a detector with Ultralytics (offline, bundled data by default)")
    p.add_argument("--model", default="yolo11n-mlla.yaml", help="model yaml (ours or Ultralytics') or checkpoint")
    p.add_argument("--data", default="bccd", help="bundled dataset name or data.yaml path")
    p.add_argument("--imgsz", type=_square_size, default=640, metavar="N", help="square training size N (default 640)")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--project", default="runs/train")
    p.add_argument("--name", default="exp", help="run folder name; a taken name becomes exp2, exp3, ... (Ultralytics' rule)")
    p.add_argument("--exist-ok", action="store_true", help="reuse (overwrite) an existing run folder of that name")
    p.set_defaults(fn=_cmd_train)

    p = sub.add_parser("export", help="re-parameterize and export a checkpoint to ONNX or OpenVINO IR")
    p.add_argument("checkpoint")
    p.add_argument("--format", choices=["onnx", "openvino"], default="onnx")
    _add_imgsz(p, None, "N, HxW, H,W or 'H W'; each a multiple of the model stride (32); default: the size the "
                        "checkpoint was trained at (640 when it does not say)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--dynamic", action="store_true", help="dynamic batch and image size")
    p.add_argument("--half", action="store_true", help="fp16 weights")
    p.add_argument("--end2end", action=argparse.BooleanOptionalAction, default=None,
                   help="YOLO26: export the NMS-free head, output (N, 300, 6); default (as Ultralytics): the NMS head")
    p.add_argument("-o", "--output", default=None, help="output folder")
    p.set_defaults(fn=_cmd_export)

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
    _add_imgsz(p, None, "input size (must equal a static model's); N, HxW, H,W or 'H W'")
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
    _add_imgsz(p, None, "input size for dynamic-size models; N, HxW, H,W or 'H W'")
    p.add_argument("--save", default=None, help="folder for annotated images")
    p.add_argument("--no-strict", action="store_true", help="use partly decoded (truncated) images instead of skipping them")
    p.add_argument("--recursive", action="store_true", help="also read images in sub-folders of a folder")
    p.set_defaults(fn=_cmd_predict)

    p = sub.add_parser("eval", help="COCO-style mAP of a model file on a YOLO dataset")
    p.add_argument("model")
    p.add_argument("--data", default="bccd", help="data.yaml of the model's dataset (default: bccd, the bundled one); "
                                                 "its class names must match the model's")
    p.add_argument("--split", default="val")
    p.add_argument("--backend", default="auto")
    p.add_argument("--precision", default=None)
    _add_imgsz(p, None, "input size for dynamic-size models; N, HxW, H,W or 'H W'")
    p.add_argument("--limit", type=int, default=None, help="score only the first N images")
    p.set_defaults(fn=_cmd_eval)

    p = sub.add_parser("backends", help="which runtime backends work on this machine, and why not")
    p.set_defaults(fn=_cmd_backends)
    from edge_mlla.serve.cli import add_commands as add_serve  # serve, serve-streams, export-repo: in their package

    add_serve(sub)
    from edge_mlla.bench.cli import add_commands as add_bench  # bench's parser and handler live in its package

    add_bench(sub)
    from edge_mlla.study.cli import add_commands as add_study  # study: seed-controlled A/B training (issue 21)

    add_study(sub)
    from edge_mlla.stream.cli import add_commands as add_watch  # watch: the live view in the browser (issue 19)

    add_watch(sub)
    return ap


def _one_line_warning(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> str:
    return f"warning: {message}"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a line is logged, not the stream of the moment ``main`` ran: a
    caller that swaps stderr (pytest's capture, a notebook, a redirect) and closes the old one loses nothing and gets
    no 'Logging error: I/O operation on closed file' (as logging's own last-resort handler does)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:  # StreamHandler.__init__ sets it
        pass


def _setup_logging(verbose: bool) -> None:
    """Quiet by default: our own INFO lines; third-party INFO (NNCF's per-node blocks, ONNX Runtime's quantizer)
    and library warnings that repeat ours (torch's CUDA notice) only with ``--verbose``."""
    import warnings

    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler], force=True)
    logging.getLogger("edge_mlla").setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("nncf").setLevel(logging.INFO if verbose else logging.WARNING)
    logging.captureWarnings(True)  # warnings.warn(...) print once, through logging, as one line
    warnings.formatwarning = _one_line_warning  # no "file.py:123: Category" prefix and no source line
    if not verbose:
        warnings.filterwarnings("ignore", module=r"torch\..*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for p in sub.choices.values():  # -v/--verbose after the command too: `edge-mlla quantize m.xml -v`
        if "--verbose" not in p._option_string_actions:
            p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging")
    args = parser.parse_args(argv)
    verbose = bool(getattr(args, "verbose", False))
    _setup_logging(verbose)
    try:
        return args.fn(args)
    except EdgeMLLAError as e:
        print(f"edge-mlla {args.cmd}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"edge-mlla {args.cmd}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `edge-mlla ... | head` closed our stdout: the reader is done, not an error of ours
        import os  # (https://docs.python.org/3/library/signal.html#note-on-sigpipe)

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit flush must not raise again
        return 0
    except Exception as e:  # a bug: one line for the user, the traceback with --verbose
        if verbose:
            raise
        print(f"edge-mlla {args.cmd}: internal error: {type(e).__name__}: {e} (run with --verbose for the traceback, "
              "and please report it)", file=sys.stderr)  # fmt: skip
        return 1


if __name__ == "__main__":
    sys.exit(main())
