"""Bundled datasets and dataset-name resolution (torch-free)."""

from __future__ import annotations

from pathlib import Path

from edge_mlla.errors import DatasetError, MissingFileError

DATA_DIR = Path(__file__).parent / "data"
BUNDLED = {"bccd": DATA_DIR / "bccd" / "data.yaml"}


def resolve_data(data: str | Path) -> Path:
    """Path of a data.yaml: a bundled name (``"bccd"``) or an existing file.

    Example:
        >>> resolve_data("bccd").name
        'data.yaml'
    """
    if not isinstance(data, (str, Path)):
        raise DatasetError(f"data must be a bundled name {sorted(BUNDLED)} or a data.yaml path, got {type(data).__name__}")
    if str(data) in BUNDLED:
        return BUNDLED[str(data)]
    p = Path(data)
    if p.is_dir() and (p / "data.yaml").is_file():
        p = p / "data.yaml"
    if not p.is_file():
        raise MissingFileError(f"dataset {str(data)!r} is neither a bundled name {sorted(BUNDLED)} nor an existing data.yaml")
    return p


def load_data_yaml(data: str | Path) -> dict:
    """Parse a YOLO data.yaml into a dict with absolute ``train``/``val``/``test`` folders and ``names``."""
    import yaml  # PyYAML: a dependency of Ultralytics; small, imported only here

    p = resolve_data(data)
    try:
        d = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise DatasetError(f"{p} is not valid YAML: {e}") from e
    if not isinstance(d, dict) or "names" not in d:
        raise DatasetError(f"{p} has no 'names' entry: not a YOLO data.yaml")
    root = Path(d.get("path") or p.parent)
    if not root.is_absolute():
        root = (p.parent / root).resolve()
    names = d["names"]
    if isinstance(names, list):
        names = dict(enumerate(names))
    out = {"yaml": p, "root": root, "names": {int(k): str(v) for k, v in names.items()}}
    for split in ("train", "val", "test"):
        if d.get(split):
            out[split] = (root / d[split]).resolve()
    return out
