"""Images in, detections out, for YOLO detectors (numpy + OpenCV, torch-free).

Three modules: :mod:`~edge_mlla.ops.images` (files, reading, arrays, sizes), :mod:`~edge_mlla.ops.letterbox`
(model input and back) and :mod:`~edge_mlla.ops.boxes` (IoU, NMS, decoding); everything is importable from here.

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

from edge_mlla.ops.boxes import (
    MAX_NMS,
    box_iou,
    check_thresholds,
    nms,
    postprocess,
    xywh2xyxy,
)
from edge_mlla.ops.images import (
    IMAGE_SUFFIXES,
    ImageReadWarning,
    as_bgr,
    is_image_file,
    list_images,
    parse_imgsz,
    read_image,
)
from edge_mlla.ops.letterbox import (
    PAD_VALUE,
    LetterboxMeta,
    letterbox,
    preprocess,
    scale_boxes,
    val_label_gain,
    val_letterbox,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageReadWarning",
    "LetterboxMeta",
    "MAX_NMS",
    "PAD_VALUE",
    "as_bgr",
    "box_iou",
    "check_thresholds",
    "is_image_file",
    "letterbox",
    "list_images",
    "nms",
    "parse_imgsz",
    "postprocess",
    "preprocess",
    "read_image",
    "scale_boxes",
    "val_label_gain",
    "val_letterbox",
    "xywh2xyxy",
]
