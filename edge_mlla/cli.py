"""``edge-mlla`` command line: argument parsing, progress and printing only; the work is in the library.

Each command imports what it runs inside its handler, so that `--help` and every other command start without loading
torch, OpenVINO, NNCF or Ray."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge_mlla import __version__
from edge_mlla.cliargs import add_detector_args, add_imgsz, detector_kwargs, run_command


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
    det = Detector(a.model, **detector_kwargs(a), strict=not a.no_strict)
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

    res = evaluate(a.model, data=a.data, split=a.split, limit=a.limit, **detector_kwargs(a))
    print(json.dumps(res if isinstance(res, dict) else res.__dict__, indent=2, default=str))
    return 0


def _cmd_backends(a: argparse.Namespace) -> int:
    from edge_mlla.runtimes import available

    for name, status in available().items():
        print(f"{name:12s} {'available' if status else 'unavailable: ' + status.reason}")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
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


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="re-parameterize and export a checkpoint to ONNX or OpenVINO IR")
    p.add_argument("checkpoint")
    p.add_argument("--format", choices=["onnx", "openvino"], default="onnx")
    add_imgsz(p, None, "N, HxW, H,W or 'H W'; each a multiple of the model stride (32); default: the size the "
                       "checkpoint was trained at (640 when it does not say)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--dynamic", action="store_true", help="dynamic batch and image size")
    p.add_argument("--half", action="store_true", help="fp16 weights")
    p.add_argument("--end2end", action=argparse.BooleanOptionalAction, default=None,
                   help="YOLO26: export the NMS-free head, output (N, 300, 6); default (as Ultralytics): the NMS head")
    p.add_argument("-o", "--output", default=None, help="output folder")
    p.set_defaults(fn=_cmd_export)


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="run a model on images through Detector")
    p.add_argument("model")
    p.add_argument("source", nargs="+", help="image files or folders")
    add_detector_args(p)
    p.add_argument("--save", default=None, help="folder for annotated images")
    p.add_argument("--no-strict", action="store_true", help="use partly decoded (truncated) images instead of skipping them")
    p.add_argument("--recursive", action="store_true", help="also read images in sub-folders of a folder")
    p.set_defaults(fn=_cmd_predict)


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="COCO-style mAP of a model file on a YOLO dataset")
    p.add_argument("model")
    p.add_argument("--data", default="bccd", help="data.yaml of the model's dataset (default: bccd, the bundled one); "
                                                 "its class names must match the model's")
    p.add_argument("--split", default="val")
    add_detector_args(p, skip=("conf", "iou", "max_det", "classes"))  # scoring uses the validator's own thresholds
    p.add_argument("--limit", type=int, default=None, help="score only the first N images")
    p.set_defaults(fn=_cmd_eval)


def build_parser() -> argparse.ArgumentParser:
    """The ``edge-mlla`` parser: the model-side and image commands here, the others from their packages."""
    from edge_mlla.bench.cli import add_commands as add_bench
    from edge_mlla.quantize.cli import add_commands as add_quantize
    from edge_mlla.serve.cli import add_commands as add_serve  # serve, serve-streams, export-repo
    from edge_mlla.stream.cli import add_commands as add_watch  # watch: the live view in the browser
    from edge_mlla.study.cli import add_commands as add_study  # study: seed-controlled A/B training

    ap = argparse.ArgumentParser(prog="edge-mlla", description="YOLO11/YOLO26 with MLLA attention: train, export, quantize, run, serve.")
    ap.add_argument("--version", action="version", version=f"edge-mlla {__version__}")
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = ap.add_subparsers(dest="cmd", required=True)
    _add_train(sub)
    _add_export(sub)
    add_quantize(sub)
    _add_predict(sub)
    _add_eval(sub)
    p = sub.add_parser("backends", help="which runtime backends work on this machine, and why not")
    p.set_defaults(fn=_cmd_backends)
    for add in (add_serve, add_bench, add_study, add_watch):
        add(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
