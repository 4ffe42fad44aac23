"""Image files and arrays: which files are images, reading them (EXIF orientation applied, truncated files
caught), user arrays to BGR uint8, and the one input-size parser of the library and every command."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_mlla.errors import (
    ConfigError,
    ImageReadError,
    InputTypeError,
    MissingFileError,
    ShapeError,
)

LOGGER = logging.getLogger("edge_mlla")
#: every still-image suffix OpenCV's imread decodes (matched case-insensitively)
IMAGE_SUFFIXES = (".bmp", ".dib", ".jpg", ".jpeg", ".jpe", ".jp2", ".png", ".webp", ".avif", ".pbm", ".pgm",
                  ".ppm", ".pxm", ".pnm", ".pfm", ".sr", ".ras", ".tif", ".tiff", ".exr", ".hdr", ".pic")  # fmt: skip


# 16-bit kept, gray kept, alpha dropped (as_bgr would drop it), and the EXIF orientation applied, as cv2.imread's
# default and Ultralytics do (IMREAD_UNCHANGED would ignore the orientation: a phone photo would arrive sideways)
_READ_FLAGS = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR


class ImageReadWarning(UserWarning):
    """An image decoded only partly (truncated or corrupt file) and was used anyway (``strict=False``)."""


# ------------------------------------------------------------------------------------------------ image files
def is_image_file(path: str | os.PathLike) -> bool:
    """True for a file whose suffix OpenCV reads as a still image (any case: ``.JPG``, ``.jpeg``, ``.Png``).

    Example:
        >>> is_image_file("a.JPG"), is_image_file("b.jpeg"), is_image_file("c.txt")
        (True, True, False)
    """
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def list_images(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Image files in ``folder`` (sorted; sub-folders too when ``recursive``), by :func:`is_image_file`.

    Raises MissingFileError when ``folder`` is not an existing folder. An empty list is returned as is:
    callers decide whether "no images" is an error.
    """
    p = Path(folder)
    if not p.is_dir():
        raise MissingFileError(f"image folder not found: {p}")
    files = p.rglob("*") if recursive else p.iterdir()
    return sorted(f for f in files if f.is_file() and is_image_file(f))


def _truncated(data: bytes) -> str | None:
    """Why an encoded JPEG/PNG is incomplete (its end marker is missing), else None. Other formats: None."""
    if data[:2] == b"\xff\xd8":  # JPEG: the EOI marker ends the file (entropy data never holds FF D9)
        return None if b"\xff\xd9" in data[-1024:] else "JPEG end-of-image marker missing (file truncated?)"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return None if b"IEND" in data[-64:] else "PNG IEND chunk missing (file truncated?)"
    return None


_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def _quiet_codecs() -> Iterator[None]:
    """Silence what a codec library prints straight to file descriptor 2 (libjpeg's "Premature end of JPEG
    file" on a truncated file): the caller reports the problem itself, once, as a warning."""
    with _STDERR_LOCK:
        try:
            saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
        except OSError:  # no fd 2 (embedded interpreters): nothing to silence
            yield
            return
        try:
            sys.stderr.flush()
            os.dup2(null, 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(null)


def read_image(path: str | os.PathLike, strict: bool = True) -> np.ndarray:
    """Read an image file as BGR uint8 HxWx3 (16-bit files are scaled to 8 bits, alpha dropped, gray expanded).

    A truncated or corrupt JPEG/PNG (which OpenCV decodes partly, printing only a libjpeg line to stderr) raises
    :class:`ImageReadError` with ``strict=True`` (default); with ``strict=False`` the partial image is used and an
    :class:`ImageReadWarning` is issued.

    Raises MissingFileError (no such file), ImageReadError (a folder, undecodable, or truncated when strict).

    Example:
        >>> read_image("missing.jpg")
        Traceback (most recent call last):
        ...
        edge_mlla.errors.MissingFileError: image file not found: missing.jpg
    """
    p = Path(path)
    if p.is_dir():
        raise ImageReadError(f"{p} is a folder, not an image file (pass the files, or a folder where a command takes one)")
    if not p.is_file():
        raise MissingFileError(f"image file not found: {p}")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ImageReadError(f"{p} could not be read: {e}") from e
    why = _truncated(data)
    if why and strict:
        raise ImageReadError(f"{p}: {why}; pass strict=False (CLI: --no-strict) to use the partly decoded image")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), _READ_FLAGS) if data else None
    if img is None and why:  # imdecode refuses truncated data; imread decodes what is there
        with _quiet_codecs():
            img = cv2.imread(str(p), _READ_FLAGS)
    if img is None:
        raise ImageReadError(
            f"{p} could not be decoded as an image (OpenCV reads {', '.join(s[1:] for s in IMAGE_SUFFIXES[:8])}, ...)"
        )
    if why:
        warnings.warn(f"{p}: {why}; using the partly decoded image", ImageReadWarning, stacklevel=2)
    return as_bgr(img)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:  # full 16-bit range -> 8 bits, rounded (x / 257): 65535 -> 255, 257 -> 1
        return ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if image.dtype == bool:
        return image.astype(np.uint8) * 255
    if np.issubdtype(image.dtype, np.floating):
        raise ShapeError(
            f"image dtype is {image.dtype}; expected uint8 (BGR, 0..255) or uint16. A float image in [0, 1] converts "
            "with (img * 255).round().clip(0, 255).astype(np.uint8)"
        )
    raise ShapeError(f"image dtype is {image.dtype}; expected uint8 (BGR, 0..255) or uint16 (0..65535)")


