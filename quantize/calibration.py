"""Calibration data for INT8 quantization: images from a folder, a video, a data.yaml or arrays, preprocessed
exactly as :class:`edge_mlla.Detector` preprocesses them (its own :func:`edge_mlla.ops.as_bgr` and
:func:`edge_mlla.ops.preprocess`; nothing is re-implemented here).

Sources (``load_calibration(source, ...)``):

* an image folder (searched recursively for jpg/jpeg/png/bmp/tif/tiff/webp);
* a video file (every ``every``-th frame; by default spread evenly over the video);
* a YOLO ``data.yaml`` path or a bundled dataset name (``"bccd"``): its train split;
* numpy arrays: a list of BGR uint8 HxWx3 images, or one NxHxWx3 uint8 array.

Files that cannot be decoded are skipped and counted (:attr:`CalibrationSet.skipped`). When fewer usable
images exist than ``subset_size`` a :class:`~edge_mlla.errors.CalibrationWarning` is issued and all are used.

Example:
    >>> from edge_mlla.quantize.calibration import load_calibration
    >>> calib = load_calibration("bccd", imgsz=320, subset_size=8)
    >>> len(calib), next(iter(calib)).shape
    (8, (1, 3, 320, 320))

Imports inside functions: OpenCV, tqdm and the dataset readers load only for the source kind that needs them (start-
up time).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_mlla.errors import (
    CalibrationWarning,
    DatasetError,
    EdgeMLLAError,
    ImageReadError,
    InputTypeError,
    MissingFileError,
    ShapeError,
)

LOGGER = logging.getLogger("edge_mlla")

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"})


@dataclass
class CalibrationSet:
    """A re-iterable calibration set: yields float32 NCHW batches of the model's input shape.

    ``kind`` is ``folder``, ``video``, ``data.yaml`` or ``arrays``; ``used`` counts images in the set,
    ``skipped`` lists ``(item, reason)`` for inputs that could not be used (corrupt files).
    """

    kind: str
    source: str
    imgsz: tuple[int, int]
    stride: int = 32
    batch: int = 1
    items: list[Any] = field(default_factory=list)  # paths, arrays, or video frame indices
    skipped: list[tuple[str, str]] = field(default_factory=list)
    requested: int = 0

    @property
    def used(self) -> int:
        return len(self.items)

    def __len__(self) -> int:
        """Number of batches one pass yields."""
        return -(-len(self.items) // self.batch)

    def images(self) -> Iterator[np.ndarray]:
        """The calibration images (BGR uint8 HxWx3), in order."""
        from edge_mlla.ops import as_bgr

        if self.kind == "video":
            yield from _video_frames(Path(self.source), set(self.items))
            return
        for item in self.items:
            yield as_bgr(item)

    def __iter__(self) -> Iterator[np.ndarray]:
        from edge_mlla.ops import preprocess

        chunk: list[np.ndarray] = []
        for img in self.images():
            chunk.append(img)
            if len(chunk) == self.batch:
                yield preprocess(chunk, self.imgsz, self.stride, batch_size=self.batch)[0]
                chunk = []
        if chunk:
            yield preprocess(chunk, self.imgsz, self.stride, batch_size=self.batch)[0]

    def summary(self) -> dict[str, Any]:
        """JSON-ready description for reports."""
        return {
            "kind": self.kind,
            "source": self.source,
            "requested": self.requested,
            "used": self.used,
            "skipped": len(self.skipped),
            "skipped_items": [f"{i}: {r}" for i, r in self.skipped[:20]],
            "imgsz": list(self.imgsz),
        }


def _pick(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)`` (all of them when ``k >= n``)."""
    if k >= n:
        return list(range(n))
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, k)})


def _warn_few(found: int, subset_size: int, what: str) -> None:
    msg = f"calibration: {what} has {found} usable image(s), fewer than subset_size={subset_size}; using all {found}"
    warnings.warn(msg, CalibrationWarning, stacklevel=3)  # once: the CLI routes warnings through logging


