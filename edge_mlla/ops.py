"""Images in, detections out, for YOLO detectors (numpy + OpenCV, torch-free).

The one owner of image knowledge: which files are images (:data:`IMAGE_SUFFIXES`, :func:`list_images`),
reading them (:func:`read_image`: truncated/corrupt files are caught), turning user arrays into BGR uint8
(:func:`as_bgr`: gray, alpha, 16-bit), the input-size parser every command uses (:func:`parse_imgsz`),
letterbox (prediction) and the validator's resize (evaluation), box decode and class-aware NMS. Shared by
:class:`edge_mlla.Detector`, INT8 calibration and evaluation, so every path feeds the model the same pixels and
reads its output the same way. The letterbox and box
rescaling follow Ultralytics' ``LetterBox`` and ``scale_boxes`` exactly (same rounding), so boxes match
``ultralytics.YOLO(...).predict`` to well under a pixel.

Example:
    >>> import numpy as np
    >>> from edge_mlla.ops import preprocess, postprocess
    >>> batch, metas = preprocess([np.zeros((480, 640, 3), np.uint8)], (320, 320))
    >>> batch.shape, batch.dtype
    ((1, 3, 320, 320), dtype('float32'))
    >>> raw = np.zeros((1, 4 + 3, 2100), np.float32)       # (batch, 4 + classes, anchors), as YOLO11 exports
    >>> raw[0, :4, 0] = [160, 160, 64, 32]; raw[0, 4, 0] = 0.9  # one box of class 0 at the centre
    >>> dets = postprocess(raw, metas)[0]
    >>> dets.xyxy.round(1).tolist(), dets.class_id.tolist()
    ([[256.0, 208.0, 384.0, 272.0]], [0])
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_mlla.errors import ConfigError, ImageReadError, InputTypeError, MissingFileError, ModelFileError, ShapeError
from edge_mlla.results import Detections

LOGGER = logging.getLogger("edge_mlla")
PAD_VALUE = 114  # Ultralytics' letterbox grey
MAX_NMS = 30000  # candidates kept for NMS per image, as Ultralytics
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


@dataclass(frozen=True)
class LetterboxMeta:
    """How one image was letterboxed: enough to map model-input boxes back to original pixels.

    ``orig_shape`` and ``input_shape`` are (height, width); ``gain`` is (y, x) scale from original to resized;
    ``pad`` is (left, top) in input pixels.
    """

    orig_shape: tuple[int, int]
    input_shape: tuple[int, int]
    gain: tuple[float, float]
    pad: tuple[int, int]


def letterbox(
    image: np.ndarray,
    new_shape: int | Sequence[int] = 640,
    stride: int = 32,
    auto: bool = False,
    pad_value: int = PAD_VALUE,
    scaleup: bool = True,
) -> tuple[np.ndarray, LetterboxMeta]:
    """Resize ``image`` (HxWxC uint8) keeping its aspect ratio and pad it to ``new_shape`` (height, width).

    With ``auto=True`` the padding is reduced to the smallest multiple of ``stride`` (for models with
    dynamic input size); ``scaleup=False`` never enlarges (the validator's setting). Rounding is Ultralytics':
    each resized side is at least 1 pixel.

    Example:
        >>> import numpy as np
        >>> img, meta = letterbox(np.zeros((480, 640, 3), np.uint8), 320)
        >>> img.shape, meta.gain, meta.pad
        ((320, 320, 3), (0.5, 0.5), (0, 40))
    """
    oh, ow = image.shape[:2]
    nh, nw = parse_imgsz(new_shape, what="new_shape")
    r = min(nh / oh, nw / ow)
    if not scaleup:
        r = min(r, 1.0)
    uw, uh = max(round(ow * r), 1), max(round(oh * r), 1)
    dw, dh = nw - uw, nh - uh
    if auto:
        dw, dh = dw % stride, dh % stride
    dw, dh = dw / 2, dh / 2
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    if (uw, uh) != (ow, oh):
        image = cv2.resize(image, (uw, uh), interpolation=cv2.INTER_LINEAR)
    if top or bottom or left or right:
        image = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(pad_value,) * 3)
    meta = LetterboxMeta(
        orig_shape=(oh, ow),
        input_shape=(image.shape[0], image.shape[1]),
        gain=(uh / oh, uw / ow),
        pad=(left, top),
    )
    return image, meta


def _val_resized_hw(h0: int, w0: int, nh: int, nw: int) -> tuple[int, int]:
    """``BaseDataset.load_image``'s first resize: long side to ``max(nh, nw)``, each side rounded up."""
    m = max(nh, nw)
    r = m / max(h0, w0)
    return (h0, w0) if r == 1 else (min(math.ceil(h0 * r), m), min(math.ceil(w0 * r), m))


def val_letterbox(image: np.ndarray, new_shape: int | Sequence[int] = 640) -> tuple[np.ndarray, LetterboxMeta]:
    """Ultralytics' *validator* preprocessing (``BaseDataset.load_image`` + ``LetterBox(scaleup=False)``): resize the
    long side to ``max(new_shape)`` with each side rounded **up** (``ceil``), then letterbox into ``new_shape``
    without enlarging. Prediction's :func:`letterbox` rounds to nearest in one step, so a 1242x375 image becomes
    640x193 there and 640x194 here; mAP must be scored on this one to equal ``YOLO(f).val``.

    Example:
        >>> import numpy as np
        >>> img, meta = val_letterbox(np.zeros((375, 1242, 3), np.uint8), 640)
        >>> img.shape, round(meta.gain[0] * 375, 6)
        ((640, 640, 3), 194.0)
    """
    h0, w0 = image.shape[:2]
    nh, nw = parse_imgsz(new_shape, what="new_shape")
    h1, w1 = _val_resized_hw(h0, w0, nh, nw)
    im = image if (h1, w1) == (h0, w0) else cv2.resize(image, (w1, h1), interpolation=cv2.INTER_LINEAR)
    out, meta = letterbox(im, (nh, nw), scaleup=False)
    uh, uw = meta.gain[0] * h1, meta.gain[1] * w1  # unpadded size after both resizes
    return out, LetterboxMeta((h0, w0), meta.input_shape, (round(uh) / h0, round(uw) / w0), meta.pad)


def val_label_gain(orig_shape: tuple[int, int], new_shape: int | Sequence[int]) -> tuple[float, float]:
    """(y, x) scale the validator applies to an image's *labels* (original pixels -> model input, before the pad):
    ``LetterBox`` scales them by its unrounded ratio, ``h1 * r / h0``, while the pixels were resized to
    ``round(h1 * r)``. The two differ by under a pixel, and on non-4:3 images they differ between x and y, which
    moves IoUs: the validator matches in model-input pixels, with these label boxes.

    Example:
        >>> [round(g, 5) for g in val_label_gain((375, 1242), (192, 640))]  # the pixels: 0.512, 0.50966
        [0.512, 0.50999]
    """
    h0, w0 = orig_shape
    nh, nw = parse_imgsz(new_shape, what="new_shape")
    h1, w1 = _val_resized_hw(h0, w0, nh, nw)
    r = min(nh / h1, nw / w1, 1.0)
    return h1 * r / h0, w1 * r / w0


def preprocess(
    images: Sequence[np.ndarray],
    imgsz: int | Sequence[int],
    stride: int = 32,
    auto: bool = False,
    rgb: bool = False,
    batch_size: int | None = None,
    validator: bool = False,
    layout: str = "nchw",
) -> tuple[np.ndarray, list[LetterboxMeta]]:
    """Letterbox BGR uint8 HxWx3 images into one float32 NCHW RGB batch in [0, 1].

    ``rgb=True`` says the images are already RGB. ``batch_size`` pads the batch with grey frames up to
    a fixed model batch (the metas list only covers the real images). ``validator=True`` resizes as Ultralytics'
    validator does (:func:`val_letterbox`) instead of prediction's letterbox. ``layout="nhwc_u8"`` stops after the
    letterbox: a BGR uint8 (N, H, W, 3) batch for backends that convert in their graph (OpenVINO's fused
    preprocessing). Images must already be 3-channel uint8 (:func:`as_bgr` converts and validates user input).

    Example:
        >>> import numpy as np
        >>> x, metas = preprocess([np.full((10, 20, 3), 255, np.uint8)], 64, batch_size=2)
        >>> x.shape, float(x[0, 0, 32, 32]), len(metas)
        ((2, 3, 64, 64), 1.0, 1)
    """
    if len(images) == 0:
        raise ShapeError("preprocess got no images; expected at least one HxWx3 uint8 image")
    if validator:
        boxed = [val_letterbox(im, imgsz) for im in images]
    else:
        boxed = [letterbox(im, imgsz, stride, auto) for im in images]
    shapes = {b[0].shape for b in boxed}
    if len(shapes) != 1:  # only possible with auto=True on images of different aspect ratios
        h = max(s[0] for s in shapes)
        w = max(s[1] for s in shapes)
        boxed = [letterbox(im, (h, w), stride, False) for im in images]
    n = max(len(boxed), batch_size or 0)
    h, w = boxed[0][0].shape[:2]
    if layout == "nhwc_u8":
        out = np.empty((n, h, w, 3), np.uint8)
        for i, (img, _) in enumerate(boxed):
            out[i] = img[..., ::-1] if rgb else img  # the graph takes BGR
        out[len(boxed) :] = PAD_VALUE
        return out, [b[1] for b in boxed]
    if layout != "nchw":
        raise ConfigError(f"layout must be 'nchw' or 'nhwc_u8', got {layout!r}")
    batch = np.empty((n, 3, h, w), np.float32)
    for i, (img, _) in enumerate(boxed):
        chw = img.transpose(2, 0, 1)
        batch[i] = chw if rgb else chw[::-1]  # HWC -> CHW, BGR -> RGB, uint8 -> float32 in one copy
    if n > len(boxed):
        batch[len(boxed) :] = PAD_VALUE
    batch *= np.float32(1 / 255.0)
    return batch, [b[1] for b in boxed]


def scale_boxes(boxes: np.ndarray, meta: LetterboxMeta, clip: bool = True) -> np.ndarray:
    """Map xyxy boxes from model-input pixels back to the original image (in place; returns ``boxes``).

    Example:
        >>> import numpy as np
        >>> _, meta = letterbox(np.zeros((480, 640, 3), np.uint8), 320)
        >>> scale_boxes(np.array([[0, 40, 320, 280]], np.float32), meta).tolist()
        [[0.0, 0.0, 640.0, 480.0]]
    """
    gy, gx = meta.gain
    px, py = meta.pad
    boxes[:, [0, 2]] -= px
    boxes[:, [1, 3]] -= py
    boxes[:, [0, 2]] /= gx
    boxes[:, [1, 3]] /= gy
    if clip:
        h, w = meta.orig_shape
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
    return boxes


def box_iou(a: np.ndarray, b: np.ndarray, eps: float | None = None) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of xyxy boxes, in float32 (float64 when an input is float64).

    ``eps`` adds Ultralytics' epsilon to the union (its metrics use 1e-7); None only guards against 0.

    Example:
        >>> import numpy as np
        >>> box_iou(np.array([[0, 0, 2, 2]]), np.array([[1, 0, 3, 2], [5, 5, 6, 6]])).astype(float).round(3).tolist()
        [[0.333, 0.0]]
    """
    dtype = np.result_type(np.asarray(a).dtype, np.asarray(b).dtype, np.float32)
    a = np.asarray(a, dtype)
    b = np.asarray(b, dtype)
    ax1, ay1, ax2, ay2 = (a[:, k, None] for k in range(4))  # (n, 1) columns: 2-D broadcasting, no (n, m, 2) temporaries
    bx1, by1, bx2, by2 = (b[None, :, k] for k in range(4))
    iw = np.minimum(ax2, bx2) - np.maximum(ax1, bx1)
    np.maximum(iw, 0, out=iw)
    ih = np.minimum(ay2, by2) - np.maximum(ay1, by1)
    np.maximum(ih, 0, out=ih)
    inter = iw * ih
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return inter / (union + eps if eps is not None else np.maximum(union, np.finfo(dtype).tiny))


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    iou: float = 0.45,
    class_id: np.ndarray | None = None,
    max_det: int | None = None,
) -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices, highest score first.

    Class-aware when ``class_id`` is given (boxes of different classes never suppress each other).
    Exactly the result of ``torchvision.ops.nms`` / ``batched_nms``: a box is dropped when its IoU with
    a kept, higher-scoring box is ``> iou``. One vectorized step per *kept* box suppresses everything
    it overlaps among the lower-scoring candidates at once (no step per candidate), so the work is
    kept x candidates, never the full candidate x candidate matrix; it stops at ``max_det`` kept boxes.

    Example:
        >>> import numpy as np
        >>> b = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10]], np.float32)
        >>> nms(b, np.array([0.9, 0.8, 0.7]), 0.5).tolist()
        [0]
        >>> nms(b, np.array([0.9, 0.8, 0.7]), 0.5, class_id=np.array([0, 0, 1])).tolist()
        [0, 2]
    """
    n = len(boxes)
    if n == 0:
        return np.zeros(0, np.int64)
    limit = n if max_det is None else int(max_det)
    order = np.argsort(-np.asarray(scores), kind="stable")
    b = np.asarray(boxes, np.float32)[order]
    c = None if class_id is None else np.asarray(class_id)[order]
    x1, y1, x2, y2 = (np.ascontiguousarray(b[:, k]) for k in range(4))
    area = (x2 - x1) * (y2 - y1)
    alive = np.ones(n, bool)
    tiny = np.finfo(np.float32).tiny
    keep = [0]
    i = 0
    while len(keep) < limit and i + 1 < n:
        j = i + 1  # only lower-scoring boxes (views, no gathers) can be suppressed by box i
        iw = np.minimum(x2[i], x2[j:]) - np.maximum(x1[i], x1[j:])
        ih = np.minimum(y2[i], y2[j:]) - np.maximum(y1[i], y1[j:])
        np.maximum(iw, 0, out=iw)
        np.maximum(ih, 0, out=ih)
        inter = iw * ih
        ok = inter / np.maximum(area[i] + area[j:] - inter, tiny) <= iou
        if c is not None:  # class-aware: other classes are never suppressed (exact, no coordinate offsets)
            ok |= c[j:] != c[i]
        alive[j:] &= ok
        nxt = j + int(alive[j:].argmax())
        if not alive[nxt]:
            break
        keep.append(nxt)
        i = nxt
    return order[np.asarray(keep, np.int64)]


def _split_output(output: np.ndarray, nc: int | None) -> tuple[np.ndarray, bool]:
    """(batch, anchors, 4 + nc) view of a YOLO detect output, and whether it is end-to-end (already NMS'd)."""
    out = np.asarray(output)
    if out.ndim == 2:
        out = out[None]
    if out.ndim != 3:
        raise ModelFileError(
            f"model output has shape {tuple(np.shape(output))}; expected a YOLO detect head output "
            "(batch, 4 + classes, anchors) or an end-to-end output (batch, detections, 6)"
        )
    b, d1, d2 = out.shape
    if nc is not None:
        if d1 == 4 + nc and d2 != 4 + nc:
            return out.transpose(0, 2, 1), False
        if d2 == 4 + nc and d1 != 4 + nc:
            return out, False
        if d1 == 4 + nc:  # square ambiguity: Ultralytics' layout is channels first
            return out.transpose(0, 2, 1), False
        if d2 == 6:
            return out, True
        raise ModelFileError(
            f"model output has shape {out.shape} but the model has {nc} classes; expected "
            f"(batch, {4 + nc}, anchors) or (batch, detections, 6)"
        )
    if d2 == 6 and d1 > 6:
        return out, True
    if d1 > 4 and d2 > d1:
        return out.transpose(0, 2, 1), False
    raise ModelFileError(
        f"model output has shape {out.shape}; expected (batch, 4 + classes, anchors) with more anchors than "
        "channels, or (batch, detections, 6) — pass names= to Detector if the model has no class metadata"
    )


def xywh2xyxy(xywh: np.ndarray) -> np.ndarray:
    """Centre-size boxes to corner boxes (new float32 array).

    Example:
        >>> import numpy as np
        >>> xywh2xyxy(np.array([[10, 10, 4, 2]], np.float32)).tolist()
        [[8.0, 9.0, 12.0, 11.0]]
    """
    xy, half = xywh[:, :2], xywh[:, 2:4] / 2
    return np.concatenate([xy - half, xy + half], axis=1).astype(np.float32, copy=False)


def check_thresholds(conf: float, iou: float, max_det: int) -> None:
    """Raise ``ConfigError`` unless 0 <= conf <= 1, 0 <= iou <= 1 and max_det >= 1.

    Example:
        >>> check_thresholds(0.25, 0.45, 300)
    """
    for name, v in (("conf", conf), ("iou", iou)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) or not 0.0 <= float(v) <= 1.0:
            raise ConfigError(f"{name} must be a number in [0, 1], got {v!r}")
    if isinstance(max_det, bool) or not isinstance(max_det, (int, np.integer)) or max_det < 1:
        raise ConfigError(f"max_det must be an int >= 1, got {max_det!r}")


def postprocess(
    output: np.ndarray,
    metas: Sequence[LetterboxMeta],
    conf: float = 0.25,
    iou: float = 0.45,
    max_det: int = 300,
    classes: Sequence[int] | None = None,
    names: dict[int, str] | None = None,
    agnostic: bool = False,
    nc: int | None = None,
    multi_label: bool = False,
    clip: bool = True,
) -> list[Detections]:
    """Decode a YOLO detect output into one :class:`Detections` per meta, in original-image pixels.

    ``output`` is (batch, 4 + nc, anchors) with xywh in input pixels and per-class scores (YOLO11's
    export), or (batch, n, 6) ``x1, y1, x2, y2, score, class`` from an end-to-end model. Rows past
    ``len(metas)`` (batch padding) are ignored. Matches Ultralytics' ``non_max_suppression``: best class
    per box, ``score > conf``, class-aware NMS with ``IoU > iou`` suppressed, at most ``max_det`` boxes.
    ``multi_label=True, clip=False`` is Ultralytics' *validation* decode instead: every (box, class) pair
    above ``conf`` is a candidate and boxes are not clipped to the image (what mAP must be scored on to
    agree with ``YOLO(...).val``).

    Example:
        >>> import numpy as np
        >>> _, metas = preprocess([np.zeros((320, 320, 3), np.uint8)], 320)
        >>> postprocess(np.zeros((1, 5, 2100), np.float32), metas)[0].xyxy.shape
        (0, 4)
    """
    check_thresholds(conf, iou, max_det)
    if nc is None and names:
        nc = len(names)
    preds, end2end = _split_output(output, nc)
    if preds.shape[0] < len(metas):
        raise ModelFileError(f"model returned {preds.shape[0]} results for a batch of {len(metas)} images")
    want = None if classes is None else np.asarray(list(classes), np.int64)
    results = []
    for pred, meta in zip(preds, metas):
        if end2end:
            score, cls = pred[:, 4], pred[:, 5].astype(np.int64)
            m = score > conf
            if want is not None:
                m &= np.isin(cls, want)
            idx = np.flatnonzero(m)[:max_det]
            xyxy = pred[idx, :4].astype(np.float32)
            score, cls = score[idx], cls[idx]
        else:
            cls_scores = pred[:, 4:]
            if multi_label:
                cand, cls = np.nonzero(cls_scores > conf)
                score = cls_scores[cand, cls]
            else:
                best = cls_scores.max(1)
                cand = np.flatnonzero(best > conf)
                cls = cls_scores[cand].argmax(1)
                score = best[cand]
            if want is not None:
                m = np.isin(cls, want)
                cand, cls, score = cand[m], cls[m], score[m]
            if len(cand) > MAX_NMS:
                top = np.argsort(-score, kind="stable")[:MAX_NMS]
                cand, cls, score = cand[top], cls[top], score[top]
            xyxy = xywh2xyxy(pred[cand, :4])
            keep = nms(xyxy, score, iou, None if agnostic else cls, max_det)
            xyxy, score, cls = xyxy[keep], score[keep], cls[keep]
        xyxy = scale_boxes(xyxy, meta, clip=clip)
        results.append(
            Detections(
                xyxy=np.ascontiguousarray(xyxy, np.float32),
                confidence=score.astype(np.float32),
                class_id=cls.astype(np.int64),
                names=names,
            )
        )
    return results
