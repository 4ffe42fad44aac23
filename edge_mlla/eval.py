"""COCO-style detection accuracy (mAP50-95, mAP50) of any model file, run through :class:`edge_mlla.Detector`.

The metric is Ultralytics' (``DetectionValidator`` + ``ap_per_class``, v8.4): the validator's preprocessing
(:func:`edge_mlla.ops.val_letterbox`: long side resized with ``ceil``, then letterboxed without enlarging), its
decode (every class above ``conf=0.001`` per box, boxes not clipped), NMS ``iou=0.7``, up to 300 per image; matching in
model-input pixels, labels scaled by ``LetterBox``'s unrounded ratio (:func:`edge_mlla.ops.val_label_gain`); each prediction matched greedily, in descending confidence, to the
best still-unmatched ground-truth box of its class at each IoU threshold 0.50:0.05:0.95; per-class AP from
the monotone precision envelope with 101-point interpolation; mAP is the mean over classes that have labels.
So ``evaluate(onnx)`` agrees with ``YOLO(onnx).val(data=..., batch=1)`` for any aspect ratio and any (also
rectangular) model input size (tested within 1e-4).

:func:`score_model` is the one scoring path: :func:`evaluate` runs it on a model file's backend, and INT8
accuracy control (:mod:`edge_mlla.quantize`) on NNCF's candidate models, so both report the same mAP.

Ground truth is the YOLO layout: ``images/<split>/x.jpg`` with ``labels/<split>/x.txt`` (``cls cx cy w h``
normalised); an image without a label file has no objects.

Example:
    >>> from edge_mlla.eval import evaluate
    >>> r = evaluate("yolo11n-mlla-bccd.onnx", data="bccd", split="val")  # doctest: +SKIP
    >>> round(r["mAP50-95"], 3), round(r["mAP50"], 3)  # doctest: +SKIP
    (0.61, 0.91)

Imports inside functions: tqdm, the dataset reader and :class:`~edge_mlla.Detector` load when a model is scored, so
that importing this module stays light.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_mlla.errors import ConfigError, DatasetError, ImageReadError
from edge_mlla.ops import ImageReadWarning, box_iou, postprocess, preprocess, read_image, val_label_gain

LOGGER = logging.getLogger("edge_mlla")

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
_AP_X = np.linspace(0, 1, 101)
VAL_CONF, VAL_IOU, VAL_MAX_DET = 0.001, 0.7, 300  # Ultralytics' validation defaults


# ----------------------------------------------------------------------------------------------- ground truth
@dataclass(frozen=True)
class Sample:
    """One labelled image: path, ground-truth xyxy boxes in pixels (n, 4) and class ids (n,)."""

    image: Path
    boxes: np.ndarray
    classes: np.ndarray


def _read_labels(txt: Path, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth xyxy pixel boxes and class ids of one YOLO label file (a polygon row becomes its bounding box,
    as Ultralytics does); no file means no objects. The file was checked by :func:`edge_mlla.data.validate_dataset`."""
    if not txt.is_file():
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    rows = [[float(v) for v in ln.split()] for ln in txt.read_text().splitlines() if ln.strip()]
    h, w = hw
    boxes, cls = [], []
    for r in rows:
        if len(r) == 5:
            cx, cy, bw, bh = r[1] * w, r[2] * h, r[3] * w, r[4] * h
            boxes.append([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2])
        else:
            xs, ys = np.array(r[1::2]) * w, np.array(r[2::2]) * h
            boxes.append([xs.min(), ys.min(), xs.max(), ys.max()])
        cls.append(int(r[0]))
    return np.array(boxes, np.float32).reshape(-1, 4), np.array(cls, np.int64)