def _from_files(files: list[Path], subset_size: int, what: str,
                progress: bool = True) -> tuple[list[Path], list[tuple[str, str]]]:  # fmt: skip
    """Check files in an evenly spread order until ``subset_size`` decode; corrupt ones are skipped and counted."""
    from edge_mlla.ops import as_bgr

    order = _pick(len(files), subset_size)
    chosen = set(order)
    rest = [i for i in range(len(files)) if i not in chosen]  # replacements for corrupt picks
    good: list[Path] = []
    skipped: list[tuple[str, str]] = []
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with the quant extra
        def tqdm(x, **_):  # type: ignore[no-redef]
            return x
    for i in tqdm(order + rest, desc="calibration: checking images", disable=not progress or len(files) < 50,
                  leave=False):  # fmt: skip
        if len(good) >= subset_size:
            break
        try:
            as_bgr(files[i])
            good.append(files[i])
        except (ImageReadError, MissingFileError) as e:
            skipped.append((str(files[i]), type(e).__name__))
            LOGGER.warning("calibration: skipping %s (%s)", files[i], e)
    if not good:
        raise DatasetError(f"calibration source {what} has {len(files)} image file(s) but none could be decoded")
    if len(good) < subset_size:
        _warn_few(len(good), subset_size, what)
    return good, skipped


def _folder_images(folder: Path) -> list[Path]:
    from edge_mlla.ops import list_images

    if not any(folder.iterdir()):
        raise DatasetError(f"calibration folder {folder} is empty; expected image files (jpg, png, bmp, tif, webp, ...)")
    files = list_images(folder, recursive=True)
    if not files:
        raise DatasetError(f"calibration folder {folder} has no images (looked for any image suffix OpenCV reads, recursively)")
    return files


