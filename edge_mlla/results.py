"""Detection results: parallel numpy arrays, validated once, indexable, drawable, convertible.

Modelled on supervision's ``Detections`` (``xyxy`` required, ``confidence``/``class_id`` parallel arrays,
a ``data`` dict for extras, indexing returns a new ``Detections``), and converts to it without importing
supervision unless :meth:`Detections.to_supervision` is called.

Example:
    >>> import numpy as np
    >>> d = Detections(np.array([[0, 0, 10, 10], [5, 5, 20, 20]], np.float32),
    ...                np.array([0.9, 0.4], np.float32), np.array([1, 0]), names={0: "RBC", 1: "WBC"})
    >>> len(d), d.class_name.tolist()
    (2, ['WBC', 'RBC'])
    >>> d[d.confidence > 0.5].class_name.tolist()
    ['WBC']
    >>> [(det.class_name, round(det.confidence, 1)) for det in d]
    [('WBC', 0.9), ('RBC', 0.4)]

Imports inside functions: OpenCV for drawing and supervision (optional) load only when used.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from edge_mlla.errors import InputTypeError, MissingDependencyError, ShapeError


@dataclass(frozen=True)
class Timing:
    """Seconds one call spent per stage: ``preprocess`` (decode checks + letterbox), ``infer`` (the backend),
    ``postprocess`` (decode + NMS), for ``images`` images (a batch shares one Timing).

    Example:
        >>> t = Timing(0.001, 0.010, 0.002, 1)
        >>> round(t.total * 1000, 1)
        13.0
    """

    preprocess: float = 0.0
    infer: float = 0.0
    postprocess: float = 0.0
    images: int = 0

    @property
    def total(self) -> float:
        return self.preprocess + self.infer + self.postprocess

    def as_ms(self) -> dict[str, float]:
        """Stage -> milliseconds (plus ``total``), for tables and JSON."""
        return {k: 1000.0 * getattr(self, k) for k in ("preprocess", "infer", "postprocess", "total")}


class Detection(NamedTuple):
    """One detection, as yielded by iterating over :class:`Detections`."""

    xyxy: np.ndarray
    confidence: float
    class_id: int
    class_name: str


@dataclass
class Detections:
    """Detections of one image: ``xyxy`` (n, 4) float32 in original-image pixels, ``confidence`` (n,)
    float32, ``class_id`` (n,) int64, ``names`` (class id -> name), ``data`` (extra per-box arrays),
    ``tracker_id`` (n,) int64 when a tracker assigned ids (else None), and ``timing``: the :class:`Timing`
    of the call that produced them (None when built by hand). ``timing`` is not part of equality.

    Example:
        >>> import numpy as np
        >>> Detections.empty().xyxy.shape
        (0, 4)
        >>> Detections(np.zeros((1, 4), np.float32), np.ones(1, np.float32), np.zeros(1, np.int64)).class_name.tolist()
        ['0']
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    names: dict[int, str] | None = None
    data: dict[str, np.ndarray] = field(default_factory=dict)
    tracker_id: np.ndarray | None = None
    timing: Timing | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("xyxy", "confidence", "class_id"):
            if not isinstance(getattr(self, name), np.ndarray):
                raise InputTypeError(f"Detections.{name} must be a numpy array, got {type(getattr(self, name)).__name__}")
        if self.xyxy.ndim != 2 or self.xyxy.shape[1] != 4:
            raise ShapeError(f"Detections.xyxy must have shape (n, 4), got {self.xyxy.shape}")
        n = len(self.xyxy)
        self.xyxy = self.xyxy.astype(np.float32, copy=False)
        self.confidence = self.confidence.astype(np.float32, copy=False)
        self.class_id = self.class_id.astype(np.int64, copy=False)
        if self.tracker_id is not None:
            if not isinstance(self.tracker_id, np.ndarray):
                raise InputTypeError(f"Detections.tracker_id must be a numpy array or None, got {type(self.tracker_id).__name__}")
            self.tracker_id = self.tracker_id.astype(np.int64, copy=False)
        for name in ("confidence", "class_id") + (("tracker_id",) if self.tracker_id is not None else ()):
            arr = getattr(self, name)
            if arr.shape != (n,):
                raise ShapeError(f"Detections.{name} must have shape ({n},) to match xyxy, got {arr.shape}")
        if self.names is None:
            self.names = {}
        for key, arr in self.data.items():
            if len(arr) != n:
                raise ShapeError(f"Detections.data[{key!r}] must have length {n} to match xyxy, got {len(arr)}")

    @classmethod
    def empty(cls, names: dict[int, str] | None = None) -> Detections:
        """No detections."""
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), names=names)

    def __len__(self) -> int:
        return len(self.xyxy)

    @property
    def class_name(self) -> np.ndarray:
        """Class names per box (str array); the id as text where the model has no name for it."""
        names = self.names or {}
        return np.array([names.get(int(c), str(int(c))) for c in self.class_id], dtype=str).reshape(len(self))

    def __iter__(self) -> Iterator[Detection]:
        names = self.class_name
        for i in range(len(self)):
            yield Detection(self.xyxy[i], float(self.confidence[i]), int(self.class_id[i]), str(names[i]))

    def __getitem__(self, index: int | slice | np.ndarray | list) -> Detections:
        """A new ``Detections`` with the selected boxes (int, slice, index list or boolean mask); stays 2-D."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return Detections(
            self.xyxy[index],
            self.confidence[index],
            self.class_id[index],
            names=self.names,
            data={k: v[index] for k, v in self.data.items()},
            tracker_id=None if self.tracker_id is None else self.tracker_id[index],
            timing=self.timing,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Detections):
            return NotImplemented
        return (
            np.array_equal(self.xyxy, other.xyxy)
            and np.array_equal(self.confidence, other.confidence)
            and np.array_equal(self.class_id, other.class_id)
            and (self.tracker_id is None) == (other.tracker_id is None)
            and (self.tracker_id is None or np.array_equal(self.tracker_id, other.tracker_id))
            and self.data.keys() == other.data.keys()
            and all(np.array_equal(v, other.data[k]) for k, v in self.data.items())
        )

    def __repr__(self) -> str:
        return f"Detections(n={len(self)}, classes={sorted(set(self.class_name.tolist()))})"

    def draw(self, image: np.ndarray, thickness: int = 2, labels: bool = True) -> np.ndarray:
        """A copy of ``image`` (BGR uint8, the one these detections came from) with boxes and labels drawn.

        Example:
            >>> import numpy as np
            >>> d = Detections(np.array([[2, 2, 30, 30]], np.float32), np.ones(1, np.float32), np.zeros(1, np.int64))
            >>> out = d.draw(np.zeros((40, 40, 3), np.uint8))
            >>> out.shape, bool(out.any())
            ((40, 40, 3), True)
        """
        import cv2

        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ShapeError(
                "draw() needs the BGR uint8 HxWx3 image the detections came from, got "
                + (f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__)
            )
        out = image.copy()
        scale = max(0.4, min(out.shape[:2]) / 900)
        tids = self.tracker_id
        for i, det in enumerate(self):
            x1, y1, x2, y2 = (int(round(v)) for v in det.xyxy)
            color = _color(det.class_id)
            cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
            if labels:
                text = (f"#{int(tids[i])} " if tids is not None else "") + f"{det.class_name} {det.confidence:.2f}"
                (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
                ty = y1 - 2 if y1 - th - base - 2 >= 0 else y1 + th + 2
                cv2.rectangle(out, (x1, ty - th - base), (x1 + tw, ty + base - 1), color, -1)
                cv2.putText(out, text, (x1, ty - 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
        return out

    def to_supervision(self) -> Any:
        """The same detections as a ``supervision.Detections`` (needs ``pip install supervision``).

        Class names go to ``data["class_name"]``, as supervision's own converters do.
        """
        try:
            import supervision as sv
        except ImportError as e:
            raise MissingDependencyError("to_supervision() needs the supervision package: pip install supervision") from e
        return sv.Detections(
            xyxy=self.xyxy.copy(),
            confidence=self.confidence.copy(),
            class_id=self.class_id.astype(int),
            tracker_id=None if self.tracker_id is None else self.tracker_id.astype(int),
            data={"class_name": self.class_name, **{k: np.asarray(v) for k, v in self.data.items()}},
        )

    @classmethod
    def from_supervision(cls, sv_dets: Any, names: dict[int, str] | None = None, timing: Timing | None = None) -> Detections:
        """Our ``Detections`` from a ``supervision.Detections`` (duck-typed: supervision is not imported).

        Keeps ``tracker_id`` and per-box ``data`` arrays (except ``class_name``, which ``names`` gives).
        """
        try:
            xyxy = np.asarray(sv_dets.xyxy, np.float32).reshape(-1, 4)
        except AttributeError:
            raise InputTypeError(f"from_supervision() needs a supervision.Detections, got {type(sv_dets).__name__}") from None
        n = len(xyxy)
        conf = sv_dets.confidence if sv_dets.confidence is not None else np.ones(n, np.float32)
        cid = sv_dets.class_id if sv_dets.class_id is not None else np.zeros(n, np.int64)
        data = {k: np.asarray(v) for k, v in (getattr(sv_dets, "data", None) or {}).items() if k != "class_name"}
        tid = getattr(sv_dets, "tracker_id", None)
        return cls(xyxy, np.asarray(conf), np.asarray(cid), names=names, data=data,
                   tracker_id=None if tid is None else np.asarray(tid), timing=timing)  # fmt: skip

    def to_dict(self) -> list[dict[str, Any]]:
        """Plain-Python records (JSON-serializable), one per box."""
        return [
            {"xyxy": [float(v) for v in d.xyxy], "confidence": d.confidence, "class_id": d.class_id, "class_name": d.class_name}
            | ({"tracker_id": int(self.tracker_id[i])} if self.tracker_id is not None else {})
            for i, d in enumerate(self)
        ]


def _color(class_id: int) -> tuple[int, int, int]:
    palette = ((56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207), (10, 249, 72),
               (23, 204, 146), (134, 219, 61), (52, 147, 26), (187, 212, 0), (168, 153, 44), (255, 194, 0))
    return palette[int(class_id) % len(palette)]
