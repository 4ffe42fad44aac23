"""Everything edge_mlla knows about model files, in one torch-free module.

* **Which file**: :func:`resolve_model_file` (an OpenVINO export folder -> its single ``.xml``) and
  :func:`model_suffix`; :func:`inspect_model` reads a file's input spec, metadata and whether it is INT8.
* **Which files make a model**: :func:`model_files` (``x.onnx``; ``x.xml`` + ``x.bin`` + ``metadata.yaml``), and
  writing them so that a reader never sees half a model: :func:`atomic_write` (a model file and its companions),
  :func:`replace_dir` (a whole folder).
* **Precision vocabulary**: :data:`PRECISIONS` (``f32``, ``bf16``, ``f16``, ``int8``) and
  :func:`normalize_precision`; the metadata uses the same names (older files said ``fp32``/``fp16``).
* **Metadata**, one format, written by export and quantize, read by Detector:

The metadata is a flat ``str -> str`` map, stored as ONNX ``metadata_props`` and as OpenVINO
``rt_info["model_info"][key]`` (plus ``metadata.yaml`` beside the ``.xml``, which is where
Ultralytics' AutoBackend looks). Keys and value syntax follow Ultralytics' exporter, so
Ultralytics reads our files and we read theirs:

==================  =============================================  ================================
key                 example value                                   meaning
==================  =============================================  ================================
``names``           ``"{0: 'RBC', 1: 'WBC', 2: 'Platelets'}"``      class id -> name (Python literal)
``stride``          ``"32"``                                        largest model stride
``imgsz``           ``"[640, 640]"``                                input height, width
``batch``           ``"1"``                                         export batch size
``task``            ``"detect"``
``edge_mlla``       ``'{"version": "0.1.0", ...}'``                 our namespace, JSON: version,
                                                                    reparameterized, precision,
                                                                    dynamic, quantization details
==================  =============================================  ================================

User arguments override what the file says. ``onnx`` / ``openvino`` are imported only inside the functions
that need them (and OpenVINO objects are duck-typed).
"""

from __future__ import annotations

import ast
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_mlla.errors import ConfigError, MissingFileError, ModelFileError

NAMESPACE = "edge_mlla"
_LOGGER = logging.getLogger("edge_mlla")
MODEL_SUFFIXES = (".xml", ".onnx", ".pt")

# ------------------------------------------------------------------------------------------------- precision
#: canonical precision names, and what users (and older metadata) may say for them
PRECISIONS = ("f32", "bf16", "f16", "int8")
_ALIASES = {
    "f32": "f32", "fp32": "f32", "float32": "f32", "float": "f32",
    "bf16": "bf16", "bfloat16": "bf16",
    "f16": "f16", "fp16": "f16", "float16": "f16", "half": "f16",
    "int8": "int8", "i8": "int8", "u8": "int8",
}  # fmt: skip


def normalize_precision(precision: str | None) -> str | None:
    """Canonical precision name (``f32``, ``bf16``, ``f16``, ``int8``) or None.

    Example:
        >>> normalize_precision("FP16"), normalize_precision(None)
        ('f16', None)
    """
    if precision is None:
        return None
    key = str(precision).strip().lower()
    if key not in _ALIASES:
        raise ConfigError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    return _ALIASES[key]


# -------------------------------------------------------------------------------------------------- which file
def model_suffix(path: str | os.PathLike) -> str:
    """The suffix a model file is dispatched on (``.xml``, ``.onnx``, ``.pt``); a folder holding one ``.xml`` counts as ``.xml``.

    Example:
        >>> model_suffix("best.ONNX")
        '.onnx'
    """
    p = Path(path)
    if p.is_dir():
        xmls = sorted(p.glob("*.xml"))
        if len(xmls) == 1:
            return ".xml"
        raise ModelFileError(f"{p} is a folder with {len(xmls)} .xml files; expected exactly one OpenVINO model")
    return p.suffix.lower()


