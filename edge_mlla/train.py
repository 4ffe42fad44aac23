"""Train YOLO11-MLLA (or any Ultralytics yaml/checkpoint) with Ultralytics, offline, on bundled data.

Imports inside functions: ultralytics, yaml are optional or slow to import; our modules errors, nn pull in more than
importing this module needs, so they load when the function that uses them runs.
"""

from __future__ import annotations

import logging
from pathlib import Path

from edge_mlla.data import validate_dataset
from edge_mlla.errors import ConfigError

LOGGER = logging.getLogger("edge_mlla")


def train(
    model: str | Path = "yolo11n-mlla.yaml",
    data: str | Path = "bccd",
    imgsz: int = 640,
    epochs: int = 50,
    batch: int = 16,
    device: str = "cpu",
    project: str | Path = "runs/train",
    name: str = "exp",
    exist_ok: bool = False,
    **overrides,
) -> Path:
    """Train and return the path of ``best.pt``.

    The dataset is validated first (:func:`edge_mlla.data.validate_dataset`: paths, images, labels, names), so a
    wrong data.yaml is one ``DatasetError`` naming the fix. An earlier run is never overwritten: a taken ``name``
    becomes ``name2``, ``name3``, ... (Ultralytics' increment_path), unless ``exist_ok=True``.

    Example:
        >>> best = train("yolo11n-mlla.yaml", data="bccd", imgsz=320, epochs=1)  # doctest: +SKIP
    """
    import edge_mlla.nn  # noqa: F401  registers C2MLLA and our yamls (and sets up offline mode)

    for key, val in (("imgsz", imgsz), ("epochs", epochs), ("batch", batch)):
        if not isinstance(val, int) or isinstance(val, bool) or val <= 0:
            raise ConfigError(f"{key} must be a positive int, got {val!r}")
    if not isinstance(exist_ok, bool):
        raise ConfigError(f"exist_ok must be True or False, got {exist_ok!r}")
    d = validate_dataset(data, splits=("train", "val"))
    yaml_path = _resolved_yaml(d, Path(project))
    yolo = _load_model(model)
    overrides.setdefault("workers", 2)
    overrides.setdefault("plots", False)
    yolo.train(
        data=str(yaml_path),
        imgsz=imgsz,
        epochs=epochs,
        batch=batch,
        device=device,
        project=str(Path(project).resolve()),
        name=name,
        exist_ok=exist_ok,
        amp=False,
        **overrides,
    )
    best = Path(yolo.trainer.best)
    if not best.is_file():
        best = Path(yolo.trainer.last)
    LOGGER.debug("trained weights: %s", best)  # the CLI prints it; Ultralytics' own summary names it too
    return best


def _load_model(model: str | Path):
    """``YOLO(model)`` with a typed error for a missing or unreadable model file or yaml."""
    from ultralytics import YOLO

    from edge_mlla.errors import MissingFileError, ModelFileError

    p = Path(model)
    if p.suffix.lower() == ".pt" and not p.is_file():
        raise MissingFileError(f"checkpoint not found: {p}")
    if p.suffix.lower() not in (".pt", ".yaml", ".yml"):
        raise ConfigError(f"model must be a model yaml (e.g. yolo11n-mlla.yaml) or a .pt checkpoint, got {str(model)!r}")
    try:
        return YOLO(str(model))
    except ConfigError:
        raise
    except FileNotFoundError as e:
        raise MissingFileError(f"model {str(model)!r} not found: {e}") from e
    except Exception as e:  # a corrupt checkpoint or yaml
        raise ModelFileError(f"model {str(model)!r} could not be loaded: {type(e).__name__}: {e}") from e


def _resolved_yaml(d: dict, project: Path) -> Path:
    """The data.yaml to hand Ultralytics: the user's, or (when its ``path`` is relative, which Ultralytics resolves
    differently) a copy with the root we validated written as an absolute ``path``."""
    import yaml

    src = Path(d["yaml"])
    raw = yaml.safe_load(src.read_text()) or {}
    if not raw.get("path") or Path(str(raw["path"])).is_absolute():
        return src
    out = project.resolve() / ".data" / src.name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump({**raw, "path": str(d["root"])}, sort_keys=False))
    return out
