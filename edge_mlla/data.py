"""Datasets: bundled names, data.yaml parsing and up-front validation (torch-free).

A YOLO data.yaml names a root (``path``, optional), split sources (``train``/``val``/``test``: a folder of
images, a list of folders, or a ``.txt`` file listing images) and class ``names`` (``nc`` optional). Labels
live beside the images with ``images`` replaced by ``labels`` in the path, one ``cls cx cy w h`` line per box
(normalised). :func:`validate_dataset` checks all of that before any slow work starts and raises
:class:`~edge_mlla.errors.DatasetError` naming the fix, instead of a 20-line traceback from deep inside training.

``path`` resolves: absolute; else relative to the yaml's own folder if that exists (so a dataset folder can be moved
with its yaml); else relative to the current folder (Ultralytics' rule). Training hands Ultralytics a copy of the
yaml with the root we resolved, so both agree.

Imports inside functions: yaml is optional or slow to import; our module ops pulls in more than importing this
module needs, so they load when the function that uses them runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edge_mlla.errors import DatasetError, MissingFileError

DATA_DIR = Path(__file__).parent / "data"
BUNDLED = {"bccd": DATA_DIR / "bccd" / "data.yaml"}
SPLITS = ("train", "val", "test")


def resolve_data(data: str | os.PathLike) -> Path:
    """Path of a data.yaml: a bundled name (``"bccd"``), a data.yaml, or a folder holding one.

    Example:
        >>> resolve_data("bccd").name
        'data.yaml'
    """
    if isinstance(data, bool) or not isinstance(data, (str, os.PathLike)):
        raise DatasetError(f"data must be a bundled name {sorted(BUNDLED)} or a data.yaml path, got {type(data).__name__}")
    if str(data) in BUNDLED:
        return BUNDLED[str(data)]
    p = Path(data)
    if p.is_dir():
        if (p / "data.yaml").is_file():
            return p / "data.yaml"
        raise DatasetError(f"{p} is a folder without a data.yaml; pass the dataset's .yaml file")
    if not p.is_file():
        raise MissingFileError(f"dataset {str(data)!r} is neither a bundled name {sorted(BUNDLED)} nor an existing data.yaml")
    if p.suffix.lower() not in (".yaml", ".yml"):
        raise DatasetError(f"dataset {p.name!r} is not a .yaml file; expected a YOLO data.yaml")
    return p


def _root(d: dict, yml: Path) -> Path:
    given = d.get("path")
    if not given:
        return yml.parent.resolve()
    p = Path(str(given)).expanduser()
    if p.is_absolute():
        if not p.is_dir():
            raise DatasetError(f"{yml}: path {str(given)!r} does not exist; fix 'path:' (the dataset root folder)")
        return p
    for cand in (yml.parent / p, Path.cwd() / p):
        if cand.is_dir():
            return cand.resolve()
    raise DatasetError(
        f"{yml}: path {str(given)!r} does not exist (tried {yml.parent / p} and {Path.cwd() / p}); fix 'path:' or "
        "remove it to use the yaml's own folder"
    )


def load_data_yaml(data: str | os.PathLike) -> dict[str, Any]:
    """Parse a YOLO data.yaml: ``yaml``, ``root``, ``names`` (id -> name) and, per split present, its source
    resolved against the root (a Path, or a list of Paths for a list of folders).

    Raises MissingFileError (no such file), DatasetError (not YAML, no ``names``, ``nc`` disagreeing with
    ``names``, a ``path`` that does not exist).
    """
    import yaml  # PyYAML: a dependency of Ultralytics and of the runtime install; imported only here

    p = resolve_data(data)
    try:
        d = yaml.safe_load(p.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise DatasetError(f"{p} is not valid YAML: {e}") from e
    if not isinstance(d, dict):
        raise DatasetError(f"{p} is not a YOLO data.yaml (expected a mapping with train/val/names)")
    if not d.get("names"):
        raise DatasetError(f"{p} has no 'names' entry; add the class names, e.g. names: {{0: cat, 1: dog}}")
    names = d["names"]
    if isinstance(names, list):
        names = dict(enumerate(names))
    if not isinstance(names, dict):
        raise DatasetError(f"{p}: 'names' must be a list or a mapping of class id to name, got {type(names).__name__}")
    try:
        names = {int(k): str(v) for k, v in names.items()}
    except (TypeError, ValueError):
        raise DatasetError(f"{p}: 'names' keys must be integer class ids, got {list(names)[:5]}") from None
    if sorted(names) != list(range(len(names))):
        raise DatasetError(f"{p}: 'names' ids must be 0..{len(names) - 1} without gaps, got {sorted(names)}")
    if "nc" in d and d["nc"] is not None and int(d["nc"]) != len(names):
        raise DatasetError(f"{p}: nc is {d['nc']} but 'names' has {len(names)} classes; make them agree (or drop nc)")
    root = _root(d, p)
    out: dict[str, Any] = {"yaml": p, "root": root, "names": names}
    for split in SPLITS:
        src = d.get(split)
        if not src:
            continue
        if isinstance(src, (list, tuple)):
            out[split] = [(root / str(s)).resolve() for s in src]
        else:
            out[split] = (root / str(src)).resolve()
    return out


def split_images(d: dict[str, Any], split: str) -> list[Path]:
    """Every image file of ``split`` of a parsed data.yaml: a folder (recursive), a list of folders, or a .txt
    file listing image paths (relative to the root). Raises DatasetError when the split is missing or absent."""
    from edge_mlla.ops import is_image_file, list_images

    if split not in d:
        have = [s for s in SPLITS if s in d]
        raise DatasetError(f"{d['yaml']} has no {split!r} split (it has: {', '.join(have) or 'none'})")
    sources = d[split] if isinstance(d[split], list) else [d[split]]
    files: list[Path] = []
    for src in sources:
        if src.is_dir():
            files += list_images(src, recursive=True)
        elif src.is_file() and src.suffix.lower() == ".txt":
            for line in src.read_text().splitlines():
                line = line.strip()
                if line:
                    f = Path(line) if Path(line).is_absolute() else (d["root"] / line)
                    if is_image_file(f):
                        files.append(f.resolve())
        else:
            raise DatasetError(
                f"{d['yaml']}: {split} source {src} does not exist; fix '{split}:' (a folder of images relative to "
                f"{d['root']}, or a .txt list of images)"
            )
    return files


def label_path(image: Path) -> Path:
    """``.../images/<split>/x.jpg`` -> ``.../labels/<split>/x.txt`` (the last ``images`` folder, as Ultralytics)."""
    s = str(image)
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return Path(sb.join(s.rsplit(sa, 1))).with_suffix(".txt") if sa in s else image.with_suffix(".txt")


def check_label_file(txt: Path, nc: int) -> int:
    """Number of boxes in a YOLO label file, after checking every line: ``cls cx cy w h`` (or a polygon
    ``cls x1 y1 x2 y2 ...``), an integer class id in [0, nc), numbers. Raises DatasetError naming file and line."""
    try:
        lines = txt.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"label file {txt} could not be read: {e}") from e
    n = 0
    for i, line in enumerate(lines, 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 5 or (len(parts) > 5 and len(parts) % 2 == 0):
            raise DatasetError(f"{txt}:{i}: expected 'cls cx cy w h' (5 numbers) or a polygon, got {line.strip()!r}")
        try:
            cls = float(parts[0])
            vals = [float(v) for v in parts[1:]]
        except ValueError:
            raise DatasetError(f"{txt}:{i}: not numbers: {line.strip()!r}") from None
        if not cls.is_integer() or not 0 <= cls < nc:
            raise DatasetError(f"{txt}:{i}: class id {parts[0]} is not an integer in [0, {nc}) (the yaml has {nc} names)")
        if any(v < -0.01 or v > 1.01 for v in vals):
            raise DatasetError(f"{txt}:{i}: coordinates must be normalised to [0, 1], got {line.strip()!r}")
        n += 1
    return n


def validate_dataset(data: str | os.PathLike, splits: tuple[str, ...] = ("train", "val"),
                     check_labels: bool = True) -> dict[str, Any]:  # fmt: skip
    """Check a dataset before training, evaluation or calibration; return the parsed yaml plus ``counts``
    (split -> images, labelled images, boxes).

    Checks: the yaml parses and has names (nc consistent), ``path`` exists, every asked split exists and has
    images, and (``check_labels``) every label file is readable YOLO format with class ids below nc; a training
    split must have at least one labelled image. Raises DatasetError (or MissingFileError) naming the fix.

    Example:
        >>> validate_dataset("bccd")["counts"]["val"]["images"]
        87
    """
    d = load_data_yaml(data)
    nc = len(d["names"])
    counts: dict[str, dict[str, int]] = {}
    for split in splits:
        files = split_images(d, split)
        if not files:
            raise DatasetError(f"{d['yaml']}: the {split} split ({d[split]}) has no images (any suffix OpenCV reads)")
        labelled = boxes = 0
        if check_labels:
            for f in files:
                txt = label_path(f)
                if txt.is_file():
                    labelled += 1
                    boxes += check_label_file(txt, nc)
            if split == "train" and labelled == 0:
                raise DatasetError(
                    f"{d['yaml']}: none of the {len(files)} train images has a label file (looked for "
                    f"{label_path(files[0])}); labels go in a 'labels' folder beside 'images'"
                )
        counts[split] = {"images": len(files), "labelled": labelled, "boxes": boxes}
    d["counts"] = counts
    return d
