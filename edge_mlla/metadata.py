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
from dataclasses import dataclass, field

from edge_mlla.errors import ModelFileError

NAMESPACE = "edge_mlla"


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
