"""Model repositories for NVIDIA Triton Inference Server and OpenVINO Model Server (torch-free).

:func:`export_repo` lays out an exported model (``.onnx``, or OpenVINO ``.xml`` + ``.bin``) the
way each server loads it, with a configuration derived from the model file itself:

* **Triton** (``format="triton"``)::

      OUTPUT/NAME/config.pbtxt
      OUTPUT/NAME/1/model.onnx            (platform onnxruntime_onnx)
      OUTPUT/NAME/1/model.xml, model.bin  (backend openvino)

  ``config.pbtxt`` lists the inputs and outputs with the names, dims and data types read from the
  file (through :mod:`edge_mlla.runtimes`); a model whose batch dimension is dynamic gets
  ``max_batch_size: max_batch``, dims without the batch dimension and ``dynamic_batching``; a
  fixed-batch model gets ``max_batch_size: 0`` and its full explicit dims. ``instance_group`` has
  ``instances`` copies. Our metadata (class names, stride, imgsz, task, precision, edge_mlla
  version, the source file's name and SHA-256) goes into ``parameters`` under ``edge_mlla.*`` keys.

* **OpenVINO Model Server** (``format="ovms"``)::

      OUTPUT/config.json                  model_config_list, base_path relative to config.json
      OUTPUT/NAME/1/model.xml, model.bin  (or model.onnx)

  An existing ``config.json`` keeps its other models; the entry called ``NAME`` is replaced.

Neither server needs to be installed to build a repository. The servers run the raw network:
letterbox preprocessing and decode + NMS stay on the client (:mod:`edge_mlla.ops`), as in our
``Detector``. Files are written to a temporary folder and renamed into place.

Example:
    >>> from edge_mlla.serve.repository import export_repo
    >>> export_repo("best.onnx", format="triton", output="model_repository", max_batch=8, instances=2)  # doctest: +SKIP
    PosixPath('model_repository/best')

Imports inside functions: OpenVINO and the runtimes load only when a repository is written (start-up time of
``edge-mlla export-repo --help`` and of ``import edge_mlla.serve``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_mlla.errors import ConfigError, InputTypeError, MissingFileError, ModelFileError, OutputNotWritableError
from edge_mlla.serve.config import positive_int

LOGGER = logging.getLogger("edge_mlla.serve.repository")

FORMATS = ("triton", "ovms")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
#: numpy dtype -> Triton data type
TRITON_DTYPES = {
    np.dtype(np.float32): "TYPE_FP32",
    np.dtype(np.float16): "TYPE_FP16",
    np.dtype(np.float64): "TYPE_FP64",
    np.dtype(np.uint8): "TYPE_UINT8",
    np.dtype(np.int8): "TYPE_INT8",
    np.dtype(np.int32): "TYPE_INT32",
    np.dtype(np.int64): "TYPE_INT64",
    np.dtype(np.bool_): "TYPE_BOOL",
}


@dataclass(frozen=True)
class _Model:
    """What the repository needs to know about a model file."""

    path: Path
    kind: str  # "onnx" | "openvino"
    inputs: list[Any]  # TensorSpec
    outputs: list[Any]
    names: dict[int, str]
    stride: int
    imgsz: tuple[int, int]
    task: str
    precision: str
    sha256: str

    @property
    def files(self) -> list[tuple[Path, str]]:
        """(source file, name in the version folder)."""
        if self.kind == "onnx":
            return [(self.path, "model.onnx")]
        out = [(self.path, "model.xml"), (self.path.with_suffix(".bin"), "model.bin")]
        meta = self.path.parent / "metadata.yaml"  # Ultralytics reads it beside the .xml
        return out + ([(meta, "metadata.yaml")] if meta.is_file() else [])

    @property
    def dynamic_batch(self) -> bool:
        return self.inputs[0].shape[0] is None


def _resolve(model: str | os.PathLike) -> tuple[Path, str]:
    if not isinstance(model, (str, os.PathLike)):
        raise InputTypeError(f"model must be a path to a .onnx or .xml file, got {type(model).__name__}")
    from edge_mlla.modelfile import resolve_model_file

    p = Path(model).expanduser()
    if not p.exists():
        raise MissingFileError(f"model file not found: {p} (expected an exported .onnx or OpenVINO .xml)")
    p = resolve_model_file(p)  # an OpenVINO export folder -> its single .xml
    suffix = p.suffix.lower()
    if suffix == ".onnx":
        return p, "onnx"
    if suffix == ".xml":
        if not p.with_suffix(".bin").is_file():
            raise MissingFileError(f"{p} has no weights file {p.with_suffix('.bin').name} beside it")
        return p, "openvino"
    if suffix == ".pt":
        raise ModelFileError(f"{p} is a checkpoint; export it first (edge-mlla export {p} --format onnx|openvino)")
    raise ModelFileError(f"{p} is not a model file a server loads; expected .onnx or OpenVINO .xml (+ .bin)")


def read_model(model: str | os.PathLike) -> _Model:
    """Inputs, outputs (names, shapes, dtypes) and our metadata of an exported model, read by the runtime
    (ONNX Runtime for ``.onnx`` when installed, else OpenVINO; OpenVINO for ``.xml``).

    Example:
        >>> m = read_model("best.onnx")                 # doctest: +SKIP
        >>> m.inputs[0].shape, m.names                  # doctest: +SKIP
        ((1, 3, 640, 640), {0: 'RBC', 1: 'WBC', 2: 'Platelets'})
    """
    from edge_mlla.detector import Detector
    from edge_mlla.runtimes import available

    path, kind = _resolve(model)
    status = available()
    order = ("onnxruntime", "openvino") if kind == "onnx" else ("openvino",)
    backend = next((b for b in order if status.get(b)), None)
    if backend is None:
        raise ModelFileError(f"cannot read {path}: none of {', '.join(order)} is available here "
                             f"({'; '.join(str(status[b]) for b in order if b in status)})")  # fmt: skip
    det = Detector(path, backend=backend)  # also checks that it is a detector with metadata we understand
    try:
        if backend == "onnxruntime":  # ONNX Runtime reports the file's own tensors
            inputs, outputs = det.backend.inputs, det.backend.outputs
        else:  # a compiled OpenVINO model may carry fused preprocessing (u8 NHWC input): read the file itself
            inputs, outputs = _openvino_file_specs(path)
        ours = dict(getattr(det.info, "edge_mlla", {}) or {})
        precision = str(ours.get("precision") or det.precision)
        digest = hashlib.sha256()
        for f in [path] + ([path.with_suffix(".bin")] if kind == "openvino" else []):
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
        return _Model(path, kind, inputs, outputs, dict(det.names), int(det.stride), tuple(det.imgsz),
                      str(getattr(det.info, "task", "detect") or "detect"), precision, digest.hexdigest())  # fmt: skip
    finally:
        det.close()


def _openvino_file_specs(path: Path) -> tuple[list[Any], list[Any]]:
    """Inputs and outputs of a model file as OpenVINO reads it (before any compile-time preprocessing)."""
    from edge_mlla import ovread  # (this module has a read_model of its own)
    from edge_mlla.runtimes import TensorSpec

    model = ovread.read_model(path)

    def spec(port: Any) -> Any:
        shape = tuple(None if d.is_dynamic else d.get_length() for d in port.get_partial_shape())
        names = port.get_names()
        return TensorSpec(port.any_name if names else "", shape, np.dtype(port.get_element_type().to_dtype()))

    return [spec(p) for p in model.inputs], [spec(p) for p in model.outputs]


# ====================================================================================== Triton
def _q(text: str) -> str:
    """A protobuf text-format string literal."""
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _dims(shape: tuple[int | None, ...]) -> str:
    return "[ " + ", ".join("-1" if d is None else str(int(d)) for d in shape) + " ]"


def _tensor_block(specs: list[Any], drop_batch: bool) -> list[str]:
    lines = []
    for i, t in enumerate(specs):
        dtype = TRITON_DTYPES.get(np.dtype(t.dtype))
        if dtype is None:
            raise ModelFileError(f"tensor {t.name!r} has dtype {np.dtype(t.dtype)}, which has no Triton data type here")
        shape = tuple(t.shape[1:]) if drop_batch else tuple(t.shape)
        lines += ["  {", f"    name: {_q(t.name)}", f"    data_type: {dtype}", f"    dims: {_dims(shape)}",
                  "  }" + ("," if i < len(specs) - 1 else "")]  # fmt: skip
    return lines


def metadata_parameters(m: _Model) -> dict[str, str]:
    """Our metadata as flat strings (Triton ``parameters``, OVMS sidecar)."""
    from edge_mlla import __version__

    return {
        "edge_mlla.names": json.dumps({str(k): v for k, v in sorted(m.names.items())}),
        "edge_mlla.stride": str(m.stride),
        "edge_mlla.imgsz": json.dumps(list(m.imgsz)),
        "edge_mlla.task": m.task,
        "edge_mlla.precision": m.precision,
        "edge_mlla.version": __version__,
        "edge_mlla.source": m.path.name,
        "edge_mlla.sha256": m.sha256,
    }


def triton_config(m: _Model, name: str, max_batch: int = 8, instances: int = 1, kind: str = "cpu",
                  threads: int | None = None, queue_delay_us: int = 2000) -> str:  # fmt: skip
    """The text of ``config.pbtxt`` for model ``m`` (see the module docstring for the rules)."""
    dyn = m.dynamic_batch
    lines = [
        f"# Triton model configuration written by edge_mlla from {m.path.name}.",
        "# Input: letterboxed RGB float32 in [0, 1], NCHW; output: the raw detect head (decode + NMS on the client).",
        f"name: {_q(name)}",
        'platform: "onnxruntime_onnx"' if m.kind == "onnx" else 'backend: "openvino"',
        f"max_batch_size: {max_batch if dyn else 0}",
        "input [", *_tensor_block(m.inputs, dyn), "]",
        "output [", *_tensor_block(m.outputs, dyn), "]",
    ]
    if dyn and max_batch > 1:
        lines += ["dynamic_batching {", f"  max_queue_delay_microseconds: {int(queue_delay_us)}", "}"]
    lines += ["instance_group [", "  {", f"    count: {int(instances)}", f"    kind: KIND_{kind.upper()}", "  }", "]"]
    params = dict(metadata_parameters(m))
    if threads:  # the backends' own thread settings
        params["intra_op_thread_count" if m.kind == "onnx" else "INFERENCE_NUM_THREADS"] = str(int(threads))
    for k, v in params.items():
        lines += [f"parameters {{ key: {_q(k)} value {{ string_value: {_q(v)} }} }}"]
    return "\n".join(lines) + "\n"


# ====================================================================================== OVMS
def ovms_entry(m: _Model, name: str, instances: int = 1, threads: int | None = None, device: str = "CPU") -> dict[str, Any]:
    """One ``model_config_list`` entry (``base_path`` relative to ``config.json``)."""
    plugin: dict[str, Any] = {"PERFORMANCE_HINT": "THROUGHPUT" if instances > 1 else "LATENCY"}
    if instances > 1:
        plugin["NUM_STREAMS"] = int(instances)
    if threads:
        plugin["INFERENCE_NUM_THREADS"] = int(threads)
    return {"config": {"name": name, "base_path": name, "target_device": device, "nireq": max(1, int(instances)),
                       "plugin_config": plugin}}  # fmt: skip


# ====================================================================================== export
def export_repo(
    model: str | os.PathLike,
    format: str = "triton",
    output: str | os.PathLike = "model_repository",
    name: str | None = None,
    *,
    max_batch: int = 8,
    instances: int = 1,
    kind: str = "cpu",
    threads: int | None = None,
    queue_delay_us: int = 2000,
    version: int = 1,
    overwrite: bool = True,
) -> Path:
    """Add ``model`` to a Triton or OpenVINO Model Server repository at ``output``; returns ``output/NAME``.

    Args:
        model: exported ``.onnx`` or OpenVINO ``.xml`` (or its folder).
        format: ``"triton"`` or ``"ovms"``.
        output: repository root (created; other models in it are kept).
        name: model name in the server (default: the file's stem).
        max_batch: Triton ``max_batch_size`` for dynamic-batch models (fixed-batch models get 0).
        instances: Triton ``instance_group`` count; OVMS streams / infer requests.
        kind: Triton instance kind, ``cpu`` or ``gpu``.
        threads: runtime threads per instance (Triton ORT ``intra_op_thread_count`` / OpenVINO
            ``INFERENCE_NUM_THREADS``; OVMS ``plugin_config``).
        queue_delay_us: Triton ``dynamic_batching.max_queue_delay_microseconds``.
        version: the version folder's number.
        overwrite: replace an existing ``output/NAME`` (else raise).

    Example:
        >>> export_repo("best_openvino_model/best.xml", format="ovms", output="models")   # doctest: +SKIP
        PosixPath('models/best')
    """
    _check_args(format, kind, threads, max_batch=max_batch, instances=instances, version=version)
    m = read_model(model)
    name = name or re.sub(r"[^A-Za-z0-9_.-]", "_", m.path.stem)
    if not _NAME_RE.match(name):
        raise ConfigError(f"model name {name!r} must be 1-128 characters of letters, digits, '_', '.', '-'")
    from edge_mlla._io import ensure_writable_dir

    root = ensure_writable_dir(Path(output))
    final = root / name
    if final.exists() and not overwrite:
        raise OutputNotWritableError(f"{final} exists; pass overwrite=True (--overwrite) or another name")
    tmp = root / f".{name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        vdir = tmp / str(int(version))
        vdir.mkdir(parents=True)
        for src, dst in m.files:
            shutil.copyfile(src, vdir / dst)
        if format == "triton":
            (tmp / "config.pbtxt").write_text(
                triton_config(m, name, int(max_batch), int(instances), kind.lower(), threads, queue_delay_us), encoding="utf-8"
            )
        else:
            (tmp / "edge_mlla.json").write_text(json.dumps(metadata_parameters(m), indent=2) + "\n", encoding="utf-8")
        if final.exists():
            old = root / f".{name}.old-{uuid.uuid4().hex[:8]}"
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputNotWritableError(f"could not write the repository at {root}: {e}") from e
    if format == "ovms":
        _update_ovms_config(root / "config.json", ovms_entry(m, name, int(instances), threads))
    LOGGER.info("%s repository: %s (%s, %s batch%s)", format, final, m.kind,
                "dynamic" if m.dynamic_batch else f"fixed {m.inputs[0].shape[0]}",
                f", max_batch_size {max_batch}" if format == "triton" and m.dynamic_batch else "")  # fmt: skip
    return final


def _check_args(format: str, kind: str, threads: int | None, **counts: Any) -> None:
    if format not in FORMATS:
        raise ConfigError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    for what, value in counts.items():
        positive_int(value, what)
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1):
        raise ConfigError(f"threads must be an integer >= 1 or None, got {threads!r}")
    if kind.lower() not in ("cpu", "gpu"):
        raise ConfigError(f"kind must be 'cpu' or 'gpu', got {kind!r}")


def _update_ovms_config(path: Path, entry: dict[str, Any]) -> None:
    """Write ``config.json`` with ``entry`` in ``model_config_list`` (same-name entry replaced, others kept)."""
    cfg: dict[str, Any] = {"model_config_list": []}
    if path.is_file():
        try:
            cfg = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ConfigError(f"{path} exists but is not valid JSON ({e}); fix or remove it") from e
        if not isinstance(cfg, dict) or not isinstance(cfg.get("model_config_list", []), list):
            raise ConfigError(f"{path} has no model_config_list list; expected an OpenVINO Model Server config")
    name = entry["config"]["name"]
    models = [e for e in cfg.get("model_config_list", []) if (e.get("config") or {}).get("name") != name]
    cfg["model_config_list"] = models + [entry]
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


__all__ = ["FORMATS", "TRITON_DTYPES", "export_repo", "metadata_parameters", "ovms_entry", "read_model", "triton_config"]
