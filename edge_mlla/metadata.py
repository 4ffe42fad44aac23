"""What a model file says about itself: one format, written by export, read by Detector (torch-free).

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

User arguments override what the file says.
"""

from __future__ import annotations

import ast
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_mlla.errors import ModelFileError

NAMESPACE = "edge_mlla"
_LOGGER = logging.getLogger("edge_mlla")


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
        """``fp32`` / ``fp16`` / ``int8`` as recorded by our exporter or quantizer, else None."""
        return self.edge_mlla.get("precision")


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
        >>> md = make_metadata({0: "cell"}, 32, (640, 640), precision="fp32")
        >>> parse_metadata(md).names
        {0: 'cell'}
    """
    from edge_mlla import __version__

    payload = {"version": __version__, **ours}
    return {
        "description": "edge_mlla YOLO11 detector",
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
