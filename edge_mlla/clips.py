"""Video clips made from the bundled data, for demos, tests and benchmarks: the bundled 640x480 panning clip
(:func:`bundled_clip`, :func:`make_pan_clip`) and fixed-camera scenes with known ground truth (:class:`FixedScene`:
cells crossing a static background in bursts, idle stretches, a lighting change, sensor noise; any size and rate)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_mlla.errors import ConfigError, MissingFileError, OutputNotWritableError

DATA = Path(__file__).resolve().parent / "data"
CLIP = DATA / "clips" / "bccd_pan.mp4"


def bundled_clip() -> Path:
    """Path of the bundled 640x480 BCCD panning clip (``edge_mlla/data/clips/bccd_pan.mp4``).

    Example:
        >>> bundled_clip().name
        'bccd_pan.mp4'
    """
    if not CLIP.is_file():
        raise MissingFileError(
            f"bundled clip not found: {CLIP} (this install lacks the package data; make one with "
            "edge_mlla.clips.make_pan_clip(path))"
        )
    return CLIP


def pan_offset(frame: int, frames: int = 300, strip_width: int = 2560, width: int = 640) -> float:
    """Left edge (strip pixels) of frame ``frame`` of a :func:`make_pan_clip` clip: a constant-speed pan
    from 0 to ``strip_width - width`` over ``frames`` frames.

    Example:
        >>> pan_offset(0), pan_offset(299)
        (0.0, 1920.0)
    """
    return frame * (strip_width - width) / max(1, frames - 1)


def make_pan_clip(
    out: str | os.PathLike,
    images: Sequence[str | os.PathLike] | None = None,
    frames: int = 300,
    fps: float = 30.0,
    size: tuple[int, int] = (640, 480),
) -> Path:
    """Write a deterministic clip that pans a ``size`` (width, height) window across images laid side by side.

    Default images: the first four BCCD test images (sorted by name), so the window moves right at
    ``(4 * 640 - 640) / 299 = 6.42`` px per frame and objects move left by as much (:func:`pan_offset`).
    Sub-pixel shifts use bilinear interpolation; the codec is mp4v. The file is written to a temporary
    name beside ``out`` and renamed.

    Example:
        >>> make_pan_clip("runs/pan.mp4", frames=30)   # doctest: +SKIP
        PosixPath('runs/pan.mp4')
    """
    w, h = (int(v) for v in size)
    if frames < 2 or w < 16 or h < 16 or not fps > 0:
        raise ConfigError(f"make_pan_clip needs frames >= 2, a size of at least 16x16 and fps > 0, got {frames}, {size}, {fps}")
    if images is None:
        images = sorted((DATA / "bccd" / "images" / "test").glob("*.jpg"))[:4]
    tiles = []
    for p in images:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise MissingFileError(f"make_pan_clip: {p} is missing or not an image")
        tiles.append(cv2.resize(img, (round(img.shape[1] * h / img.shape[0]), h), interpolation=cv2.INTER_AREA))
    if not tiles:
        raise MissingFileError("make_pan_clip: no images (the bundled BCCD test images are missing)")
    strip = np.concatenate(tiles, axis=1)
    if strip.shape[1] < w:
        raise ConfigError(f"make_pan_clip: the images are {strip.shape[1]} px wide side by side; need at least {w}")

    def frames_() -> Iterator[np.ndarray]:
        for f in range(frames):
            x0 = pan_offset(f, frames, strip.shape[1], w)
            m = np.float32([[1, 0, -x0], [0, 1, 0]])
            yield cv2.warpAffine(strip, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)

    return write_video(out, frames_(), float(fps), (w, h))


def write_video(out: str | os.PathLike, frames: Iterable[np.ndarray], fps: float, size: tuple[int, int]) -> Path:
    """Write BGR ``frames`` of ``size`` (w, h) to an mp4v video at ``out``, atomically (a temporary file in the same
    folder, then a rename: a reader never sees half a clip), readable by everyone (0644, as any file the user makes;
    mkstemp's 0600 would hide the clip from a container running as another user)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".mp4", dir=out.parent)
    os.close(fd)
    writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), float(fps), tuple(size))
    try:
        if not writer.isOpened():
            raise OutputNotWritableError(f"cannot write {out} with the mp4v codec")
        for frame in frames:
            writer.write(frame)
    except BaseException:
        writer.release()
        Path(tmp).unlink(missing_ok=True)
        raise
    writer.release()
    os.chmod(tmp, 0o644)
    os.replace(tmp, out)
    return out


