"""Video clips made from the bundled data, for demos, tests and benchmarks: the bundled 640x480 panning clip
(:func:`bundled_clip`, :func:`make_pan_clip`)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from edge_mlla.errors import ConfigError, MissingFileError, OutputNotWritableError

DATA = Path(__file__).resolve().parent / "data"
CLIP = DATA / "clips" / "bccd_pan.mp4"


def bundled_clip() -> Path:
    """Path of the bundled 640x480 BCCD panning clip (``edge_mlla/data/clips/bccd_pan.mp4``).

    Example:
        >>> bundled_clip().name
        'bccd_pan.mp4'
    """
    if not CLIP.is_file():
        raise MissingFileError(
            f"bundled clip not found: {CLIP} (this install lacks the package data; make one with "
            "edge_mlla.clips.make_pan_clip(path))"
        )
    return CLIP


def pan_offset(frame: int, frames: int = 300, strip_width: int = 2560, width: int = 640) -> float:
    """Left edge (strip pixels) of frame ``frame`` of a :func:`make_pan_clip` clip: a constant-speed pan
    from 0 to ``strip_width - width`` over ``frames`` frames.

    Example:
        >>> pan_offset(0), pan_offset(299)
        (0.0, 1920.0)
    """
    return frame * (strip_width - width) / max(1, frames - 1)


def make_pan_clip(
    out: str | os.PathLike,
    images: Sequence[str | os.PathLike] | None = None,
    frames: int = 300,
    fps: float = 30.0,
    size: tuple[int, int] = (640, 480),
) -> Path:
    """Write a deterministic clip that pans a ``size`` (width, height) window across images laid side by side.

    Default images: the first four BCCD test images (sorted by name), so the window moves right at
    ``(4 * 640 - 640) / 299 = 6.42`` px per frame and objects move left by as much (:func:`pan_offset`).
    Sub-pixel shifts use bilinear interpolation; the codec is mp4v. The file is written to a temporary
    name beside ``out`` and renamed.

    Example:
        >>> make_pan_clip("runs/pan.mp4", frames=30)   # doctest: +SKIP
        PosixPath('runs/pan.mp4')
    """
    w, h = (int(v) for v in size)
    if frames < 2 or w < 16 or h < 16 or not fps > 0:
        raise ConfigError(f"make_pan_clip needs frames >= 2, a size of at least 16x16 and fps > 0, got {frames}, {size}, {fps}")
    if images is None:
        images = sorted((DATA / "bccd" / "images" / "test").glob("*.jpg"))[:4]
    tiles = []
    for p in images:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise MissingFileError(f"make_pan_clip: {p} is missing or not an image")
        tiles.append(cv2.resize(img, (round(img.shape[1] * h / img.shape[0]), h), interpolation=cv2.INTER_AREA))
    if not tiles:
        raise MissingFileError("make_pan_clip: no images (the bundled BCCD test images are missing)")
    strip = np.concatenate(tiles, axis=1)
    if strip.shape[1] < w:
        raise ConfigError(f"make_pan_clip: the images are {strip.shape[1]} px wide side by side; need at least {w}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".mp4", dir=out.parent)
    os.close(fd)
    writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
    try:
        if not writer.isOpened():
            raise OutputNotWritableError(f"cannot write {out} with the mp4v codec")
        for f in range(frames):
            x0 = pan_offset(f, frames, strip.shape[1], w)
            m = np.float32([[1, 0, -x0], [0, 1, 0]])
            writer.write(cv2.warpAffine(strip, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    except BaseException:
        writer.release()
        Path(tmp).unlink(missing_ok=True)
        raise
    writer.release()
    os.replace(tmp, out)
    return out
