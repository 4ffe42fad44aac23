"""Model-file helpers shared by both quantizers: inspect a source model, carry its metadata, write atomically."""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_mlla._io import ensure_writable_dir
from edge_mlla.metadata import read_openvino_metadata
from edge_mlla.errors import MissingFileError, ModelFileError, OutputNotWritableError

LOGGER = logging.getLogger("edge_mlla")


@dataclass
class SourceModel:
    """What the quantizer needs to know about the FP model: path, format, input shape, metadata."""

    path: Path
    format: str  # "onnx" | "openvino"
    input_name: str
    input_shape: tuple[int | None, ...]  # (B, C, H, W), None where dynamic
    metadata: dict[str, str]
    quantized: bool

    @property
    def static_hw(self) -> tuple[int, int] | None:
        h, w = self.input_shape[2], self.input_shape[3]
        return (h, w) if h is not None and w is not None else None

    @property
    def batch(self) -> int:
        return self.input_shape[0] or 1


def resolve_source(model: str | os.PathLike) -> Path:
    """An existing ``.onnx`` or ``.xml`` file (an OpenVINO model folder resolves to its single ``.xml``)."""
    if not isinstance(model, (str, os.PathLike)):
        raise ModelFileError(f"model must be a path to an .onnx or OpenVINO .xml file, got {type(model).__name__}")
    p = Path(model)
    if p.is_dir():
        xmls = sorted(p.glob("*.xml"))
        if len(xmls) != 1:
            raise ModelFileError(f"{p} is a folder with {len(xmls)} .xml files; pass the model's .xml path")
        p = xmls[0]
    if not p.is_file():
        raise MissingFileError(f"model file not found: {p} (expected an exported .onnx or OpenVINO .xml)")
    if p.suffix not in (".onnx", ".xml"):
        raise ModelFileError(f"quantize() takes an exported .onnx or OpenVINO .xml model, got {p.name!r} "
                             "(export a .pt first: edge-mlla export MODEL.pt)")  # fmt: skip
    return p


def inspect_source(path: Path) -> SourceModel:
    """Read input shape, metadata and whether the file already holds INT8 ops."""
    from edge_mlla.quantize.scope import read_graph

    if path.suffix == ".onnx":
        import onnx

        try:
            m = onnx.load(str(path), load_external_data=False)
        except Exception as e:
            raise ModelFileError(f"{path} is not a readable ONNX model: {e}") from e
        inits = {i.name for i in m.graph.initializer}
        ins = [i for i in m.graph.input if i.name not in inits]
        if len(ins) != 1:
            raise ModelFileError(f"{path} has {len(ins)} inputs; a detector has one image input")
        dims = tuple((d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None)
                     for d in ins[0].type.tensor_type.shape.dim)  # fmt: skip
        md = {p.key: p.value for p in m.metadata_props}
        graph = read_graph(m)
        name, fmt = ins[0].name, "onnx"
    else:
        import openvino as ov

        try:
            m = ov.Core().read_model(str(path))
        except Exception as e:
            raise ModelFileError(f"{path} is not a readable OpenVINO IR: {e}") from e
        if len(m.inputs) != 1:
            raise ModelFileError(f"{path} has {len(m.inputs)} inputs; a detector has one image input")
        port = m.inputs[0]
        dims = tuple(None if d.is_dynamic else d.get_length() for d in port.get_partial_shape())
        md = read_openvino_metadata(m, path)
        graph = read_graph(m)
        name, fmt = port.get_any_name(), "openvino"
    if len(dims) != 4 or dims[1] not in (None, 3):
        raise ModelFileError(f"{path} input has shape {dims}; expected (batch, 3, height, width)")
    ours = _ours(md)
    quantized = graph.is_quantized() or str(ours.get("precision", "")).lower() == "int8"
    return SourceModel(path, fmt, name, dims, md, quantized)


def _ours(md: dict[str, str]) -> dict:
    try:
        return json.loads(md.get("edge_mlla", "{}") or "{}")
    except json.JSONDecodeError:
        return {}


def int8_metadata(md: dict[str, str], details: dict[str, Any]) -> dict[str, str]:
    """Copy of ``md`` with the ``edge_mlla`` entry saying precision int8 and how it was quantized."""
    from edge_mlla import __version__

    out = dict(md)
    ours = _ours(md)
    ours.setdefault("version", __version__)
    ours["source_precision"] = ours.get("precision", "fp32")
    ours["precision"] = "int8"
    ours["quantization"] = details
    out["edge_mlla"] = json.dumps(ours, sort_keys=True, default=str)
    return out


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


def atomic_write(
    target: Path, write: Callable[[Path], None], companions: tuple[str, ...] = (), extras: tuple[str, ...] = ()
) -> Path:
    """Call ``write(tmp_path)`` on a temporary name beside ``target``, then rename into place.

    ``companions`` are suffixes of files written next to the model under the same stem (``.bin`` for an
    OpenVINO IR), ``extras`` other file names written beside it (``metadata.yaml``); they are renamed first and
    the model file last, so a reader never finds a new ``.xml`` without its ``.bin``. On any error nothing at
    ``target`` changes and temporaries are removed.
    """
    tmp_dir = target.parent / f".{target.stem}.tmp-{uuid.uuid4().hex[:8]}"
    tmp_dir.mkdir(parents=True)
    tmp = tmp_dir / target.name
    try:
        write(tmp)
        for suf in companions:
            c = tmp.with_suffix(suf)
            if c.is_file():
                os.replace(c, target.with_suffix(suf))
        for name in extras:
            if (tmp_dir / name).is_file():
                os.replace(tmp_dir / name, target.parent / name)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return target


def file_size(path: Path) -> int:
    """Bytes on disk of a model (``.xml`` + ``.bin`` for OpenVINO)."""
    size = path.stat().st_size
    if path.suffix == ".xml" and path.with_suffix(".bin").is_file():
        size += path.with_suffix(".bin").stat().st_size
    return size
