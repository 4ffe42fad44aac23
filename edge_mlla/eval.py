"""COCO-style detection accuracy (mAP50-95, mAP50) of any model file, run through :class:`edge_mlla.Detector`.

The metric is Ultralytics' (``DetectionValidator`` + ``ap_per_class``, v8.4): predictions at ``conf=0.001``,
NMS ``iou=0.7``, up to 300 per image; each prediction matched greedily, in descending confidence, to the
best still-unmatched ground-truth box of its class at each IoU threshold 0.50:0.05:0.95; per-class AP from
the monotone precision envelope with 101-point interpolation; mAP is the mean over classes that have labels.
So ``evaluate(onnx)`` agrees with ``YOLO(onnx).val(data=..., batch=1, rect=False)`` (tested within 0.005).

Ground truth is the YOLO layout: ``images/<split>/x.jpg`` with ``labels/<split>/x.txt`` (``cls cx cy w h``
normalised); an image without a label file has no objects.

Example:
    >>> from edge_mlla.eval import evaluate
    >>> r = evaluate("yolo11n-mlla-bccd.onnx", data="bccd", split="val")  # doctest: +SKIP
    >>> round(r["mAP50-95"], 3), round(r["mAP50"], 3)  # doctest: +SKIP
    (0.61, 0.91)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_mlla.errors import ConfigError, DatasetError
from edge_mlla.ops import box_iou

LOGGER = logging.getLogger("edge_mlla")

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
_AP_X = np.linspace(0, 1, 101)
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


# ----------------------------------------------------------------------------------------------- ground truth
@dataclass(frozen=True)
class Sample:
    """One labelled image: path, ground-truth xyxy boxes in pixels (n, 4) and class ids (n,)."""

    image: Path
    boxes: np.ndarray
    classes: np.ndarray


def label_path(image: Path) -> Path:
    """``.../images/<split>/x.jpg`` -> ``.../labels/<split>/x.txt`` (the last ``images`` folder, as Ultralytics)."""
    s = str(image)
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return Path(sb.join(s.rsplit(sa, 1))).with_suffix(".txt") if sa in s else image.with_suffix(".txt")


def _read_labels(txt: Path, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    if not txt.is_file():
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    rows = [ln.split() for ln in txt.read_text().splitlines() if ln.strip()]
    try:
        arr = np.array([[float(v) for v in r[:5]] for r in rows], np.float64).reshape(-1, 5)
    except ValueError as e:
        raise DatasetError(f"label file {txt} is not YOLO format (cls cx cy w h per line): {e}") from e
    if arr.size and any(len(r) < 5 for r in rows):
        raise DatasetError(f"label file {txt} has a line with fewer than 5 values (cls cx cy w h)")
    h, w = hw
    cx, cy, bw, bh = arr[:, 1] * w, arr[:, 2] * h, arr[:, 3] * w, arr[:, 4] * h
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1).astype(np.float32)
    return boxes, arr[:, 0].astype(np.int64)


def load_samples(data: str | os.PathLike = "bccd", split: str = "val", limit: int | None = None) -> tuple[list[Sample], dict[int, str]]:
    """The labelled images of a YOLO dataset split (a data.yaml, a bundled name, or an ``images/<split>`` folder).

    Example:
        >>> samples, names = load_samples("bccd", "val", limit=2)
        >>> len(samples), names[0]
        (2, 'RBC')
    """
    import cv2

    from edge_mlla.data import load_data_yaml

    d = load_data_yaml(data)
    if split not in d:
        raise DatasetError(f"{d['yaml']} has no {split!r} split (has: {[s for s in ('train', 'val', 'test') if s in d]})")
    folder = Path(d[split])
    if not folder.is_dir():
        raise DatasetError(f"{d['yaml']}: {split} split {folder} is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(f"{d['yaml']}: {split} split {folder} has no images")
    if limit is not None:
        files = files[: int(limit)]
    samples = []
    for f in files:
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)  # the size only; Detector reads the pixels again
        if img is None:
            raise DatasetError(f"{f} could not be decoded as an image")
        boxes, cls = _read_labels(label_path(f), img.shape[:2])
        samples.append(Sample(f, boxes, cls))
    return samples, d["names"]


# ------------------------------------------------------------------------------------------------- metric
def match_predictions(pred_cls: np.ndarray, true_cls: np.ndarray, iou: np.ndarray) -> np.ndarray:
    """(n_pred, 10) bool: is each prediction (sorted by descending confidence) a true positive at each IoU threshold.

    ``iou`` is (n_true, n_pred). Greedy: each prediction takes the best unmatched same-class target.
    """
    thr = IOU_THRESHOLDS
    correct = np.zeros((len(pred_cls), len(thr)), bool)
    if not len(pred_cls) or not len(true_cls):
        return correct
    iou = iou * (true_cls[:, None] == pred_cls[None, :])
    matched = np.zeros((iou.shape[0], len(thr)), bool)
    cols = np.arange(len(thr))
    for j in np.flatnonzero((iou >= thr.min()).any(0)):
        avail = np.where(matched, 0, iou[:, j, None])
        k = avail.argmax(0)
        correct[j] = avail[k, cols] >= thr
        matched[k, cols] |= correct[j]
    return correct


def compute_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """101-point interpolated AP of one precision/recall curve (COCO)."""
    mrec = np.concatenate(([0.0], recall, [recall[-1] if len(recall) else 1.0], [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0], [0.0]))
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))
    trapz = getattr(np, "trapezoid", None) or np.trapz
    return float(trapz(np.interp(_AP_X, mrec, mpre), _AP_X))


@dataclass
class MeanAP:
    """Accumulates per-image matches; :meth:`compute` gives mAP50-95, mAP50 and per-class AP.

    Example:
        >>> m = MeanAP()
        >>> m.update(np.array([[0., 0, 10, 10]]), np.array([0.9]), np.array([0]), np.array([[0., 0, 10, 10]]), np.array([0]))
        >>> round(m.compute()["mAP50-95"], 3)  # 101-point trapezoid: a perfect class scores 0.995, as in Ultralytics
        0.995
    """

    tp: list[np.ndarray] = field(default_factory=list)
    conf: list[np.ndarray] = field(default_factory=list)
    pred_cls: list[np.ndarray] = field(default_factory=list)
    target_cls: list[np.ndarray] = field(default_factory=list)
    images: int = 0

    def update(self, xyxy: np.ndarray, conf: np.ndarray, cls: np.ndarray, gt_xyxy: np.ndarray, gt_cls: np.ndarray) -> None:
        """Add one image: predictions (any order) and ground truth, both in the same pixel space."""
        order = np.argsort(-np.asarray(conf), kind="stable")
        xyxy, conf, cls = np.asarray(xyxy)[order], np.asarray(conf)[order], np.asarray(cls)[order]
        iou = box_iou(np.asarray(gt_xyxy, np.float64), xyxy.astype(np.float64), eps=1e-7) if len(gt_cls) and len(cls) else None
        self.tp.append(match_predictions(cls, np.asarray(gt_cls), iou) if iou is not None
                       else np.zeros((len(cls), len(IOU_THRESHOLDS)), bool))  # fmt: skip
        self.conf.append(conf.astype(np.float64))
        self.pred_cls.append(cls.astype(np.int64))
        self.target_cls.append(np.asarray(gt_cls, np.int64))
        self.images += 1

    def compute(self, names: dict[int, str] | None = None) -> dict[str, Any]:
        """``mAP50-95``, ``mAP50``, ``per_class`` (name -> AP50-95), ``images``, ``instances``."""
        tp = np.concatenate(self.tp) if self.tp else np.zeros((0, 10), bool)
        conf = np.concatenate(self.conf) if self.conf else np.zeros(0)
        pcls = np.concatenate(self.pred_cls) if self.pred_cls else np.zeros(0, np.int64)
        tcls = np.concatenate(self.target_cls) if self.target_cls else np.zeros(0, np.int64)
        order = np.argsort(-conf, kind="stable")
        tp, conf, pcls = tp[order], conf[order], pcls[order]
        classes, counts = np.unique(tcls, return_counts=True)
        ap = np.zeros((len(classes), tp.shape[1]))
        for ci, c in enumerate(classes):
            i = pcls == c
            if not i.any():
                continue
            tpc = tp[i].cumsum(0)
            fpc = (1 - tp[i]).cumsum(0)
            recall = tpc / (counts[ci] + 1e-16)
            precision = tpc / (tpc + fpc)
            for t in range(tp.shape[1]):
                ap[ci, t] = compute_ap(recall[:, t], precision[:, t])
        names = names or {}
        return {
            "mAP50-95": float(ap.mean()) if len(ap) else 0.0,
            "mAP50": float(ap[:, 0].mean()) if len(ap) else 0.0,
            "per_class": {names.get(int(c), str(int(c))): float(ap[i].mean()) for i, c in enumerate(classes)},
            "images": self.images,
            "instances": int(len(tcls)),
        }


# ------------------------------------------------------------------------------------------------ running
def score(predict: Callable[[Path], Any], samples: Sequence[Sample], names: dict[int, str] | None = None,
          progress: bool = False) -> dict[str, Any]:  # fmt: skip
    """mAP of ``predict(image_path) -> Detections`` over ``samples`` (see :class:`MeanAP`)."""
    acc = MeanAP()
    it: Iterable[Sample] = samples
    if progress:
        try:
            from tqdm import tqdm

            it = tqdm(samples, desc="eval", leave=False)
        except ImportError:  # pragma: no cover
            pass
    for s in it:
        d = predict(s.image)
        acc.update(d.xyxy, d.confidence, d.class_id, s.boxes, s.classes)
    return acc.compute(names)


def evaluate(
    model: str | os.PathLike,
    data: str | os.PathLike = "bccd",
    split: str = "val",
    backend: str = "auto",
    precision: str | None = None,
    imgsz: int | tuple[int, int] | None = None,
    conf: float = 0.001,
    iou: float = 0.7,
    max_det: int = 300,
    limit: int | None = None,
    progress: bool = True,
    multi_label: bool = True,
    **backend_options: Any,
) -> dict[str, Any]:
    """mAP50-95 and mAP50 of a model file on a YOLO dataset split, through :class:`edge_mlla.Detector`.

    Args:
        model: ``.xml`` / ``.onnx`` / ``.pt`` model file.
        data: bundled dataset name (``"bccd"``) or data.yaml path.
        split: ``val``, ``test`` or ``train``.
        backend, precision, imgsz, **backend_options: passed to Detector (precision is always reported).
        conf, iou, max_det: Ultralytics' validation defaults.
        limit: evaluate only the first ``limit`` images.
        multi_label: decode every class above ``conf`` per box and keep boxes unclipped, as Ultralytics' validator
            does (default; measured equal to ``YOLO(onnx).val`` to 1e-7 here); False scores Detector's own output
            (best class per box, boxes clipped to the image, as in prediction). Clipping alone doubled a weak
            model's mAP50-95 (0.0008 -> 0.0016), so only the default is comparable with Ultralytics.

    Returns:
        dict with ``mAP50-95``, ``mAP50``, ``per_class``, ``images``, ``instances``, ``model``, ``backend``,
        ``precision``, ``imgsz``, ``data``, ``split``.

    Example:
        >>> evaluate("best_int8_openvino_model/best_int8.xml", data="bccd")["mAP50-95"]  # doctest: +SKIP
        0.604
    """
    from edge_mlla import Detector

    if not 0.0 <= conf < 1.0:
        raise ConfigError(f"conf must be in [0, 1), got {conf}")
    samples, names = load_samples(data, split, limit)
    det = Detector(model, backend=backend, precision=precision, conf=conf, iou=iou, max_det=max_det, imgsz=imgsz,
                   multi_label=multi_label, clip=not multi_label, **backend_options)  # fmt: skip
    try:
        res = score(det, samples, det.names or names, progress=progress)
    finally:
        det.close()
    res.update(model=str(model), backend=det.backend.name, precision=det.precision, imgsz=list(det.imgsz),
               data=str(data), split=split, conf=conf, iou=iou, multi_label=multi_label)  # fmt: skip
    LOGGER.info("eval %s (%s/%s, %s): mAP50-95 %.4f, mAP50 %.4f on %d images", Path(model).name, det.backend.name,
                det.precision, det.imgsz, res["mAP50-95"], res["mAP50"], res["images"])  # fmt: skip
    return res
