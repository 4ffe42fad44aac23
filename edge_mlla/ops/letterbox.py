"""Letterbox (prediction) and the validator's resize (evaluation), batching them into model input, and mapping
boxes back: Ultralytics' ``LetterBox`` and ``scale_boxes`` exactly (same rounding)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from edge_mlla.errors import ConfigError, ShapeError
from edge_mlla.ops.images import parse_imgsz

LOGGER = logging.getLogger("edge_mlla")
PAD_VALUE = 114  # Ultralytics' letterbox grey


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

    @property
    def resized_shape(self) -> tuple[int, int]:
        """(height, width) of the image inside the padding (exact: the gain is resized / original pixels)."""
        return round(self.gain[0] * self.orig_shape[0]), round(self.gain[1] * self.orig_shape[1])


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
    meta = letterbox_meta(image.shape[:2], new_shape, stride, auto, scaleup)
    if meta.input_shape == meta.orig_shape:
        return image, meta  # nothing to resize or pad
    out = np.empty(meta.input_shape + image.shape[2:], image.dtype)
    letterbox_into(out, image, meta, pad_value)
    return out, meta


def letterbox_meta(
    shape: tuple[int, int], new_shape: int | Sequence[int] = 640, stride: int = 32, auto: bool = False, scaleup: bool = True
) -> LetterboxMeta:
    """Where :func:`letterbox` puts an image of ``shape`` (height, width): its meta, computed without any pixels.

    Example:
        >>> letterbox_meta((480, 640), 320)
        LetterboxMeta(orig_shape=(480, 640), input_shape=(320, 320), gain=(0.5, 0.5), pad=(0, 40))
    """
    oh, ow = shape
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
    return LetterboxMeta(orig_shape=(oh, ow), input_shape=(uh + top + bottom, uw + left + right),
                         gain=(uh / oh, uw / ow), pad=(left, top))  # fmt: skip


def letterbox_into(out: np.ndarray, image: np.ndarray, meta: LetterboxMeta, pad_value: int = PAD_VALUE) -> None:
    """:func:`letterbox` written straight into ``out`` (``meta.input_shape`` x 3 uint8, e.g. one slot of a batch):
    the resize lands in the unpadded window and only the borders are filled, so the frame is written once instead of
    resized, padded into a new image, then copied into the batch. Same pixels as :func:`letterbox`.

    Example:
        >>> import numpy as np
        >>> im = np.full((480, 640, 3), 7, np.uint8)
        >>> out = np.empty((320, 320, 3), np.uint8)
        >>> letterbox_into(out, im, letterbox_meta(im.shape[:2], 320))
        >>> bool((out == letterbox(im, 320)[0]).all())
        True
    """
    (left, top), (uh, uw) = meta.pad, meta.resized_shape
    window = out[top : top + uh, left : left + uw]
    if (uh, uw) == meta.orig_shape:
        window[...] = image
    elif cv2.resize(image, (uw, uh), dst=window, interpolation=cv2.INTER_LINEAR) is not window:  # pragma: no cover
        window[...] = cv2.resize(image, (uw, uh), interpolation=cv2.INTER_LINEAR)  # a cv2 that would not write in place
    out[:top] = pad_value
    out[top + uh :] = pad_value
    out[top : top + uh, :left] = pad_value
    out[top : top + uh, left + uw :] = pad_value


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
    if layout == "nhwc_u8" and not validator:
        return _letterbox_batch(images, imgsz, stride, auto, rgb, batch_size)
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


def _letterbox_batch(images: Sequence[np.ndarray], imgsz: int | Sequence[int], stride: int, auto: bool, rgb: bool,
                     batch_size: int | None) -> tuple[np.ndarray, list[LetterboxMeta]]:
    """``preprocess(..., layout="nhwc_u8")``: each image letterboxed straight into its batch slot (BGR uint8)."""
    metas = [letterbox_meta(im.shape[:2], imgsz, stride, auto) for im in images]
    if len({m.input_shape for m in metas}) != 1:  # only with auto=True on images of different aspect ratios
        hw = tuple(max(m.input_shape[k] for m in metas) for k in (0, 1))
        metas = [letterbox_meta(im.shape[:2], hw, stride, False) for im in images]
    h, w = metas[0].input_shape
    out = np.empty((max(len(images), batch_size or 0), h, w, 3), np.uint8)
    for i, (im, meta) in enumerate(zip(images, metas)):
        letterbox_into(out[i], cv2.cvtColor(im, cv2.COLOR_RGB2BGR) if rgb else im, meta)  # the graph takes BGR
    out[len(images) :] = PAD_VALUE
    return out, metas


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
    dt = boxes.dtype  # per-column constants in the boxes' own dtype: the same arithmetic as column by column
    boxes -= np.array((px, py, px, py), dt)
    boxes /= np.array((gx, gy, gx, gy), dt)
    if clip:
        h, w = meta.orig_shape
        np.clip(boxes, 0, np.array((w, h, w, h), dt), out=boxes)
    return boxes