def as_bgr(image: Any, rgb: bool = False, strict: bool = True) -> np.ndarray:
    """Validate one user image and return it as a contiguous BGR (or RGB when ``rgb``) uint8 HxWx3 array.

    Gray (HxW, HxWx1) becomes 3-channel; BGRA/RGBA drops alpha; uint16 is scaled to 8 bits (``x / 257``,
    rounded); a path is read with :func:`read_image` (``strict`` applies to it).

    Example:
        >>> import numpy as np
        >>> as_bgr(np.zeros((4, 6), np.uint8)).shape
        (4, 6, 3)
        >>> int(as_bgr(np.full((2, 2, 3), 65535, np.uint16)).max())
        255
        >>> as_bgr(np.zeros((4, 6, 3), np.float32))
        Traceback (most recent call last):
        ...
        edge_mlla.errors.ShapeError: image dtype is float32; expected uint8 (BGR, 0..255) or uint16. A float image in [0, 1] converts with (img * 255).round().clip(0, 255).astype(np.uint8)
    """
    if image is None:
        raise InputTypeError("image is None; expected a BGR uint8 HxWx3 array, an image path, or a list of them")
    if isinstance(image, (str, os.PathLike)):
        return read_image(image, strict=strict)
    if not isinstance(image, np.ndarray):
        raise InputTypeError(
            f"image has type {type(image).__name__}; expected a BGR uint8 HxWx3 numpy array, an image path, or a list of them"
        )
    if image.size == 0:
        raise ShapeError(f"image is empty (shape {image.shape}); expected a BGR uint8 HxWx3 array with H, W >= 1")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise ShapeError(
            f"image has shape {image.shape}; expected HxWx3 BGR (also accepted: HxW gray, HxWx4 BGRA, NxHxWx3 batch)"
        )
    image = _to_uint8(image)
    if image.ndim == 2:
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGBA2RGB if rgb else cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(image)


# ---------------------------------------------------------------------------------------------------- imgsz
def parse_imgsz(value: Any, stride: int | None = None, what: str = "imgsz") -> tuple[int, int]:
    """The one input-size parser of the library and every command: ``640``, ``"640"``, ``"192x640"``,
    ``"192,640"``, ``"192 640"``, ``(192, 640)`` or ``[640]`` -> (height, width). With ``stride``, each side must
    be a multiple of it (the error suggests the next valid size).

    Example:
        >>> parse_imgsz("192x640"), parse_imgsz("192 640"), parse_imgsz(320), parse_imgsz(["256", "320"])
        ((192, 640), (192, 640), (320, 320), (256, 320))
        >>> parse_imgsz("200x640", stride=32)
        Traceback (most recent call last):
        ...
        edge_mlla.errors.ConfigError: imgsz 200x640 (height x width) is not valid: each side must be a multiple of the model's max stride 32 (e.g. 224x640)
    """
    vals: list[Any]
    if isinstance(value, bool) or value is None:
        raise ConfigError(f"{what} must be an int or (height, width), got {value!r}")
    if isinstance(value, str):
        vals = re.split(r"\s*[x,X*]\s*|\s+", value.strip())  # '640x' or 'x640' leaves an empty side: rejected below
    elif isinstance(value, (int, np.integer)):
        vals = [value]
    elif isinstance(value, (list, tuple)):
        vals = list(value)
    else:
        raise ConfigError(f"{what} must be an int, 'HxW' or (height, width), got {type(value).__name__}")
    try:
        ints = [int(v) for v in vals]
        if any(isinstance(v, bool) or (isinstance(v, float) and not float(v).is_integer()) for v in vals):
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be N, 'HxW', 'H,W' or 'H W' with integers, got {value!r}") from None
    if len(ints) == 1:
        ints = ints * 2
    if len(ints) != 2 or min(ints) <= 0:
        raise ConfigError(f"{what} must be one or two positive integers (height, width), got {value!r}")
    h, w = ints
    if stride and (h % stride or w % stride):
        up = (-(-h // stride) * stride, -(-w // stride) * stride)
        raise ConfigError(
            f"{what} {h}x{w} (height x width) is not valid: each side must be a multiple of the model's max stride "
            f"{stride} (e.g. {up[0]}x{up[1]})"
        )
    return h, w