# ------------------------------------------------------------------------------------------------ fixed-camera scenes
@dataclass(frozen=True)
class SceneOptions:
    """What a :class:`FixedScene` shows: ``size`` (width, height) and ``fps``, ``seconds`` long; about ``idle`` of
    the time nothing moves; each burst of activity sends ``burst`` (min, max) cells across the frame at ``speed``
    (frame widths a second) with sizes ``scale`` times their BCCD size at 640x480 (small and large objects);
    ``parked`` cells never move; ``lighting`` = (when, factor): at that fraction of the clip the brightness moves
    to ``factor`` over one second (None: never); ``noise``: sensor noise (standard deviation, gray levels);
    ``seed`` makes it another scene."""

    size: tuple[int, int] = (640, 480)
    fps: float = 15.0
    seconds: float = 60.0
    idle: float = 0.7
    burst: tuple[int, int] = (1, 3)
    parked: int = 2
    scale: tuple[float, float] = (0.6, 1.6)
    speed: tuple[float, float] = (0.08, 0.2)
    lighting: tuple[float, float] | None = (0.5, 1.3)
    noise: float = 2.0
    seed: int = 0

    def __post_init__(self) -> None:
        w, h = self.size
        if w < 64 or h < 48 or not self.fps > 0 or not self.seconds > 0 or not 0 <= self.idle < 1:
            raise ConfigError(f"SceneOptions needs a size of at least 64x48, fps > 0, seconds > 0 and 0 <= idle < 1, got {self}")
        if not 1 <= self.burst[0] <= self.burst[1] or not 0 < self.scale[0] <= self.scale[1]:
            raise ConfigError(f"SceneOptions needs 1 <= burst[0] <= burst[1] and 0 < scale[0] <= scale[1], got {self}")


@dataclass(frozen=True)
class _Mover:
    sprite: int
    start: int
    frames: int
    x0: float
    y0: float
    vx: float  # pixels a frame
    vy: float


