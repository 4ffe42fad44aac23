"""Output-file helpers shared by both quantizers: where the INT8 model goes, and writing it atomically.

What a model file *is* (input spec, metadata, precision) lives in :mod:`edge_mlla.modelfile`."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from edge_mlla._io import ensure_writable_dir
from edge_mlla.errors import ModelFileError, OutputNotWritableError
from edge_mlla.modelfile import ModelFile, atomic_write, inspect_model  # noqa: F401  (atomic_write: re-exported)

LOGGER = logging.getLogger("edge_mlla")


def resolve_source(model: str | os.PathLike) -> ModelFile:
    """The exported ``.onnx`` / ``.xml`` (or OpenVINO folder) to quantize, inspected."""
    if isinstance(model, (str, os.PathLike)) and Path(model).is_file() and Path(model).suffix.lower() not in (".onnx", ".xml"):
        raise ModelFileError(f"quantize() takes an exported .onnx or OpenVINO .xml model, got {Path(model).name!r} "
                             "(export a .pt first: edge-mlla export MODEL.pt)")  # fmt: skip
    return inspect_model(model)


def default_output(src: Path, backend: str) -> Path:
    """``best.onnx`` -> ``best_int8.onnx`` (onnxruntime) or ``best_int8_openvino_model/best_int8.xml`` (openvino)."""
    stem = src.stem
    root = src.parent.parent if src.suffix == ".xml" and src.parent.name.endswith("_openvino_model") else src.parent
    if backend == "onnxruntime":
        return root / f"{stem}_int8.onnx"
    return root / f"{stem}_int8_openvino_model" / f"{stem}_int8.xml"


def resolve_output(output: str | os.PathLike | None, src: Path, backend: str) -> Path:
    """The model file to write: a file path with the right suffix, or a folder to put the default name in."""
    want = ".onnx" if backend == "onnxruntime" else ".xml"
    if output is None:
        out = default_output(src, backend)
    else:
        out = Path(output)
        if out.suffix in (".onnx", ".xml"):
            if out.suffix != want:
                raise ModelFileError(f"the {backend} quantizer writes a {want} file, but output is {out.name!r}")
        else:
            out = out / default_output(src, backend).name
    if out.resolve() == src.resolve():
        raise OutputNotWritableError(f"output {out} is the source model; choose another path")
    ensure_writable_dir(out.parent)
    return out


def file_size(path: Path) -> int:
    """Bytes on disk of a model (``.xml`` + ``.bin`` for OpenVINO)."""
    size = path.stat().st_size
    if path.suffix == ".xml" and path.with_suffix(".bin").is_file():
        size += path.with_suffix(".bin").stat().st_size
    return size