def _video_frames(path: Path, wanted: set[int]) -> Iterator[np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        i, last = 0, max(wanted) if wanted else -1
        while i <= last:
            if i in wanted:
                ok, frame = cap.read()
                if not ok:
                    break
                yield frame
            elif not cap.grab():
                break
            i += 1
    finally:
        cap.release()


def _video_items(path: Path, subset_size: int, every: int | None) -> tuple[list[int], int]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise DatasetError(f"calibration video {path} could not be opened (OpenCV/FFMPEG cannot read it)")
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    if n <= 0:  # container without a frame count: count by grabbing
        while cap.grab():
            n += 1
    cap.release()
    if n <= 0:
        raise DatasetError(f"calibration video {path} has no frames")
    k = every or max(1, n // max(subset_size, 1))
    idx = list(range(0, n, k))[:subset_size]
    # frame counts from containers can be approximate: keep only frames that really decode
    got = sum(1 for _ in _video_frames(path, set(idx)))
    idx = idx[:got]
    if not idx:
        raise DatasetError(f"calibration video {path}: no frame could be decoded")
    if len(idx) < subset_size:
        _warn_few(len(idx), subset_size, f"video {path} (every {k}th of {n} frames)")
    return idx, k


def _check_array(a: Any, i: int) -> np.ndarray:
    from edge_mlla.ops import as_bgr

    if not isinstance(a, np.ndarray):
        raise InputTypeError(f"calibration array {i} has type {type(a).__name__}; expected a BGR uint8 HxWx3 numpy array")
    try:
        return as_bgr(a)
    except EdgeMLLAError as e:
        raise ShapeError(f"calibration array {i}: {e}") from e


def load_calibration(
    source: str | os.PathLike | np.ndarray | Sequence[np.ndarray] | CalibrationSet,
    imgsz: int | tuple[int, int] = 640,
    subset_size: int = 300,
    stride: int = 32,
    batch: int = 1,
    every: int | None = None,
    progress: bool = True,
) -> CalibrationSet:
    """Build a :class:`CalibrationSet` from an image folder, a video, a data.yaml / bundled name, or arrays.

    Args:
        source: see the module docstring.
        imgsz: model input (height, width) or an int for square inputs.
        subset_size: at most this many images (spread evenly over the source).
        stride: model stride (letterbox rounding, as in Detector).
        batch: model batch size; each yielded array holds ``batch`` images (the last padded grey).
        every: for videos, take every ``every``-th frame (default: spread ``subset_size`` frames evenly).
        progress: a progress bar while files are checked (50 or more files).

    Raises:
        MissingFileError (no such path), DatasetError (empty folder, no images, nothing decodable, unreadable
        video), InputTypeError / ShapeError (bad arrays), ConfigError (bad sizes).

    Example:
        >>> calib = load_calibration("clips/street.mp4", imgsz=640, subset_size=100, every=10)  # doctest: +SKIP
    """
    from edge_mlla.errors import ConfigError

    if isinstance(source, CalibrationSet):
        return source
    if isinstance(subset_size, bool) or not isinstance(subset_size, int) or subset_size < 1:
        raise ConfigError(f"subset_size must be a positive int, got {subset_size!r}")
    if every is not None and (not isinstance(every, int) or every < 1):
        raise ConfigError(f"every must be a positive int (take every k-th video frame), got {every!r}")
    from edge_mlla.ops import parse_imgsz

    hw = parse_imgsz(imgsz)
    base = dict(imgsz=hw, stride=int(stride), batch=int(batch), requested=subset_size)

    if isinstance(source, np.ndarray) or (isinstance(source, (list, tuple)) and source
                                          and all(isinstance(a, np.ndarray) for a in source)):  # fmt: skip
        return _from_arrays(source, subset_size, base)
    if isinstance(source, (list, tuple)):
        if not source:
            raise DatasetError("calibration got an empty list; expected image paths or BGR uint8 arrays")
        files = [Path(p) for p in source]
        good, skipped = _from_files(files, subset_size, f"list of {len(files)} files", progress)
        return CalibrationSet(kind="files", source=f"{len(files)} files", items=good, skipped=skipped, **base)
    if not isinstance(source, (str, os.PathLike)):
        raise InputTypeError(
            f"calibration source has type {type(source).__name__}; expected an image folder, a video file, "
            "a data.yaml, a bundled dataset name, or numpy arrays"
        )
    return _from_path(source, subset_size, every, progress, base)


def _from_arrays(source: np.ndarray | Sequence[np.ndarray], subset_size: int, base: dict[str, Any]) -> CalibrationSet:
    arrays = list(source) if not (isinstance(source, np.ndarray) and source.ndim == 3) else [source]
    if not arrays:
        raise DatasetError("calibration got an empty array list; expected at least one image")
    arrays = [_check_array(a, i) for i, a in enumerate(arrays)]
    picked = [arrays[i] for i in _pick(len(arrays), subset_size)]
    if len(picked) < subset_size:
        _warn_few(len(picked), subset_size, "the array list")
    return CalibrationSet(kind="arrays", source=f"{len(arrays)} arrays", items=picked, **base)


def _from_path(source: str | os.PathLike, subset_size: int, every: int | None, progress: bool,
               base: dict[str, Any]) -> CalibrationSet:  # fmt: skip
    from edge_mlla.data import BUNDLED, split_images, validate_dataset
    from edge_mlla.ops import IMAGE_SUFFIXES

    path = Path(source)
    if str(source) in BUNDLED or path.suffix.lower() in (".yaml", ".yml"):
        d = validate_dataset(source, splits=("train",), check_labels=False)  # calibration needs images only
        train = d["train"]
        good, skipped = _from_files(split_images(d, "train"), subset_size, f"{d['yaml']} (train: {train})", progress)
        return CalibrationSet(kind="data.yaml", source=str(d["yaml"]), items=good, skipped=skipped, **base)
    if not path.exists():
        raise MissingFileError(f"calibration source not found: {path} (expected an image folder, video, or data.yaml)")
    if path.is_dir():
        good, skipped = _from_files(_folder_images(path), subset_size, f"folder {path}", progress)
        return CalibrationSet(kind="folder", source=str(path), items=good, skipped=skipped, **base)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        idx, k = _video_items(path, subset_size, every)
        return CalibrationSet(kind="video", source=str(path), items=idx, **base)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        good, skipped = _from_files([path], subset_size, f"image {path}")
        return CalibrationSet(kind="files", source=str(path), items=good, skipped=skipped, **base)
    raise DatasetError(
        f"calibration source {path} is neither a folder, a video ({', '.join(sorted(VIDEO_SUFFIXES))}), "
        "an image, nor a data.yaml"
    )
