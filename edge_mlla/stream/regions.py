"""Detection on motion regions: where motion covers a small part of a large frame, the detector looks at crops around
it (padded, merged, grown to the model's aspect, each letterboxed to the model size by the detector) instead of the
whole frame, so small objects are seen at a higher resolution; boxes are mapped back to the frame, boxes cut by a crop's
inner edge are dropped and duplicates across crops suppressed. Many or large regions: the whole frame.

Example:
    >>> import numpy as np
    >>> from edge_mlla.stream.motion import Motion
    >>> plan_regions(np.array([[900, 500, 940, 540]], np.float32), (1920, 1080), (416, 416), Motion(regions=True))
    array([[ 600,  200, 1240,  840]])
    >>> plan_regions(np.array([[10, 10, 1900, 1000]], np.float32), (1920, 1080), (416, 416), Motion(regions=True)) is None
    True
"""

from __future__ import annotations

import numpy as np

from edge_mlla.ops import nms
from edge_mlla.results import Detections
from edge_mlla.stream.carry import _concat
from edge_mlla.stream.motion import Motion


def plan_regions(boxes: np.ndarray, frame_wh: tuple[int, int], model_hw: tuple[int, int], options: Motion) -> np.ndarray | None:
    """Crops (m, 4) integer xyxy to detect on instead of the whole frame, or None when the whole frame is the better
    call: no motion boxes, a frame that already fits the model without shrinking, too many crops or too large."""
    w, h = (int(v) for v in frame_wh)
    mh, mw = (int(v) for v in model_hw)
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    full = min(mw / w, mh / h)  # the whole frame's scale into the model
    if not len(boxes) or full >= 1.0:
        return None
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    pad = np.maximum(options.pad * side, 16.0)[:, None]
    crops = [_grow(b, w, h, mw / (full * options.max_zoom), mh / (full * options.max_zoom)) for b in
             np.concatenate([boxes[:, :2] - pad, boxes[:, 2:] + pad], 1)]  # fmt: skip
    merged = True
    while merged and len(crops) > 1:
        merged = False
        for i in range(len(crops)):
            for j in range(i + 1, len(crops)):
                a, b = crops[i], crops[j]
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    union = np.array([min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])], np.float32)
                    crops[i] = _grow(union, w, h, 0, 0, (mw, mh))
                    del crops[j]
                    merged = True
                    break
            if merged:
                break
    area = sum((c[2] - c[0]) * (c[3] - c[1]) for c in crops)
    if len(crops) > options.max_regions or area > options.max_region_area * w * h:
        return None
    return np.array(crops, np.int64).reshape(-1, 4)


def _grow(box: np.ndarray, w: int, h: int, min_w: float, min_h: float, aspect: tuple[int, int] | None = None) -> np.ndarray:
    """``box`` grown about its centre to at least ``min_w`` x ``min_h`` and to the model's aspect (``aspect`` or the
    minimum's), then slid (not cut) into the frame, cut only where it is larger than the frame."""
    x1, y1, x2, y2 = (float(v) for v in box)
    bw, bh = max(x2 - x1, min_w), max(y2 - y1, min_h)
    ar = (aspect[0] / aspect[1]) if aspect else (min_w / min_h if min_h else 1.0)
    bw, bh = max(bw, bh * ar), max(bh, bw / ar)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    bw, bh = min(bw, w), min(bh, h)
    nx1 = min(max(0.0, cx - bw / 2), w - bw)
    ny1 = min(max(0.0, cy - bh / 2), h - bh)
    return np.array([round(nx1), round(ny1), round(nx1 + bw), round(ny1 + bh)], np.float32)


def crops_of(frame: np.ndarray, regions: np.ndarray) -> list[np.ndarray]:
    """The frame's pixels under each region (views, no copies)."""
    return [frame[y1:y2, x1:x2] for x1, y1, x2, y2 in np.asarray(regions, np.int64)]


def merge_regions(results: list[Detections], regions: np.ndarray, frame_wh: tuple[int, int], iou: float = 0.5) -> Detections:
    """Boxes found in each crop, in frame pixels: shifted by the crop's corner; a box touching a crop edge that is not a
    frame edge is dropped (the object goes on outside the crop, its box is cut); duplicates where crops overlap are
    suppressed (class-aware NMS at ``iou``)."""
    w, h = frame_wh
    parts = []
    for d, (x1, y1, x2, y2) in zip(results, np.asarray(regions, np.float32)):
        xyxy = d.xyxy + np.array([x1, y1, x1, y1], np.float32)
        cut = np.zeros(len(d), bool)
        margin = 1.0
        if x1 > 0:
            cut |= xyxy[:, 0] <= x1 + margin
        if y1 > 0:
            cut |= xyxy[:, 1] <= y1 + margin
        if x2 < w:
            cut |= xyxy[:, 2] >= x2 - margin
        if y2 < h:
            cut |= xyxy[:, 3] >= y2 - margin
        moved = Detections(xyxy, d.confidence, d.class_id, names=d.names, data=dict(d.data), tracker_id=d.tracker_id,
                           timing=d.timing)  # fmt: skip
        parts.append(moved[~cut])
    if not parts:
        return Detections.empty()
    out = parts[0]
    for p in parts[1:]:
        out = _concat(out, p)
    keep = nms(out.xyxy, out.confidence, iou, class_id=out.class_id)
    return out[np.sort(keep)]