def load_samples(data: str | os.PathLike = "bccd", split: str = "val", limit: int | None = None) -> tuple[list[Sample], dict[int, str]]:
    """The labelled images of a YOLO dataset split (a data.yaml or a bundled name), validated first
    (:func:`edge_mlla.data.validate_dataset`); images that do not decode are skipped and counted in a warning.

    Example:
        >>> samples, names = load_samples("bccd", "val", limit=2)
        >>> len(samples), names[0]
        (2, 'RBC')
    """
    from edge_mlla.data import label_path, split_images, validate_dataset

    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit must be a positive int or None, got {limit!r}")
    d = validate_dataset(data, splits=(split,))
    files = split_images(d, split)
    if limit is not None:
        files = files[:limit]
    samples, skipped = [], []
    for f in files:
        try:  # the size only (scoring reads the pixels again, with the same reader: EXIF orientation applied)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ImageReadWarning)  # a truncated image is scored as decoded, as Ultralytics
                hw = read_image(f, strict=False).shape[:2]
        except ImageReadError:
            skipped.append(f.name)
            continue
        boxes, cls = _read_labels(label_path(f), hw)
        samples.append(Sample(f, boxes, cls))
    if skipped:
        LOGGER.warning("%s split: skipped %d image(s) that could not be decoded: %s", split, len(skipped),
                       ", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else ""))  # fmt: skip
    if not samples:
        raise DatasetError(f"{d['yaml']}: none of the {len(files)} images of the {split} split could be decoded")
    if not any(len(s.classes) for s in samples):
        raise DatasetError(
            f"{d['yaml']}: none of the {len(samples)} {split} images has a labelled object (looked for "
            f"{label_path(samples[0].image)}); mAP needs ground truth: labels go in a 'labels' folder beside 'images'"
        )
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
def check_classes(model_names: dict[int, str], data_names: dict[int, str], model: object, data: object) -> None:
    """Refuse to score a model on a dataset of other classes (the mAP would be meaningless, not low).

    Example:
        >>> check_classes({0: "RBC"}, {0: "car", 1: "van"}, "m.onnx", "kitti.yaml")
        Traceback (most recent call last):
        ...
        edge_mlla.errors.DatasetError: m.onnx has 1 classes (RBC) but kitti.yaml has 2 (car, van); pass the model's own dataset (--data path/to/data.yaml)
    """
    ours, theirs = [model_names[k] for k in sorted(model_names)], [data_names[k] for k in sorted(data_names)]
    if ours == theirs:
        return
    show = lambda n: ", ".join(n[:6]) + (", ..." if len(n) > 6 else "")  # noqa: E731
    if len(ours) != len(theirs):
        raise DatasetError(f"{model} has {len(ours)} classes ({show(ours)}) but {data} has {len(theirs)} ({show(theirs)}); "
                           "pass the model's own dataset (--data path/to/data.yaml)")
    raise DatasetError(f"{model}'s class names ({show(ours)}) differ from {data}'s ({show(theirs)}); pass the model's own "
                       "dataset (--data path/to/data.yaml), or names=[...] to relabel the model")


def score_model(
    infer: Callable[[np.ndarray], Any],
    samples: Sequence[Sample],
    imgsz: tuple[int, int],
    stride: int = 32,
    names: dict[int, str] | None = None,
    batch: int | None = None,
    conf: float = VAL_CONF,
    iou: float = VAL_IOU,
    max_det: int = VAL_MAX_DET,
    progress: bool = False,
    layout: str = "nchw",
) -> dict[str, Any]:
    """mAP of a raw model, ``infer(batch) -> output0`` (an array, or a list whose first item is it), on ``samples``.

    The one scoring path: Ultralytics' validator preprocessing (:func:`~edge_mlla.ops.val_letterbox`, padded to a
    fixed ``batch``), its decode (multi-label, unclipped) and :class:`MeanAP`. Used by :func:`evaluate` and by INT8
    accuracy control, so a quantizer's budget and the reported drop are the same number.
    """
    nc = len(names) if names else None
    acc = MeanAP()
    it: Iterable[Sample] = samples
    if progress:
        try:
            from tqdm import tqdm

            it = tqdm(samples, desc="eval", leave=False)
        except ImportError:  # pragma: no cover
            pass
    for s in it:
        x, metas = preprocess([read_image(s.image, strict=False)], imgsz, stride, batch_size=batch, validator=True,
                              layout=layout)  # fmt: skip
        out = infer(x)
        out = out[0] if isinstance(out, (list, tuple)) else out
        d = postprocess(np.asarray(out), metas, conf=conf, iou=iou, max_det=max_det, nc=nc, multi_label=True,
                        clip=False)[0]  # fmt: skip
        # matched in model-input pixels, as the validator does: predictions back through the image's own gain,
        # labels through LetterBox's unrounded one (they differ, and differently in x and y, on non-4:3 images)
        m = metas[0]
        (gy, gx), (ly, lx), (px, py) = m.gain, val_label_gain(m.orig_shape, m.input_shape), m.pad
        pred = np.asarray(d.xyxy, np.float64) * [gx, gy, gx, gy] + [px, py, px, py]
        gt = np.asarray(s.boxes, np.float64).reshape(-1, 4) * [lx, ly, lx, ly] + [px, py, px, py]
        acc.update(pred, d.confidence, d.class_id, gt, s.classes)
    return acc.compute(names)


def evaluate(
    model: str | os.PathLike,
    data: str | os.PathLike = "bccd",
    split: str = "val",
    backend: str = "auto",
    precision: str | None = None,
    imgsz: int | tuple[int, int] | None = None,
    conf: float = VAL_CONF,
    iou: float = VAL_IOU,
    max_det: int = VAL_MAX_DET,
    limit: int | None = None,
    progress: bool = True,
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

    Returns:
        dict with ``mAP50-95``, ``mAP50``, ``per_class``, ``images``, ``instances``, ``model``, ``backend``,
        ``precision`` (``int8`` for a quantized model), ``float_precision`` (what its other ops ran in: f32 or bf16
        score differently), ``imgsz``, ``data``, ``split``.

    Example:
        >>> evaluate("best_int8_openvino_model/best_int8.xml", data="bccd")["mAP50-95"]  # doctest: +SKIP
        0.604
    """
    from edge_mlla import Detector

    if isinstance(conf, bool) or not isinstance(conf, (int, float)) or not 0.0 <= conf < 1.0:
        raise ConfigError(f"conf must be in [0, 1), got {conf!r}")
    samples, names = load_samples(data, split, limit)
    det = Detector(model, backend=backend, precision=precision, conf=conf, iou=iou, max_det=max_det, imgsz=imgsz,
                   **backend_options)  # fmt: skip
    try:
        check_classes(det.names, names, model, data)
        res = score_model(det.backend.infer, samples, det.imgsz, det.stride, det.names or names, batch=det.batch,
                          conf=conf, iou=iou, max_det=max_det, progress=progress,
                          layout=det.backend.input_layout)  # fmt: skip
    finally:
        det.close()
    res.update(model=str(model), backend=det.backend.name, precision=det.precision,
               float_precision=det.float_precision, imgsz=list(det.imgsz),
               data=str(data), split=split, conf=conf, iou=iou)  # fmt: skip
    prec = det.precision + (f" (float ops {det.float_precision})" if det.precision == "int8" else "")
    LOGGER.info("eval %s (%s/%s, %s): mAP50-95 %.4f, mAP50 %.4f on %d images", Path(model).name, det.backend.name,
                prec, det.imgsz, res["mAP50-95"], res["mAP50"], res["images"])  # fmt: skip
    return res
