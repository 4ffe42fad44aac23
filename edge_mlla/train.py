"""Train YOLO11-MLLA (or any Ultralytics yaml/checkpoint) with Ultralytics, offline, on bundled data."""

from __future__ import annotations

import logging
from pathlib import Path

from edge_mlla.data import resolve_data
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
    **overrides,
) -> Path:
    """Train and return the path of ``best.pt``.

    Example:
        >>> best = train("yolo11n-mlla.yaml", data="bccd", imgsz=320, epochs=1)  # doctest: +SKIP
    """
    import edge_mlla.nn  # noqa: F401  registers C2MLLA and our yamls (and sets up offline mode)
    from ultralytics import YOLO

    for key, val in (("imgsz", imgsz), ("epochs", epochs), ("batch", batch)):
        if not isinstance(val, int) or isinstance(val, bool) or val <= 0:
            raise ConfigError(f"{key} must be a positive int, got {val!r}")
    yaml_path = resolve_data(data)
    yolo = YOLO(str(model))
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
        exist_ok=True,
        amp=False,
        **overrides,
    )
    best = Path(yolo.trainer.best)
    if not best.is_file():
        best = Path(yolo.trainer.last)
    LOGGER.info("trained weights: %s", best)
    return best