def resolve_model_file(path: str | os.PathLike, suffixes: tuple[str, ...] = MODEL_SUFFIXES) -> Path:
    """The model file for ``path``: the path itself, or the single ``.xml`` inside an OpenVINO export folder.

    Raises MissingFileError (nothing there), ModelFileError (a folder without exactly one ``.xml``, or a suffix
    not in ``suffixes``).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ModelFileError(f"model must be a path to a {'/'.join(suffixes)} file, got {type(path).__name__}")
    p = Path(path)
    if not p.exists():
        raise MissingFileError(f"model file not found: {p} (expected {', '.join(suffixes)})")
    if p.is_dir():
        model_suffix(p)
        p = next(p.glob("*.xml"))
    if p.suffix.lower() not in suffixes:
        raise ModelFileError(f"{p.name!r} is not a {'/'.join(suffixes)} model file")
    return p


@dataclass(frozen=True)
class ModelInfo:
    """Parsed model metadata. ``names`` maps class id to name; ``imgsz`` is (height, width) or None."""

    names: dict[int, str] = field(default_factory=dict)
    stride: int = 32
    imgsz: tuple[int, int] | None = None
    batch: int | None = None
    task: str = "detect"
    edge_mlla: dict = field(default_factory=dict)
    raw: dict[str, str] = field(default_factory=dict)

    @property
    def precision(self) -> str | None:
        """``f32`` / ``f16`` / ``int8`` as recorded by our exporter or quantizer (older ``fp32``/``fp16`` read
        the same), else None."""
        try:
            return normalize_precision(self.edge_mlla.get("precision"))
        except ConfigError:
            return None


def make_metadata(
    names: dict[int, str],
    stride: int,
    imgsz: tuple[int, int],
    batch: int = 1,
    task: str = "detect",
    **ours: object,
) -> dict[str, str]:
    """Build the flat string map for a model file; ``ours`` goes into the ``edge_mlla`` JSON entry.

    Example:
        >>> md = make_metadata({0: "cell"}, 32, (640, 640), precision="f32")
        >>> parse_metadata(md).names, parse_metadata(md).precision
        ({0: 'cell'}, 'f32')
    """
    from edge_mlla._version import __version__

    if "precision" in ours:
        ours["precision"] = normalize_precision(ours["precision"])  # type: ignore[arg-type]
    payload = {"version": __version__, **ours}
    return {
        "description": "edge_mlla YOLO detector",
        "author": "edge_mlla",
        "version": __version__,
        "task": task,
        "stride": str(int(stride)),
        "batch": str(int(batch)),
        "imgsz": str([int(imgsz[0]), int(imgsz[1])]),
        "names": str({int(k): str(v) for k, v in names.items()}),
        NAMESPACE: json.dumps(payload, sort_keys=True),
    }


def _literal(key: str, value: str) -> object:
    try:
        return ast.literal_eval(value)  # never eval(): metadata comes from files we did not write
    except (ValueError, SyntaxError) as e:
        raise ModelFileError(f"model metadata {key!r} is not a Python literal: {value[:80]!r}") from e


def parse_metadata(raw: dict[str, object]) -> ModelInfo:
    """Parse a metadata map (ours or Ultralytics') into :class:`ModelInfo`; missing keys keep defaults."""
    if not isinstance(raw, dict):
        raise ModelFileError(f"model metadata must be a mapping, got {type(raw).__name__}")
    raw = {str(k): v for k, v in raw.items()}
    names = raw.get("names")
    if isinstance(names, str):
        names = _literal("names", names)
    if isinstance(names, (list, tuple)):
        names = dict(enumerate(names))
    if names is not None and not isinstance(names, dict):
        raise ModelFileError(f"model metadata 'names' must be a dict or list, got {type(names).__name__}")
    imgsz = raw.get("imgsz")
    if isinstance(imgsz, str):
        imgsz = _literal("imgsz", imgsz)
    if isinstance(imgsz, int):
        imgsz = (imgsz, imgsz)
    if imgsz is not None:
        imgsz = (int(imgsz[0]), int(imgsz[1]))
    ours = raw.get(NAMESPACE) or {}
    if isinstance(ours, str):
        try:
            ours = json.loads(ours)
        except json.JSONDecodeError as e:
            raise ModelFileError(f"model metadata {NAMESPACE!r} is not JSON: {ours[:80]!r}") from e
    batch = raw.get("batch")
    return ModelInfo(
        names={int(k): str(v) for k, v in (names or {}).items()},
        stride=int(raw.get("stride", 32)),
        imgsz=imgsz,
        batch=int(batch) if batch not in (None, "") else None,
        task=str(raw.get("task", "detect")),
        edge_mlla=dict(ours),
        raw={k: str(v) for k, v in raw.items()},
    )


def read_openvino_metadata(model: Any, xml: Path | None = None) -> dict[str, str]:
    """Metadata of an ``openvino.Model``: ``rt_info["model_info"]`` (our exporter and Ultralytics'), an ONNX
    file's ``metadata_props`` (``rt_info["framework"]``), else ``metadata.yaml`` beside ``xml``. Duck-typed:
    this module never imports OpenVINO."""
    md: dict[str, str] = {}
    # IR: rt_info["model_info"]; an ONNX file read by OpenVINO: its metadata_props land in rt_info["framework"]
    for section in ("model_info", "framework"):
        try:
            if model.has_rt_info([section]):
                info = model.get_rt_info([section])
                for key, value in info.astype(dict).items():  # OVAny -> dict[str, OVAny]
                    md[str(key)] = value.astype(str) if hasattr(value, "astype") else str(value)
        except Exception as e:  # rt_info layout differs across OpenVINO versions: fall back to the yaml
            _LOGGER.debug("no usable rt_info %s in %s: %s", section, xml, e)
        if "names" in md:
            break
    yml = Path(xml).parent / "metadata.yaml" if xml is not None else None
    if "names" not in md and yml is not None and yml.is_file():  # Ultralytics' IR keeps names/stride/imgsz only in metadata.yaml
        import yaml

        data = yaml.safe_load(yml.read_text()) or {}
        md |= {str(k): (v if isinstance(v, str) else repr(v) if not isinstance(v, (int, float)) else str(v)) for k, v in data.items()}
        if isinstance(data.get("names"), dict):
            md["names"] = repr({int(k): str(v) for k, v in data["names"].items()})
        if isinstance(data.get("imgsz"), list):
            md["imgsz"] = repr([int(v) for v in data["imgsz"]])
    if "names" not in md and md.get("labels"):  # OpenVINO Model API convention: space-separated labels
        md["names"] = repr(dict(enumerate(md["labels"].split())))
    return md


def attach_openvino_metadata(model: Any, metadata: dict[str, str]) -> None:
    """Store ``metadata`` in an ``openvino.Model``'s ``rt_info["model_info"]`` (duck-typed)."""
    for k, v in metadata.items():
        model.set_rt_info(v, ["model_info", k])


def write_metadata_yaml(folder: Path, metadata: dict[str, str]) -> Path:
    """Write ``metadata.yaml`` (where Ultralytics' AutoBackend looks for an IR's metadata) into ``folder``."""
    import yaml  # PyYAML, a dependency of the training/export stack; only the writers need it

    path = Path(folder) / "metadata.yaml"
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(dict(metadata), f, sort_keys=False, allow_unicode=True)
    return path


def sibling_models(xml: Path) -> list[Path]:
    """Other OpenVINO models (``.xml``) in the folder of ``xml``: a shared folder must not get one model's
    ``metadata.yaml`` (Ultralytics reads that file for every IR in the folder)."""
    xml = Path(xml)
    return [p for p in sorted(xml.parent.glob("*.xml")) if p.name != xml.name]


def write_onnx_metadata(model: Any, metadata: dict[str, str]) -> None:
    """Replace an ``onnx.ModelProto``'s ``metadata_props`` by ``metadata`` (duck-typed: onnx is not imported)."""
    del model.metadata_props[:]
    for k, v in metadata.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = str(k), str(v)


def our_entry(metadata: dict[str, str]) -> dict:
    """The parsed ``edge_mlla`` JSON entry of a metadata map ({} when absent or unreadable)."""
    try:
        out = json.loads(metadata.get(NAMESPACE, "{}") or "{}")
    except json.JSONDecodeError:
        return {}
    return out if isinstance(out, dict) else {}


def int8_metadata(metadata: dict[str, str], details: dict[str, Any]) -> dict[str, str]:
    """Copy of ``metadata`` whose ``edge_mlla`` entry says precision int8, the source precision and how it was quantized."""
    from edge_mlla._version import __version__

    out = dict(metadata)
    entry = our_entry(metadata)
    entry.setdefault("version", __version__)
    entry["source_precision"] = normalize_precision(entry.get("precision") or "f32")
    entry["precision"] = "int8"
    entry["quantization"] = details
    out[NAMESPACE] = json.dumps(entry, sort_keys=True, default=str)
    return out


def file_precision(metadata: dict[str, str], input_dtype: Any = None) -> str:
    """The precision a model file computes in: our exporter's/quantizer's record, else its input dtype (f16/f32)."""
    try:
        recorded = normalize_precision(our_entry(metadata).get("precision"))
    except ConfigError:
        recorded = None
    if recorded:
        return recorded
    return "f16" if str(input_dtype) == "float16" else "f32"


# ------------------------------------------------------------------------------------------------- inspection
@dataclass(frozen=True)
class ModelFile:
    """What one exported model file is: path, format (``onnx``/``openvino``), its image input (name and
    (B, C, H, W) shape, None where dynamic), its metadata, and whether it already holds INT8 ops."""

    path: Path
    format: str
    input_name: str
    input_shape: tuple[int | None, ...]
    metadata: dict[str, str]
    quantized: bool
    output_shapes: tuple[tuple[int | None, ...] | None, ...] = ()  # None: the file records no shape for that output

    @property
    def fixed_shapes(self) -> bool:
        """Whether the input and every output have only fixed sizes in the file (what a CUDA graph needs)."""
        shapes = (self.input_shape, *self.output_shapes)
        return bool(self.output_shapes) and all(s is not None and None not in s for s in shapes)

    @property
    def info(self) -> ModelInfo:
        return parse_metadata(self.metadata)

    @property
    def static_hw(self) -> tuple[int, int] | None:
        h, w = self.input_shape[2], self.input_shape[3]
        return (h, w) if h is not None and w is not None else None

    @property
    def batch(self) -> int:
        return self.input_shape[0] or 1

    @property
    def precision(self) -> str:
        """``int8`` for a quantized file, else the recorded float precision (``f32`` when unknown)."""
        return "int8" if self.quantized else (self.info.precision or "f32")


def inspect_model(path: str | os.PathLike) -> ModelFile:
    """Read an exported ``.onnx`` / ``.xml`` (or its folder): input spec, metadata, INT8 or not.

    Raises MissingFileError, ModelFileError (unreadable, not one image input of shape (B, 3, H, W)).

    Example:
        >>> mf = inspect_model("best_openvino_model")  # doctest: +SKIP
        >>> mf.format, mf.input_shape, mf.precision  # doctest: +SKIP
        ('openvino', (1, 3, 640, 640), 'f32')
    """
    from edge_mlla.graph import read_graph

    p = resolve_model_file(path, (".onnx", ".xml"))
    if p.suffix.lower() == ".onnx":
        import onnx

        try:
            m = onnx.load(str(p), load_external_data=False)
        except Exception as e:
            raise ModelFileError(f"{p} is not a readable ONNX model: {e}") from e
        inits = {i.name for i in m.graph.initializer}
        ins = [i for i in m.graph.input if i.name not in inits]
        if len(ins) != 1:
            raise ModelFileError(f"{p} has {len(ins)} inputs; a detector has one image input")
        dims = tuple((d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None)
                     for d in ins[0].type.tensor_type.shape.dim)  # fmt: skip
        md = {prop.key: prop.value for prop in m.metadata_props}
        name, fmt = ins[0].name, "onnx"
        outs = tuple(
            tuple((d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None) for d in o.type.tensor_type.shape.dim)
            if o.type.tensor_type.HasField("shape") else None
            for o in m.graph.output
        )
    else:
        from edge_mlla.ovread import read_model

        m = read_model(p)
        if len(m.inputs) != 1:
            raise ModelFileError(f"{p} has {len(m.inputs)} inputs; a detector has one image input")
        port = m.inputs[0]
        dims = tuple(None if d.is_dynamic else d.get_length() for d in port.get_partial_shape())
        md = read_openvino_metadata(m, p)
        name, fmt = port.get_any_name(), "openvino"
        outs = tuple(
            None if o.get_partial_shape().rank.is_dynamic
            else tuple(None if d.is_dynamic else d.get_length() for d in o.get_partial_shape())
            for o in m.outputs
        )
    if len(dims) != 4 or dims[1] not in (None, 3):
        raise ModelFileError(f"{p} input has shape {dims}; expected (batch, 3, height, width)")
    quantized = read_graph(m).is_quantized() or our_entry(md).get("precision") == "int8"
    return ModelFile(p, fmt, name, dims, md, quantized, outs)


# ------------------------------------------------------------------------------------------------- INT8
#: op types (ONNX and OpenVINO) that only a quantized graph holds
QUANT_OP_TYPES = frozenset({"FakeQuantize", "FakeConvert", "QuantizeLinear", "DequantizeLinear", "QLinearConv",
                            "QLinearMatMul", "MatMulInteger", "ConvInteger", "DynamicQuantizeLinear"})  # fmt: skip


def has_quant_ops(op_types: Iterable[str]) -> bool:
    """The one INT8 test on a graph's op types (ONNX ``node.op_type``, OpenVINO ``op.get_type_name()``).

    Example:
        >>> has_quant_ops(["Conv", "QuantizeLinear"]), has_quant_ops(["Conv", "Sigmoid"])
        (True, False)
    """
    return any(t in QUANT_OP_TYPES for t in op_types)


# ------------------------------------------------------------------------------------------- files of a model
def model_files(path: str | os.PathLike) -> list[Path]:
    """The files that make up a model, the model file first: ``x.onnx``; ``x.xml`` + ``x.bin`` (+ ``metadata.yaml``
    when present); ``x.pt``. An OpenVINO export folder stands for its ``.xml``.

    Raises MissingFileError when the model or an IR's ``.bin`` is missing.
    """
    path = resolve_model_file(path)
    files = [path]
    if path.suffix.lower() == ".xml":
        if not path.with_suffix(".bin").is_file():
            raise MissingFileError(f"{path} has no weights file {path.with_suffix('.bin').name} beside it")
        files.append(path.with_suffix(".bin"))
        if (path.parent / "metadata.yaml").is_file():
            files.append(path.parent / "metadata.yaml")
    return files


def atomic_write(
    target: Path, write: Callable[[Path], None], companions: tuple[str, ...] = (), extras: tuple[str, ...] = ()
) -> Path:
    """Call ``write(tmp_path)`` on a temporary name beside ``target``, then rename into place.

    ``companions`` are suffixes of files written next to the model under the same stem (``.bin`` for an
    OpenVINO IR), ``extras`` other file names written beside it (``metadata.yaml``); they are renamed first and
    the model file last, so a reader never finds a new ``.xml`` without its ``.bin``. On any error nothing at
    ``target`` changes and temporaries are removed.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> atomic_write(d / "m.onnx", lambda t: t.write_bytes(b"x")).read_bytes()
        b'x'
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


def replace_dir(src: Path, dst: Path) -> None:
    """Move a finished folder into place; an existing one is swapped out only after the new one is complete."""
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(dst, old)
    try:
        os.replace(src, dst)
    except OSError:
        if old is not None:
            os.replace(old, dst)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
