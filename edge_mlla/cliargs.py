"""What every ``edge-mlla`` command shares: the options of a command that runs a model, declared once with the
defaults of :class:`edge_mlla.Detector` itself (so ``predict``, ``eval``, ``serve`` and ``watch`` cannot drift apart),
and :func:`run_command` (logging, one-line errors, exit codes). Packages that own commands (``quantize``, ``serve``,
``stream``, ``bench``, ``study``) import this module, never ``edge_mlla.cli``, which imports them.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser()
    >>> add_detector_args(p)
    >>> a = p.parse_args(["--conf", "0.5", "--imgsz", "384x640", "--precision", "f32"])
    >>> detector_kwargs(a)["conf"], detector_kwargs(a)["imgsz"], detector_kwargs(a)["precision"]
    (0.5, (384, 640), 'f32')

Imports inside functions: Detector and the image helpers load when a parser is built or an argument is read, so
that importing this module (as every command package does) stays light.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import sys
from typing import Any

from edge_mlla.errors import ConfigError
from edge_mlla.modelfile import PRECISIONS, normalize_precision

#: what every model-running command offers, in this order
DETECTOR_ARGS = ("backend", "device", "precision", "conf", "iou", "max_det", "classes", "imgsz", "threads")


def detector_defaults() -> dict[str, Any]:
    """``Detector.__init__``'s own defaults (the single source of them)."""
    from edge_mlla.detector import Detector

    sig = inspect.signature(Detector.__init__)
    return {k: p.default for k, p in sig.parameters.items() if p.default is not inspect.Parameter.empty}


class ImgszAction(argparse.Action):
    """``--imgsz 640``, ``--imgsz 192x640``, ``--imgsz 192,640`` or ``--imgsz 192 640``: one parser
    (:func:`edge_mlla.ops.parse_imgsz`) for every command and the library."""

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: ANN001
        from edge_mlla.ops import parse_imgsz

        text = " ".join(values) if isinstance(values, list) else str(values)
        try:
            h, w = parse_imgsz(text)
        except ConfigError:
            parser.error(f"imgsz must be N, HxW, H,W or 'H W' (integers), got {text!r}")
        setattr(namespace, self.dest, h if h == w else (h, w))


def add_imgsz(p: argparse.ArgumentParser, default: object, help_text: str) -> None:
    p.add_argument("--imgsz", nargs="+", action=ImgszAction, default=default, metavar="N|HxW", help=help_text)


def _classes(text: str) -> list[int]:
    try:
        return [int(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"classes are class ids separated by commas (0,2), got {text!r}") from None


def _precision(text: str) -> str:
    """One of :data:`~edge_mlla.modelfile.PRECISIONS`; the older spellings the library accepts (fp32, FP16) too."""
    try:
        return normalize_precision(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_detector_args(p: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """Add the options of :data:`DETECTOR_ARGS` (but ``skip``) with Detector's defaults."""
    d = detector_defaults()
    help_ = {
        "backend": "runtime: auto (from the file and what is installed), openvino, onnxruntime, cuda or torch",
        "device": "backend device: CPU, GPU, NPU, AUTO (OpenVINO), cuda:N, cpu; default: the backend's",
        "precision": "f32 for exact parity with an f32 reference; default: the fastest the device runs natively "
                     "(bf16 on CPUs with AMX or AVX-512 BF16, else f32); what ran is always reported",
        "conf": f"score threshold (default {d['conf']})",
        "iou": f"NMS IoU threshold (default {d['iou']})",
        "max_det": f"boxes per image at most (default {d['max_det']})",
        "classes": "class ids to keep, e.g. 0,2 (default: all)",
        "threads": "CPU threads for inference (default: all cores)",
    }
    for name in DETECTOR_ARGS:
        if name in skip:
            continue
        flag = "--" + name.replace("_", "-")
        if name == "imgsz":
            add_imgsz(p, None, "input size for dynamic-size models: N, HxW, H,W or 'H W' (default: the model's)")
        elif name == "precision":
            choices = "{" + ",".join(PRECISIONS) + "}"
            p.add_argument(flag, type=_precision, default=None, metavar=choices, help=help_[name])
        elif name in ("conf", "iou"):
            p.add_argument(flag, type=float, default=d[name], help=help_[name])
        elif name in ("max_det", "threads"):
            p.add_argument(flag, type=int, default=d.get(name), help=help_[name])
        elif name == "classes":
            p.add_argument(flag, type=_classes, default=None, help=help_[name])
        else:
            p.add_argument(flag, default=d.get(name), help=help_[name])


def detector_kwargs(a: argparse.Namespace) -> dict[str, Any]:
    """Detector keyword arguments from parsed options (those the command declared; ``threads`` only when set)."""
    out = {k: getattr(a, k) for k in DETECTOR_ARGS if hasattr(a, k)}
    if out.get("threads") is None:
        out.pop("threads", None)
    return out


# ------------------------------------------------------------------------------------------------ running a command
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


def setup_logging(verbose: bool) -> None:
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


def run_command(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse ``argv`` with ``parser`` (sub-commands that set ``fn``), set up logging and run the command: our typed
    errors are one line and exit 2, Ctrl+C exits 130, a closed pipe exits 0, anything else is one line (the traceback
    with ``--verbose``) and exits 1. Every ``edge-mlla`` command and ``python -m edge_mlla.quantize`` go through it."""
    from edge_mlla.errors import EdgeMLLAError

    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for p in sub.choices.values():  # -v/--verbose after the command too: `edge-mlla quantize m.xml -v`
        if "--verbose" not in p._option_string_actions:
            p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging")
    args = parser.parse_args(argv)
    verbose = bool(getattr(args, "verbose", False))
    setup_logging(verbose)
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
