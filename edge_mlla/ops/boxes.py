"""Boxes: IoU, class-aware NMS, and decoding a YOLO output (with or without NMS heads) into Detections."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from edge_mlla.errors import ConfigError, ModelFileError
from edge_mlla.ops.letterbox import LetterboxMeta, scale_boxes
from edge_mlla.results import Detections

LOGGER = logging.getLogger("edge_mlla")
MAX_NMS = 30000  # candidates kept for NMS per image, as Ultralytics
MATRIX_NMS = 512  # up to this many candidates, NMS works on the whole n x n suppression matrix (1 MiB of float32)
# the strictly upper triangle, made once: np.triu per call cost ~40 us after an inference (2-core AMD EPYC)
_UPPER = np.triu(np.ones((MATRIX_NMS, MATRIX_NMS), bool), 1)


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
    a kept, higher-scoring box is ``> iou``. Up to ``MATRIX_NMS`` candidates (a frame's usual ~100) it
    settles the whole suppression matrix in a few vectorized steps; above, one vectorized step per *kept*
    box suppresses everything it overlaps among the lower-scoring candidates (work kept x candidates, no
    n x n matrix) and stops at ``max_det`` kept boxes. Both paths compute IoU with one float32 formula.

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
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    keep = _greedy_matrix(b, area, c, iou) if n <= MATRIX_NMS else _greedy_rows(b, area, c, iou, limit)
    return order[keep[:limit]]


def _overlaps(b: np.ndarray, area: np.ndarray, rows: slice | int, cols: slice, iou: float) -> np.ndarray:
    """``IoU(b[rows], b[cols]) > iou`` in float32, the formula both NMS paths share (so they agree bit for bit)."""
    x1, y1, x2, y2 = (b[:, k] for k in range(4))
    r = (lambda v: v[rows, None]) if isinstance(rows, slice) else (lambda v: v[rows])
    iw = np.minimum(r(x2), x2[cols]) - np.maximum(r(x1), x1[cols])
    ih = np.minimum(r(y2), y2[cols]) - np.maximum(r(y1), y1[cols])
    np.maximum(iw, 0, out=iw)
    np.maximum(ih, 0, out=ih)
    inter = iw * ih
    union = r(area) + area[cols] - inter
    return inter / np.maximum(union, np.finfo(np.float32).tiny) > iou


def _greedy_matrix(b: np.ndarray, area: np.ndarray, c: np.ndarray | None, iou: float) -> np.ndarray:
    """Greedy NMS on score-sorted boxes from the whole suppression matrix (few candidates: a frame's ~100).

    ``s[i, j]``: box ``i`` would suppress the lower-scoring box ``j``. Greedy keeps ``j`` exactly when no *kept*
    ``i < j`` suppresses it; iterating ``keep = not any(keep[i] and s[i, j])`` from all-kept settles on that unique
    answer (Cluster-NMS, Zheng et al. 2020), in as many steps as the longest chain of suppressions (2-4 on real
    frames) instead of one Python step per kept box."""
    n = len(b)
    s = _overlaps(b, area, slice(None), slice(None), iou)
    s &= _UPPER[:n, :n]  # i < j only
    if c is not None:  # class-aware: other classes never suppress (exact, no coordinate offsets)
        s &= c[:, None] == c
    keep = np.ones(n, bool)
    for _ in range(n):
        new = ~(keep @ s)  # boolean matmul: j has a kept suppressor
        if (new == keep).all():
            break
        keep = new
    return np.flatnonzero(keep)


def _greedy_rows(b: np.ndarray, area: np.ndarray, c: np.ndarray | None, iou: float, limit: int) -> np.ndarray:
    """Greedy NMS one kept box at a time (many candidates: no n x n matrix); stops at ``limit`` kept boxes."""
    n = len(b)
    alive = np.ones(n, bool)
    keep = [0]
    i = 0
    while len(keep) < limit and i + 1 < n:
        j = i + 1  # only lower-scoring boxes can be suppressed by box i
        ok = ~_overlaps(b, area, i, slice(j, None), iou)
        if c is not None:
            ok |= c[j:] != c[i]
        alive[j:] &= ok
        nxt = j + int(alive[j:].argmax())
        if not alive[nxt]:
            break
        keep.append(nxt)
        i = nxt
    return np.asarray(keep, np.int64)


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
        >>> from edge_mlla.ops import preprocess
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
            else:  # over (nc, anchors) rows: contiguous in YOLO's channels-first output, cache-friendly
                by_class = pred[:, 4:].T
                best = by_class.max(0)
                cand = np.flatnonzero(best > conf)
                cls = by_class[:, cand].argmax(0)
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
