"""Motion gating for fixed cameras (torch-free, about a millisecond a frame): a background model of a downscaled
grayscale frame, compensated for global brightness, gives the moving regions of each frame.

Guards: a warm-up while the background is learnt; global lighting changes (the background is scaled to the frame's
mean brightness before differencing); camera shake (differencing at a fraction of the resolution, after a blur, is
blind to shifts of a pixel or two); a minimum blob area; a frame where most of the picture changes (camera knocked or
moved, lights switched) re-learns the background at once and counts as motion everywhere; all-black frames (a dead
sensor, a lens cap) never count as motion; a change of resolution (after a reconnect) starts a new warm-up.

Example:
    >>> import numpy as np
    >>> md = MotionDetector(Motion(warmup=2))
    >>> still = np.full((240, 320, 3), 120, np.uint8)
    >>> [md.update(still).state for _ in range(4)]
    ['warmup', 'warmup', 'still', 'still']
    >>> moved = still.copy(); moved[100:140, 50:90] = 250
    >>> r = md.update(moved)
    >>> r.state, r.boxes.round().tolist()
    ('motion', [[46.0, 96.0, 94.0, 144.0]])
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import cv2
import numpy as np

from edge_mlla.errors import ConfigError, ShapeError

#: what :attr:`MotionResult.state` says about a frame
MOTION_STATES = ("warmup", "still", "motion", "all", "dark")


@dataclass(frozen=True)
class Motion:
    """Motion gating and region detection options (``StreamRunner(motion=Motion(...))``; ``motion=True`` takes these).

    Detection: frames are analysed at ``width`` pixels wide; a pixel moves when it differs from the background by
    more than ``threshold`` gray levels; a moving blob counts when it covers at least ``min_area`` pixels of the
    full-resolution frame; the background is learnt over ``warmup`` frames, then follows the scene at ``learn`` per
    frame (moving pixels ``learn / 4``); more than
    ``all_motion`` of the frame moving at once is a global change; a mean gray level under ``dark`` is an all-black frame.
    Pixels that differ from the background but not from the previous frame are learnt at the full rate, so the ghost
    of an object that left, or a parked object, fades into the background in about ``1 / learn`` frames.

    Regions: with ``regions=True`` a frame whose motion covers a small part of it is detected on crops around the
    motion (padded by ``pad`` of their size, at least 16 px, merged when they touch, grown to the model's aspect and to
    at least the model size divided by ``max_zoom`` times the whole-frame scale) instead of the whole frame, when there
    are at most ``max_regions`` crops covering at most ``max_region_area`` of the frame; else the whole frame.
    """

    width: int = 160
    threshold: float = 14.0
    min_area: float = 48.0
    warmup: int = 5
    learn: float = 0.05
    all_motion: float = 0.5
    dark: float = 6.0
    regions: bool = False
    pad: float = 0.25
    max_regions: int = 2
    max_region_area: float = 0.5
    max_zoom: float = 3.0

    def __post_init__(self) -> None:
        if not (16 <= int(self.width) <= 4096) or not self.threshold > 0 or self.min_area < 0 or int(self.warmup) < 1:
            raise ConfigError(f"Motion needs 16 <= width <= 4096, threshold > 0, min_area >= 0 and warmup >= 1, got {self}")
        if not (0 < self.learn <= 1 and 0 < self.all_motion <= 1 and 0 < self.max_region_area <= 1):
            raise ConfigError(f"Motion needs 0 < learn, all_motion, max_region_area <= 1, got {self}")
        if int(self.max_regions) < 1 or not self.max_zoom >= 1 or self.pad < 0:
            raise ConfigError(f"Motion needs max_regions >= 1, max_zoom >= 1 and pad >= 0, got {self}")


@dataclass(frozen=True)
class MotionResult:
    """What moved in one frame: ``state`` (one of :data:`MOTION_STATES`), the moving blobs' ``boxes`` (n, 4) xyxy in
    frame pixels, the ``fraction`` of the frame that changed, and a ``note`` when the frame itself is odd
    (``"all-black frames"``, ``"all motion (camera moved?)"``, ``"resolution changed 640x480 -> 320x240"``)."""

    state: str
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    fraction: float = 0.0
    note: str | None = None

    @property
    def moving(self) -> bool:
        """Whether the frame should be looked at: learning the background, motion, or a global change."""
        return self.state in ("warmup", "motion", "all")


class MotionDetector:
    """The motion state of one source, frame after frame (see the module docstring). Thread-safe."""

    def __init__(self, options: Motion | None = None) -> None:
        self.options = options or Motion()
        self._lock = threading.Lock()
        self._size: tuple[int, int] | None = None
        self._bg: np.ndarray | None = None
        self._prev: np.ndarray | None = None
        self._seen = 0
        self._calm = 0  # frames since the last global change
        self._kernel = np.ones((3, 3), np.uint8)
        self.note: str | None = None  # the standing remark about this source's frames

    def reset(self) -> None:
        """Forget the background (a new warm-up follows)."""
        with self._lock:
            self._bg, self._seen = None, 0

    def update(self, frame: np.ndarray) -> MotionResult:
        """Analyse the next frame (BGR uint8 HxWx3 or gray HxW) and learn from it."""
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim not in (2, 3) or frame.size == 0:
            raise ShapeError(f"motion analysis needs a uint8 HxWx3 (or HxW) frame, got {getattr(frame, 'shape', type(frame))}")
        with self._lock:
            return self._update(frame)

    def _update(self, frame: np.ndarray) -> MotionResult:
        h, w = frame.shape[:2]
        if self._size != (w, h):
            if self._size is not None:
                self.note = f"resolution changed {self._size[0]}x{self._size[1]} -> {w}x{h}"
            self._size, self._bg, self._seen = (w, h), None, 0
        gray = self._small(frame)
        mean = float(gray.mean())
        if mean < self.options.dark:
            self.note = "all-black frames"
            return MotionResult("dark", note=self.note)
        if self.note == "all-black frames":
            self.note, self._bg, self._seen = None, None, 0  # the picture is back: learn it again
        if self._bg is None or self._seen < self.options.warmup:
            self._learn_warmup(gray)
            return MotionResult("warmup", _whole(w, h), 1.0, note=self.note)
        grid = (slice(None, None, 4), slice(None, None, 4))  # the median ratio over a grid: moving objects do not move it
        gain = float(np.median(gray[grid] / np.maximum(self._bg[grid], 1.0)))
        ref = np.minimum(self._bg * gain, 255.0)  # global gain (a lighting change is not motion), saturating as sensors do
        moving = cv2.threshold(cv2.absdiff(gray, ref), self.options.threshold, 255, cv2.THRESH_BINARY)[1].astype(np.uint8)
        fraction = cv2.countNonZero(moving) / moving.size
        if fraction > self.options.all_motion:
            self._bg, self._prev = gray.copy(), gray  # knocked, moved or relit: the new picture is the background
            self._calm = 0
            if self.note is None or self.note.startswith("all motion"):
                self.note = "all motion (camera moved?)"
            return MotionResult("all", _whole(w, h), fraction, note=self.note)
        self._calm += 1
        if self.note is not None and self.note.startswith("all motion") and self._calm > 3 * self.options.warmup:
            self.note = None  # the remark stays until the picture has been calm for a while (no flapping)
        moving = cv2.dilate(moving, self._kernel)
        # pixels that did not change since the last frame are learnt at the full rate even where they differ from the
        # background: a ghost (what a passing object or a change of light left in the background) fades in ~1/learn
        # frames, and a parked object joins the background; changing pixels (a moving object) are learnt slowly
        prev, self._prev = self._prev, gray
        steady = cv2.threshold(cv2.absdiff(gray, prev), self.options.threshold / 2, 255, cv2.THRESH_BINARY_INV)[1]
        slow = cv2.bitwise_and(moving, cv2.bitwise_not(steady.astype(np.uint8)))
        if abs(gain - 1.0) > 0.02:  # the light is changing: follow it fast (saturated or uneven parts do not scale)
            self._bg = ref.astype(np.float32)  # moving pixels keep the scaled background (no ghost of a passing object)
            cv2.accumulateWeighted(gray, self._bg, 0.5, mask=cv2.bitwise_not(moving))
        else:
            cv2.accumulateWeighted(gray, self._bg, self.options.learn, mask=cv2.bitwise_not(slow))
            cv2.accumulateWeighted(gray, self._bg, self.options.learn / 4, mask=slow)
        boxes = self._blobs(moving, w / gray.shape[1], h / gray.shape[0])
        return MotionResult("motion" if len(boxes) else "still", boxes, fraction, note=self.note)

    def _small(self, frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        sw = min(int(self.options.width), w)
        sh = max(1, round(h * sw / w))
        small = frame
        while small.shape[1] >= 2 * sw:  # halving with INTER_LINEAR averages 2x2 pixels; 3x cheaper than one INTER_AREA
            small = cv2.resize(small, (small.shape[1] // 2, small.shape[0] // 2), interpolation=cv2.INTER_LINEAR)
        small = cv2.resize(small, (sw, sh), interpolation=cv2.INTER_AREA)
        if small.ndim == 3:
            small = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.shape[2] == 3 else small[..., 0]
        return cv2.GaussianBlur(small, (3, 3), 0).astype(np.float32)

    def _learn_warmup(self, gray: np.ndarray) -> None:
        self._seen += 1
        self._prev = gray
        if self._bg is None:
            self._bg = gray.copy()
        else:
            cv2.accumulateWeighted(gray, self._bg, 1.0 / self._seen)  # a plain mean of the warm-up frames

    def _blobs(self, mask: np.ndarray, sx: float, sy: float) -> np.ndarray:
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        if n <= 1:
            return np.zeros((0, 4), np.float32)
        x, y, bw, bh, area = (stats[1:, k].astype(np.float32) for k in range(5))
        keep = area * sx * sy >= self.options.min_area
        boxes = np.stack([x * sx, y * sy, (x + bw) * sx, (y + bh) * sy], 1)[keep]
        return boxes.astype(np.float32)


def _whole(w: int, h: int) -> np.ndarray:
    return np.array([[0, 0, w, h]], np.float32)
