"""Reading a model file with OpenVINO: one typed error, on one line, and no frontend noise on stderr.

Given a file that is not a model, ``Core.read_model`` tries every frontend it has; its TensorFlow frontend prints its
parse errors of the file straight to stderr, and the exception it raises is several "Exception from src/...cpp:N:"
lines. :func:`read_model` checks that an ``.xml`` is an IR first and raises ``ModelFileError`` with one readable line.
Every place that reads a user's model file with OpenVINO goes through it (the runtime backend, ``inspect_model``,
the graph reader, quantize, the serving repository).

Example:
    >>> one_line(RuntimeError("Exception from src/core.cpp:84:\\nException from src/a.cpp:9:\\nUnable to read the model"))
    'Unable to read the model'
    >>> one_line(RuntimeError("Check 'ok' failed at src/ir/input_model.cpp:219:\\nStart-end tags mismatch at offset 45"))
    'Start-end tags mismatch at offset 45'

Imports inside functions: OpenVINO loads when a model is read.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from edge_mlla.errors import ModelFileError


def one_line(e: BaseException) -> str:
    """An OpenVINO exception as one readable line: its "Exception from src/...cpp:N:" source-location lines dropped."""
    lines = [ln.strip() for ln in str(e).splitlines()]
    kept = [re.sub(r"^Check '.*?' failed at \S+:\d+:\s*", "", ln) for ln in lines
            if ln and not re.match(r"^Exception from \S+:\d+:?$", ln)]
    return " ".join(k for k in kept if k)[:300] or type(e).__name__


def check_ir(path: Path) -> None:
    """An ``.xml`` must be an OpenVINO IR (a ``<net>`` element, its ``.bin`` beside it) before OpenVINO's frontends
    guess at it; other suffixes are left to OpenVINO."""
    if path.suffix.lower() != ".xml":
        return
    try:
        with open(path, "rb") as f:
            head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    except OSError as e:
        raise ModelFileError(f"{path} could not be read: {e}") from e
    if not head.startswith(b"<") or b"<net" not in head:
        raise ModelFileError(f"{path} is not an OpenVINO IR (an .xml file with a <net> element and its .bin beside it)")
    if not path.with_suffix(".bin").is_file():
        raise ModelFileError(f"{path}: its weights file {path.with_suffix('.bin').name} is missing (it goes beside the .xml)")


def read_model(path: str | Path, core: Any = None) -> Any:
    """``core.read_model(path)`` (a new ``openvino.Core`` when None) after :func:`check_ir`; ModelFileError with one
    line when OpenVINO cannot read it."""
    from edge_mlla._env import _opt_out_telemetry

    _opt_out_telemetry()
    import openvino as ov

    path = Path(path)
    check_ir(path)
    ir = path.suffix.lower() == ".xml"
    try:  # an IR with its weights named: only the IR frontend reads it (no other frontend's parse errors on stderr)
        return (core or ov.Core()).read_model(*((str(path), str(path.with_suffix(".bin"))) if ir else (str(path),)))
    except Exception as e:
        raise ModelFileError(f"openvino could not read {path}: {(_ir_reason(path) if ir else None) or one_line(e)}") from e


def _ir_reason(path: Path) -> str | None:
    """Why OpenVINO's IR frontend rejects ``path`` (e.g. "Start-end tags mismatch at offset 45"), which
    ``Core.read_model`` reduces to "Unable to read the model"; None when it gives no reason."""
    try:
        from openvino.frontend import FrontEndManager

        fe = FrontEndManager().load_by_framework("ir")
        fe.convert(fe.load(str(path)))
    except Exception as e:
        return one_line(e)
    return None
