"""Tracking and counting for streams: ByteTrack per source (supervision 0.30's ``sv.ByteTrack``, or the
``trackers`` package's ``ByteTrackTracker`` with supervision >= 0.31) and line crossings (supervision's ``LineZone``).
supervision and trackers are imported only when a :class:`Tracker` or :class:`LineCounter` is made."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from edge_mlla.errors import ConfigError, MissingDependencyError
from edge_mlla.results import Detections

TRACK_INSTALL = "pip install 'edge-mlla[track]'"


def _import_supervision() -> Any:
    try:
        import supervision as sv
    except ImportError as e:
        raise MissingDependencyError(f"tracking and line counting need supervision: {TRACK_INSTALL}") from e
    return sv


#: the ``trackers`` package's ByteTrack settings that make it behave as supervision 0.30's ByteTrack: tracks start
#: from boxes at the detector's usual threshold and are reported from their first frame (its own defaults: 0.7 and 2)
TRACKERS_DEFAULTS = {"track_activation_threshold": 0.35, "high_conf_det_threshold": 0.25, "minimum_consecutive_frames": 1}
TRACKERS_INSTALL = ("pip install rich && pip install --no-deps trackers  (its wheel asks for opencv-python, the GUI "
                    "build; with --no-deps the headless OpenCV edge-mlla uses stays; what else it needs comes with "
                    "supervision, but rich)")


class Tracker:
    """ByteTrack for one stream: our :class:`Detections` in, the same with ``tracker_id`` out.

    Uses supervision's ``ByteTrack`` up to supervision 0.30; supervision 0.31 moved ByteTrack to the ``trackers``
    package, whose ``ByteTrackTracker`` is used then (set up as supervision 0.30's: :data:`TRACKERS_DEFAULTS`).
    ``options`` go to the tracker's constructor. ``kind`` says which one runs.

    Example:
        >>> t = Tracker(frame_rate=30)          # doctest: +SKIP
        >>> tracked = t.update(det(frame))      # doctest: +SKIP
        >>> tracked.tracker_id                  # doctest: +SKIP
        array([1, 2, 3])
    """

    def __init__(self, frame_rate: float = 30.0, **options: Any) -> None:
        sv = _import_supervision()
        self.frame_rate = float(frame_rate)
        if hasattr(sv, "ByteTrack"):
            with warnings.catch_warnings():  # deprecated in supervision 0.28 (moved to `trackers`), still the same tracker
                warnings.simplefilter("ignore")
                self._impl = sv.ByteTrack(frame_rate=self.frame_rate, **options)
            self._update = self._impl.update_with_detections
            self.kind = f"supervision {sv.__version__} ByteTrack"
            return
        try:
            from trackers import ByteTrackTracker
        except ImportError as e:
            raise MissingDependencyError(
                f"track=True needs ByteTrack, which supervision {sv.__version__} keeps in the trackers package: {TRACKERS_INSTALL}"
            ) from e
        self._impl = ByteTrackTracker(frame_rate=self.frame_rate, **{**TRACKERS_DEFAULTS, **options})
        self._update = self._impl.update
        from importlib import metadata

        self.kind = f"trackers {metadata.version('trackers')} ByteTrackTracker (supervision {sv.__version__})"

    def update(self, detections: Detections) -> Detections:
        """Associate ``detections`` (of the next frame) with the tracks; returns the tracked boxes with ids."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            out = self._update(detections.to_supervision())
        tid = out.tracker_id
        if tid is not None and len(tid) and (np.asarray(tid) < 0).any():  # trackers: -1 = not confirmed yet
            out = out[np.asarray(tid) >= 0]
        res = Detections.from_supervision(out, names=detections.names, timing=detections.timing)
        if res.tracker_id is None:
            res.tracker_id = np.zeros(0, np.int64) if len(res) == 0 else res.tracker_id
        return res


class LineCounter:
    """Count tracked objects crossing the line ``start -> end`` (pixels) with supervision's ``LineZone``.

    An object crosses when its box ``anchor`` (default: centre) moves from one side of the line to the
    other within the segment's extent. ``in_count`` counts crossings from the right of ``start -> end``
    to its left (for a line drawn top to bottom: right to left), ``out_count`` the other way. Needs
    detections with ``tracker_id`` (``StreamRunner(track=True)`` or :class:`Tracker`).

    Example:
        >>> line = LineCounter((320, 0), (320, 480))       # doctest: +SKIP
        >>> crossed_in, crossed_out = line.update(tracked)  # doctest: +SKIP
        >>> line.in_count, line.out_count                   # doctest: +SKIP
        (3, 0)
    """

    def __init__(self, start: Sequence[float], end: Sequence[float], anchor: str = "CENTER") -> None:
        sv = _import_supervision()
        try:
            x1, y1 = (float(v) for v in start)
            x2, y2 = (float(v) for v in end)
        except (TypeError, ValueError):
            raise ConfigError(f"a line needs two (x, y) points, got start={start!r} end={end!r}") from None
        if (x1, y1) == (x2, y2):
            raise ConfigError(f"a line needs two different points, got {start} twice")
        try:
            pos = sv.Position[anchor.upper()]
        except KeyError:
            raise ConfigError(f"anchor {anchor!r} is not one of {', '.join(p.name for p in sv.Position)}") from None
        self.start, self.end = (x1, y1), (x2, y2)
        self._zone = sv.LineZone(start=sv.Point(x1, y1), end=sv.Point(x2, y2), triggering_anchors=[pos])

    @classmethod
    def parse(cls, text: str) -> LineCounter:
        """A counter from ``"x1,y1,x2,y2"`` (the sample's ``--line``)."""
        try:
            x1, y1, x2, y2 = (float(v) for v in str(text).split(","))
        except ValueError:
            raise ConfigError(f"--line needs four numbers x1,y1,x2,y2 (pixels), got {text!r}") from None
        return cls((x1, y1), (x2, y2))

    @property
    def in_count(self) -> int:
        return int(self._zone.in_count)

    @property
    def out_count(self) -> int:
        return int(self._zone.out_count)

    def update(self, detections: Detections) -> tuple[np.ndarray, np.ndarray]:
        """Feed one frame's tracked detections; returns per-box booleans (crossed in, crossed out) this frame."""
        if detections.tracker_id is None:
            raise ConfigError("LineCounter needs detections with tracker_id: run StreamRunner(track=True) or a Tracker first")
        sv_dets = detections.to_supervision()
        crossed_in, crossed_out = self._zone.trigger(sv_dets)
        return np.asarray(crossed_in, bool), np.asarray(crossed_out, bool)

    def draw(self, image: np.ndarray, color: tuple[int, int, int] = (0, 255, 255)) -> np.ndarray:
        """Draw the line and its counts onto ``image`` in place (BGR); returns it."""
        p1 = tuple(int(round(v)) for v in self.start)
        p2 = tuple(int(round(v)) for v in self.end)
        cv2.line(image, p1, p2, color, 2, cv2.LINE_AA)
        text = f"in {self.in_count}  out {self.out_count}"
        org = ((p1[0] + p2[0]) // 2 + 6, (p1[1] + p2[1]) // 2 - 6)  # beside the middle of the line
        cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.6, color, 1, cv2.LINE_AA)
        return image