class FixedScene:
    """A deterministic fixed-camera clip with known ground truth: cells cut from the bundled BCCD training images
    (soft-edged) crossing a static background in bursts, with idle stretches, parked cells, one lighting change and
    sensor noise (see :class:`SceneOptions`). Frames are rendered on demand; the same options give the same pixels.

    Example:
        >>> scene = FixedScene(SceneOptions(size=(320, 240), seconds=4, seed=1))
        >>> len(scene), scene.frame(0).shape
        (60, (240, 320, 3))
        >>> boxes, classes, moving = scene.truth(0)
        >>> boxes.shape[1], bool(moving.any()) == scene.active(0)
        (4, True)
    """

    def __init__(self, options: SceneOptions | None = None) -> None:
        self.options = opts = options or SceneOptions()
        self.width, self.height = (int(v) for v in opts.size)
        self.fps = float(opts.fps)
        self.n = max(2, int(round(opts.seconds * opts.fps)))
        rng = np.random.default_rng(opts.seed)
        self._sprites = _sprites(rng, self.width / 640.0, opts.scale, 24)
        self._background = self._make_background(rng)
        self._movers = self._make_movers(rng)
        noise = [rng.normal(0.0, opts.noise, (self.height, self.width, 3)) for _ in range(4)]
        self._noise = [(np.clip(z, 0, 255).astype(np.uint8), np.clip(-z, 0, 255).astype(np.uint8)) for z in noise]

    def __len__(self) -> int:
        return self.n

    def _make_background(self, rng: np.random.Generator) -> np.ndarray:
        files = sorted((DATA / "bccd" / "images" / "train").glob("*.jpg"))
        if not files:
            raise MissingFileError("FixedScene needs the bundled BCCD training images (edge_mlla/data/bccd/images/train)")
        img = cv2.imread(str(files[int(rng.integers(len(files)))]), cv2.IMREAD_COLOR)
        smooth = cv2.resize(cv2.resize(img, (8, 6), interpolation=cv2.INTER_AREA), (self.width, self.height),
                            interpolation=cv2.INTER_CUBIC)  # fmt: skip  (the plasma's colour, without cells)
        texture = cv2.GaussianBlur(rng.normal(0, 6, (self.height, self.width)).astype(np.float32), (0, 0), 2)[..., None]
        bg = np.clip(smooth.astype(np.float32) + texture, 0, 255).astype(np.uint8)
        self._parked: list[tuple[int, int, int]] = []
        for _ in range(self.options.parked):
            k = int(rng.integers(len(self._sprites)))
            sw, sh = self._sprites[k][0].shape[1], self._sprites[k][0].shape[0]
            x, y = int(rng.integers(0, max(1, self.width - sw))), int(rng.integers(0, max(1, self.height - sh)))
            _paste(bg, self._sprites[k], x, y)
            self._parked.append((k, x, y))
        return bg

    def _make_movers(self, rng: np.random.Generator) -> list[_Mover]:
        opts, movers, t = self.options, [], 0.0
        t = rng.uniform(0.2, 1.0) * opts.seconds * opts.idle / 4 * self.fps  # the clip opens idle
        while t < self.n:
            end = t
            for _ in range(int(rng.integers(opts.burst[0], opts.burst[1] + 1))):
                k = int(rng.integers(len(self._sprites)))
                sw, sh = self._sprites[k][0].shape[1], self._sprites[k][0].shape[0]
                speed = rng.uniform(*opts.speed) * self.width / self.fps * rng.choice([-1, 1])
                start = int(t + rng.uniform(0, 0.5) * self.fps)
                frames = int((self.width + sw) / abs(speed)) + 1
                x0 = -sw if speed > 0 else self.width
                y0 = rng.uniform(0, self.height - sh)
                vy = rng.uniform(-0.15, 0.15) * abs(speed)
                movers.append(_Mover(k, start, frames, float(x0), float(y0), float(speed), float(vy)))
                end = max(end, start + frames)
            busy = end - t
            t = end + busy * opts.idle / (1 - opts.idle) * rng.uniform(0.7, 1.3) if opts.idle else end
        return movers

    def _visible(self, i: int) -> list[tuple[_Mover, int, int]]:
        out = []
        for m in self._movers:
            if m.start <= i < m.start + m.frames:
                f = i - m.start
                out.append((m, int(round(m.x0 + m.vx * f)), int(round(m.y0 + m.vy * f))))
        return out

    def brightness(self, i: int) -> float:
        """The lighting factor of frame ``i`` (1 before the change)."""
        if self.options.lighting is None:
            return 1.0
        when, factor = self.options.lighting
        p = (i - when * self.n) / self.fps  # seconds since the change began
        return float(1.0 + (factor - 1.0) * min(1.0, max(0.0, p)))

    def frame(self, i: int) -> np.ndarray:
        """Frame ``i`` (BGR uint8)."""
        if not 0 <= i < self.n:
            raise ConfigError(f"frame {i} is outside the scene's {self.n} frames")
        out = self._background.copy()
        for m, x, y in self._visible(i):
            _paste(out, self._sprites[m.sprite], x, y)
        b = self.brightness(i)
        if b != 1.0:
            out = cv2.convertScaleAbs(out, alpha=b)
        pos, neg = self._noise[(i * 3) % len(self._noise)]
        return cv2.subtract(cv2.add(out, pos), neg)

    def truth(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ground truth of frame ``i``: xyxy boxes (n, 4) float32 clipped to the frame (cells at least half in view),
        class ids (n,) and whether each box moves (n,) bool; parked cells first."""
        items = [(k, x, y, False) for k, x, y in self._parked] + [(m.sprite, x, y, True) for m, x, y in self._visible(i)]
        boxes, classes, moving = [], [], []
        for k, x, y, mv in items:
            (bx1, by1, bx2, by2), cls = self._sprites[k][2], self._sprites[k][3]
            box = np.array([x + bx1, y + by1, x + bx2, y + by2], np.float32)
            clipped = np.clip(box, 0, [self.width, self.height, self.width, self.height])
            area = (box[2] - box[0]) * (box[3] - box[1])
            if (clipped[2] - clipped[0]) * (clipped[3] - clipped[1]) >= 0.5 * area:
                boxes.append(clipped)
                classes.append(cls)
                moving.append(mv)
        return (np.array(boxes, np.float32).reshape(-1, 4), np.array(classes, np.int64), np.array(moving, bool))

    def active(self, i: int) -> bool:
        """Whether anything moves in frame ``i``."""
        return bool(self._visible(i))

    def write(self, out: str | os.PathLike, frames: int | None = None) -> Path:
        """Write the first ``frames`` frames (all by default) to an mp4v video at the scene's fps; returns its path."""
        n = self.n if frames is None else min(self.n, int(frames))
        return write_video(out, (self.frame(i) for i in range(n)), self.fps, (self.width, self.height))


def _sprites(rng: np.random.Generator, zoom: float, scale: tuple[float, float], count: int) -> list[tuple]:
    """Soft-edged cell cut-outs from BCCD training images: (bgr, alpha, box inside the sprite, class id)."""
    labels = sorted((DATA / "bccd" / "labels" / "train").glob("*.txt"))
    found: list[tuple] = []
    for lab in [labels[int(i)] for i in rng.permutation(len(labels))]:
        img = cv2.imread(str(DATA / "bccd" / "images" / "train" / (lab.stem + ".jpg")), cv2.IMREAD_COLOR)
        if img is None:
            continue
        h, w = img.shape[:2]
        for line in lab.read_text().split("\n"):
            parts = line.split()
            if len(parts) != 5:
                continue
            c, cx, cy, bw, bh = int(parts[0]), *(float(v) for v in parts[1:])
            x1, y1, x2, y2 = (cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h
            m = 0.12 * max(x2 - x1, y2 - y1)
            if x1 - m < 0 or y1 - m < 0 or x2 + m > w or y2 + m > h or min(x2 - x1, y2 - y1) < 12:
                continue
            found.append(_sprite(img[int(y1 - m) : int(y2 + m), int(x1 - m) : int(x2 + m)], m, zoom * rng.uniform(*scale), c))
            break  # one cell per image: variety
        if len(found) >= count:
            break
    if not found:
        raise MissingFileError("FixedScene found no labelled cells in the bundled BCCD training set")
    return found


def _sprite(crop: np.ndarray, margin: float, s: float, cls: int) -> tuple:
    crop = cv2.resize(crop, (max(4, round(crop.shape[1] * s)), max(4, round(crop.shape[0] * s))), interpolation=cv2.INTER_AREA)
    h, w = crop.shape[:2]
    alpha = np.zeros((h, w), np.float32)
    cv2.ellipse(alpha, (w // 2, h // 2), (max(1, int(w / 2 - margin * s / 2)), max(1, int(h / 2 - margin * s / 2))),
                0, 0, 360, 1.0, -1)  # fmt: skip
    alpha = cv2.GaussianBlur(alpha, (0, 0), max(0.8, margin * s / 3))[..., None]
    m = margin * s
    return crop, alpha, (m, m, w - m, h - m), cls


def _paste(dst: np.ndarray, sprite: tuple, x: int, y: int) -> None:
    img, alpha = sprite[0], sprite[1]
    h, w = img.shape[:2]
    x1, y1, x2, y2 = max(0, x), max(0, y), min(dst.shape[1], x + w), min(dst.shape[0], y + h)
    if x1 >= x2 or y1 >= y2:
        return
    a = alpha[y1 - y : y2 - y, x1 - x : x2 - x]
    src = img[y1 - y : y2 - y, x1 - x : x2 - x].astype(np.float32)
    region = dst[y1:y2, x1:x2]
    region[:] = (src * a + region.astype(np.float32) * (1 - a) + 0.5).astype(np.uint8)
