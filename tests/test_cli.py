"""The CLI is thin: it parses, calls the library, prints; library errors become exit code 2 with a message."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edge_mlla import __version__
from edge_mlla.cli import build_parser, main


def test_version_via_console_entry_point():
    out = subprocess.run([sys.executable, "-m", "edge_mlla", "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == f"edge-mlla {__version__}"


def test_train_defaults_match_the_issue():
    a = build_parser().parse_args(["train"])
    assert (a.model, a.data, a.imgsz, a.device) == ("yolo11n-mlla.yaml", "bccd", 640, "cpu")


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["train", "--epochs", "0"], "epochs must be a positive int"),
        (["train", "--data", "no/such/data.yaml", "--epochs", "1"], "neither a bundled name"),
        (["train", "--model", "yolo11q-mlla.yaml", "--epochs", "1"], "unknown model scale 'q'"),
        (["export", "does_not_exist.pt"], "does_not_exist.pt"),
    ],
)
def test_library_errors_become_exit_code_2(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.startswith(f"edge-mlla {argv[0]}: error:")


@pytest.mark.parametrize(
    "argv,needle",
    [(["export", "m.pt", "--format", "tflite"], "invalid choice: 'tflite'"),
     (["export", "m.pt", "--imgsz", "6x4x2"], "imgsz must be N, HxW, H,W or")],
)
def test_bad_arguments_are_rejected_by_the_parser(argv, needle, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert needle in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv", [["predict", "m.xml", "a.jpg"], ["eval", "m.xml"], ["serve", "m.xml"], ["watch", "--model", "m.xml", "0"]]
)
def test_model_commands_share_the_detector_options(argv):
    """Every model-running command declares the Detector options once (edge_mlla.cliargs), with Detector's own
    defaults, and accepts the precision spellings the library does."""
    import inspect

    from edge_mlla import Detector

    sig = inspect.signature(Detector.__init__).parameters
    a = build_parser().parse_args(argv)
    for name in ("backend", "device", "precision", "conf", "iou", "max_det", "imgsz"):
        if hasattr(a, name):
            assert getattr(a, name) == sig[name].default, (argv[0], name)
    assert a.backend == "auto" and a.precision is None  # every one of them has at least these
    assert build_parser().parse_args([*argv, "--precision", "FP32"]).precision == "f32"


def test_an_unknown_precision_is_one_parser_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["predict", "m.xml", "a.jpg", "--precision", "f8"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and err[-1].startswith("edge-mlla predict: error: argument --precision: unknown precision")


def test_cli_logging_follows_the_current_stderr(monkeypatch):
    """main() configures logging once; a caller that swaps sys.stderr and closes the old one (pytest, a notebook)
    gets the next lines on the new stream, not 'Logging error: I/O operation on closed file'."""
    import io
    import logging

    from edge_mlla.cliargs import setup_logging as _setup_logging

    import warnings

    root = logging.getLogger()
    saved = root.handlers[:], root.level, logging.getLogger("edge_mlla").level, logging.getLogger("nncf").level
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)
    with warnings.catch_warnings():
        try:
            _setup_logging(verbose=False)
            logging.getLogger("edge_mlla.test").warning("one")
            first.close()
            monkeypatch.setattr(sys, "stderr", second)
            logging.getLogger("edge_mlla.test").warning("two")
            assert second.getvalue() == "two\n"
        finally:
            root.handlers[:] = saved[0]
            root.setLevel(saved[1])
            logging.getLogger("edge_mlla").setLevel(saved[2])
            logging.getLogger("nncf").setLevel(saved[3])
            logging.captureWarnings(False)
