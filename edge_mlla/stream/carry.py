"""Boxes between detections: each object of the last detection moves on at its own constant velocity (its box centre's
pixels a second, estimated from two detections of it), so that frames that are not detected still get boxes.

Objects are matched from one detection to the next by tracker id when both have one, else by IoU of the carried box
with the new one. A whole-frame detection replaces the carried set; a detection on regions replaces what lies in them.

Example:
    >>> import numpy as np
    >>> from edge_mlla import Detections
    >>> c = Carrier()
    >>> d = lambda x: Detections(np.array([[x, 10, x + 20, 30]], np.float32), np.ones(1, np.float32), np.zeros(1, np.int64))
    >>> c.update(d(0), t=0.0); c.update(d(10), t=1.0)
    >>> c.predict(2.0).xyxy.tolist(), c.predict(2.0).data["predicted"].tolist()
    ([[20.0, 10.0, 40.0, 30.0]], [True])
    >>> c.freeze(2.0); c.predict(5.0).xyxy.tolist()   # the scene stood still: so did the boxes
    [[20.0, 10.0, 40.0, 30.0]]
"""

from __future__ import annotations

import numpy as np

from edge_mlla.ops import box_iou
from edge_mlla.results import Detections


class Carrier:
    """The carried boxes of one source (see the module docstring). ``match_iou``: the least IoU of a carried box with
    a new detection for both to be the same object; ``smooth``: weight of the newest velocity estimate."""

    def __init__(self, match_iou: float = 0.2, smooth: float = 0.6) -> None:
        self.match_iou, self.smooth = float(match_iou), float(smooth)
        self._last: Detections = Detections.empty()
        self._vel = np.zeros((0, 2), np.float32)  # centre velocity, pixels a second
        self._seen = np.zeros(0, np.int64)  # velocity estimates behind each box (0: a new object)
        self._t = 0.0

    def __len__(self) -> int:
        return len(self._last)

    @property
    def velocity(self) -> np.ndarray:
        """(n, 2) centre velocities of the carried boxes, pixels a second."""
        return self._vel.copy()

    def moving(self, share: float = 0.2, new: bool = True) -> np.ndarray:
        """Per carried box: whether it moves more than ``share`` of its size (shorter side) a second, or (``new``) is
        new, its velocity not known yet."""
        if not len(self._vel):
            return np.zeros(0, bool)
        side = np.maximum((self._last.xyxy[:, 2:] - self._last.xyxy[:, :2]).min(1), 1.0)
        fast = np.hypot(self._vel[:, 0], self._vel[:, 1]) > share * side
        return fast | (self._seen == 0) if new else fast

    def every(self, fps: float, shift: float, most: int) -> int:
        """Detect every how many frames so that no carried object moves more than ``shift`` of its size (shorter
        side) between detections, from 1 to ``most``; 1 while an object's velocity is not known yet.

        Example:
            >>> Carrier().every(fps=15, shift=0.25, most=8)   # nothing carried: no reason to hurry
            8
        """
        if not len(self._last):
            return int(most)
        if not self._seen.all():
            return 1
        wh = self._last.xyxy[:, 2:] - self._last.xyxy[:, :2]
        ratio = float((np.hypot(self._vel[:, 0], self._vel[:, 1]) / np.maximum(wh.min(1), 1.0)).max())  # sizes a second
        if ratio <= 0:
            return int(most)
        return int(min(most, max(1, np.floor(shift * fps / ratio))))

    def predict(self, t: float) -> Detections:
        """The carried boxes at time ``t`` (same ids, classes and confidences), marked ``data["predicted"] = True``."""
        d = self._last
        shift = self._vel * max(0.0, t - self._t)
        xyxy = d.xyxy + np.concatenate([shift, shift], 1)
        data = {k: v for k, v in d.data.items() if k != "predicted"}
        data["predicted"] = np.ones(len(d), bool)
        return Detections(xyxy.astype(np.float32), d.confidence, d.class_id, names=d.names, data=data,
                          tracker_id=None if d.tracker_id is None else d.tracker_id.copy())  # fmt: skip

    def freeze(self, t: float) -> None:
        """Nothing moves at ``t``: keep the boxes where they are now and stop them."""
        moved = self.predict(t)
        moved.data.pop("predicted")
        self._last, self._vel, self._t = moved, np.zeros_like(self._vel), t

    def compose(self, dets: Detections, t: float, regions: np.ndarray) -> Detections:
        """What a frame detected on ``regions`` (m, 4) xyxy shows at ``t``: ``dets`` (found in the regions, marked not
        predicted) and the carried boxes not wholly inside a region (marked predicted). The carried set is unchanged."""
        dets = marked(dets, False)
        if not len(self._last):
            return dets
        carried = self.predict(t)
        return _concat(dets, carried[~_inside(carried.xyxy, regions)])

    def update(self, dets: Detections, t: float) -> None:
        """Carry ``dets`` (what the frame read at ``t`` shows, after a detection) from now on."""
        vel, seen = self._velocities(dets, t)
        self._vel, self._seen, self._t = vel, seen, t
        self._last = Detections(dets.xyxy, dets.confidence, dets.class_id, names=dets.names,
                                data={k: v for k, v in dets.data.items() if k != "predicted"},
                                tracker_id=dets.tracker_id)  # fmt: skip

    def _velocities(self, dets: Detections, t: float) -> tuple[np.ndarray, np.ndarray]:
        vel = np.zeros((len(dets), 2), np.float32)
        seen = np.zeros(len(dets), np.int64)
        dt = t - self._t
        if not len(dets) or not len(self._last) or dt <= 0:
            return vel, seen
        prev = self.predict(t)
        pairs = _match(prev, dets, self.match_iou)
        c_new = (dets.xyxy[:, :2] + dets.xyxy[:, 2:]) / 2
        c_old = (self._last.xyxy[:, :2] + self._last.xyxy[:, 2:]) / 2
        size = np.maximum((dets.xyxy[:, 2:] - dets.xyxy[:, :2]).min(1), 1.0)
        for i_old, j in pairs:
            step = c_new[j] - c_old[i_old]
            if np.hypot(*step) < max(2.0, 0.05 * size[j]):  # the detector's jitter, not motion
                step = np.zeros(2, np.float32)
            measured = step / dt
            w = self.smooth if self._seen[i_old] else 1.0  # a first estimate is taken as it is
            vel[j] = w * measured + (1 - w) * self._vel[i_old]
            seen[j] = self._seen[i_old] + 1
        return vel, seen


def _match(old: Detections, new: Detections, min_iou: float) -> list[tuple[int, int]]:
    """Pairs (i in old, j in new): equal tracker ids first, then greedy by IoU."""
    pairs: list[tuple[int, int]] = []
    used_o, used_n = set(), set()
    if old.tracker_id is not None and new.tracker_id is not None:
        where = {int(t): i for i, t in enumerate(old.tracker_id) if t >= 0}
        for j, t in enumerate(new.tracker_id):
            if t >= 0 and int(t) in where:
                pairs.append((where[int(t)], j))
                used_o.add(where[int(t)])
                used_n.add(j)
    iou = box_iou(old.xyxy, new.xyxy)
    for flat in np.argsort(-iou, axis=None):
        i, j = divmod(int(flat), iou.shape[1])
        if iou[i, j] < min_iou:
            break
        if i not in used_o and j not in used_n and old.class_id[i] == new.class_id[j]:
            pairs.append((i, j))
            used_o.add(i)
            used_n.add(j)
    return pairs


def _inside(xyxy: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """Boxes wholly inside one of the regions (a box a crop cuts is not re-detected there: it stays carried)."""
    r = np.asarray(regions, np.float32)[None]
    return ((xyxy[:, None, :2] >= r[..., :2]) & (xyxy[:, None, 2:] <= r[..., 2:])).all(-1).any(-1)


def with_ids(boxes: Detections, tracked: Detections) -> Detections:
    """``boxes`` with the tracker ids of ``tracked`` (a tracker's output for them: the same boxes, maybe fewer, maybe
    reordered), -1 where the tracker reported none (a track not confirmed yet)."""
    tid = np.full(len(boxes), -1, np.int64)
    if len(boxes) and len(tracked) and tracked.tracker_id is not None:
        iou = box_iou(tracked.xyxy, boxes.xyxy)
        for i, j in enumerate(iou.argmax(1)):
            if iou[i, j] > 0.9:
                tid[j] = tracked.tracker_id[i]
    return Detections(boxes.xyxy, boxes.confidence, boxes.class_id, names=boxes.names, data=dict(boxes.data), tracker_id=tid,
                      timing=boxes.timing)  # fmt: skip


def marked(d: Detections, predicted: bool) -> Detections:
    """``d`` with ``data["predicted"]`` set to ``predicted`` for every box."""
    data = dict(d.data)
    data["predicted"] = np.full(len(d), predicted, bool)
    return Detections(d.xyxy, d.confidence, d.class_id, names=d.names, data=data, tracker_id=d.tracker_id, timing=d.timing)


def _concat(a: Detections, b: Detections) -> Detections:
    """``a`` then ``b`` (data keys both have; tracker ids when both have them)."""
    keys = set(a.data) & set(b.data)
    tid = None if a.tracker_id is None or b.tracker_id is None else np.concatenate([a.tracker_id, b.tracker_id])
    return Detections(np.concatenate([a.xyxy, b.xyxy]), np.concatenate([a.confidence, b.confidence]),
                      np.concatenate([a.class_id, b.class_id]), names=a.names or b.names,
                      data={k: np.concatenate([a.data[k], b.data[k]]) for k in keys}, tracker_id=tid,
                      timing=a.timing)  # fmt: skip
