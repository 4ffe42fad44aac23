"""Run a :class:`~edge_mlla.Detector` on video streams without falling behind them, and keep them running.

:class:`StreamRunner` reads each source (camera, video file, ``rtsp://`` / ``http://`` stream, image
folder) in its own capture thread and hands out :class:`StreamResult` objects in frame order:

* **Live sources** (cameras, stream URLs) keep only their newest frame: when inference is slower than
  the camera, stale frames are dropped instead of queueing up. Files and image folders are processed
  frame by frame (``realtime=True`` replays a file at its own frame rate like a camera).
* **Inference in flight**: up to ``max_inflight`` calls are in the backend at once (OpenVINO infer
  requests in a thread pool, the ONNX Runtime pool) while the next frame is read and preprocessed.
* **Reconnect**: a live source whose read fails, raises, or stalls for ``Reconnect.watchdog`` seconds is
  reopened with capped exponential backoff; its state (``connected``, ``lost``, ``reconnecting``,
  ``gave_up``, ...) is in :attr:`StreamRunner.status` and goes to an optional ``on_status`` callback.
* **Many sources, one Detector**: sources are served round-robin; a fixed-batch model gets one batch
  per call (padded when fewer frames are ready), a dynamic-batch model one frame per source per call.
  Every result names its source, and results of one source come out in that source's order.
* **Tracking**: ``track=True`` runs supervision's ByteTrack per source (imported only then) and fills
  ``Detections.tracker_id``; :class:`LineCounter` counts line crossings with supervision's ``LineZone``.
* **Timing**: each result carries a :class:`FrameTiming` (capture, wait, preprocess, infer, postprocess,
  track, latency); :attr:`StreamRunner.stats` has the counts, per-stage means and FPS, per source too.

Example:
    >>> from edge_mlla import Detector
    >>> from edge_mlla.stream import StreamRunner
    >>> det = Detector("model.xml")                                       # doctest: +SKIP
    >>> with StreamRunner(det, ["rtsp://cam1/stream", 0], track=True) as run:  # doctest: +SKIP
    ...     for r in run:
    ...         print(r.source, r.index, len(r.detections), r.timing.as_ms()["latency"])
    >>> run.stats                                                         # doctest: +SKIP
    StreamStats(read=912, processed=301, dropped=611, fps=14.8, ...)
"""

from __future__ import annotations

import collections
import glob as _glob
import logging
import os
import re
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Union

import cv2
import numpy as np

from edge_mlla import ops
from edge_mlla.errors import (
    ConfigError,
    ImageReadError,
    InputTypeError,
    MissingDependencyError,
    MissingFileError,
    OutputNotWritableError,
    SourceError,
)
from edge_mlla.results import Detections

LOGGER = logging.getLogger("edge_mlla")
_LIVE_PREFIXES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
#: every value :attr:`SourceStatus.state` takes
STATES = ("connecting", "connected", "lost", "reconnecting", "gave_up", "ended", "stopped")
TRACK_INSTALL = "pip install 'edge-mlla[track]'"
CLIP = Path(__file__).resolve().parent / "data" / "clips" / "bccd_pan.mp4"


class FrameSource(Protocol):
    """What the runner reads from: ``cv2.VideoCapture`` or anything with the same three methods."""

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def get(self, prop: int) -> float: ...

    def release(self) -> None: ...


SourceLike = Union[int, str, os.PathLike, FrameSource, Callable[[], FrameSource]]


# ------------------------------------------------------------------------------------------------ public records
@dataclass(frozen=True)
class Reconnect:
    """How a live source that fails is reopened: capped exponential backoff and a stall watchdog.

    Attempt ``k`` (1, 2, ...) waits ``min(max_delay, initial * factor ** (k - 1))`` seconds before opening
    the source again; after ``max_tries`` failed attempts in a row (None: never) the source gives up. A
    source that delivers no frame for ``watchdog`` seconds (None: no watchdog) counts as lost. The try
    count starts again at the first frame read after a reconnect.

    Example:
        >>> [Reconnect(initial=0.5, max_delay=3).delay(k) for k in (1, 2, 3, 4, 5)]
        [0.5, 1.0, 2.0, 3.0, 3.0]
    """

    initial: float = 0.5
    factor: float = 2.0
    max_delay: float = 10.0
    max_tries: int | None = 10
    watchdog: float | None = 5.0

    def __post_init__(self) -> None:
        if not (self.initial >= 0 and self.max_delay >= 0 and self.factor >= 1):
            raise ConfigError(f"Reconnect needs initial >= 0, max_delay >= 0 and factor >= 1, got {self}")
        if self.max_tries is not None and int(self.max_tries) < 1:
            raise ConfigError(f"Reconnect.max_tries must be >= 1 or None (retry forever), got {self.max_tries}")
        if self.watchdog is not None and not self.watchdog > 0:
            raise ConfigError(f"Reconnect.watchdog must be > 0 seconds or None, got {self.watchdog}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before reopen attempt ``attempt`` (1-based)."""
        return float(min(self.max_delay, self.initial * self.factor ** max(0, attempt - 1)))


@dataclass(frozen=True)
class SourceStatus:
    """The connection state of one source, as :attr:`StreamRunner.status` and ``on_status`` give it.

    ``state`` is one of :data:`STATES`: ``connecting`` (opened, no frame yet), ``connected`` (frames
    arrive), ``lost`` (a read failed, raised or stalled; ``error`` says which), ``reconnecting`` (reopen
    attempt ``attempts`` in ``retry_in`` seconds), ``gave_up`` (``attempts`` reopen tries failed),
    ``ended`` (a file or a source that cannot be reopened has no more frames) or ``stopped``.
    ``reconnects`` counts successful reconnects; ``since`` is the ``time.monotonic()`` of the change.
    """

    source: int
    name: str
    state: str
    attempts: int = 0
    reconnects: int = 0
    retry_in: float | None = None
    error: str | None = None
    since: float = 0.0

    def __str__(self) -> str:
        text = f"source {self.source} ({self.name}): {self.state}"
        if self.state == "reconnecting":
            text += f", try {self.attempts} in {self.retry_in:.1f} s"
        elif self.state == "gave_up":
            text += f" after {self.attempts} tries"
        return text + (f" ({self.error})" if self.error else "")


@dataclass(frozen=True)
class SourceInfo:
    """What the runner knows about one source: its name, whether it is live, its nominal frame rate."""

    index: int
    name: str
    live: bool
    drop_stale: bool
    fps: float


@dataclass(frozen=True)
class FrameTiming:
    """Seconds one frame spent per stage.

    ``capture``: the source's ``read()`` (decode; for a camera it includes waiting for the frame);
    ``wait``: read -> handed to the detector (queued behind inference); ``preprocess`` / ``infer`` /
    ``postprocess``: the detector's :class:`~edge_mlla.results.Timing`, divided by the frames of the
    batch it ran in (``batch``); ``infer`` includes waiting for a free infer request; ``track``:
    the tracker update; ``latency``: read -> result handed out.

    Example:
        >>> FrameTiming(0.002, 0.0, 0.003, 0.040, 0.001, 0.0, 0.050).as_ms()["infer"]
        40.0
    """

    capture: float = 0.0
    wait: float = 0.0
    preprocess: float = 0.0
    infer: float = 0.0
    postprocess: float = 0.0
    track: float = 0.0
    latency: float = 0.0
    batch: int = 1

    STAGES = ("capture", "wait", "preprocess", "infer", "postprocess", "track", "latency")

    def as_ms(self) -> dict[str, float]:
        """Stage -> milliseconds."""
        return {k: 1000.0 * getattr(self, k) for k in self.STAGES}


@dataclass(frozen=True)
class StreamResult:
    """One processed frame: the BGR ``frame``, its ``detections``, its ``index`` in its source, when it was
    read (``timestamp``, ``time.monotonic()``), ``latency`` seconds from read to result, which ``source``
    (index into the runner's sources, and its ``source_name``) and the per-stage ``timing``."""

    frame: np.ndarray
    detections: Detections
    index: int
    timestamp: float
    latency: float
    source: int = 0
    source_name: str = ""
    timing: FrameTiming = field(default_factory=FrameTiming)


@dataclass(frozen=True)
class StreamStats:
    """Frames ``read`` from the source(s), ``processed``, ``dropped`` as stale; processed frames per second
    since iteration started (``fps`` over ``elapsed`` seconds); ``reconnects``; mean milliseconds per
    stage (``stages_ms``, keys of :attr:`FrameTiming.STAGES`); ``sources``: the same per source."""

    read: int = 0
    processed: int = 0
    dropped: int = 0
    fps: float = 0.0
    reconnects: int = 0
    elapsed: float = 0.0
    stages_ms: dict[str, float] = field(default_factory=dict)
    sources: tuple[StreamStats, ...] = ()


# ------------------------------------------------------------------------------------------------ opening sources
def _mask(url: str) -> str:
    """A URL with its password hidden (``rtsp://user:***@host``), for names and logs."""
    return re.sub(r"(://[^/:@]+):[^/@]*@", r"\1:***@", url)


def source_name(source: Any) -> str:
    """A printable name for a source (URL passwords masked).

    Example:
        >>> source_name("rtsp://admin:secret@10.0.0.5/live"), source_name(0)
        ('rtsp://admin:***@10.0.0.5/live', 'camera 0')
    """
    if isinstance(source, bool):
        return repr(source)
    if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
        return f"camera {int(source)}"
    if isinstance(source, (str, os.PathLike)):
        return _mask(str(source))
    return getattr(source, "name", None) or type(source).__name__


def _is_url(source: Any) -> bool:
    return isinstance(source, str) and source.lower().startswith(_LIVE_PREFIXES)


def _cameras() -> str:
    found = sorted(_glob.glob("/dev/video*"))
    return ", ".join(found) if found else "none found under /dev/video*"


class ImageFolderSource:
    """A folder of images read as a video, sorted by name, like a file source (which files are images and how
    they are read is :func:`edge_mlla.ops.list_images` / :func:`edge_mlla.ops.read_image`'s rule).

    Images that cannot be decoded are skipped with a warning (``skipped`` counts them).

    Example:
        >>> src = ImageFolderSource("edge_mlla/data/bccd/images/test")
        >>> ok, frame = src.read()
        >>> ok, frame.shape
        (True, (480, 640, 3))
    """

    def __init__(self, folder: str | os.PathLike, fps: float = 30.0) -> None:
        self.folder = Path(folder)
        self.files = ops.list_images(self.folder)  # MissingFileError when it is not a folder
        if not self.files:
            raise MissingFileError(f"no images in folder {self.folder} (expected .jpg, .png, .bmp, .tif, .webp, ... files)")
        self.fps = float(fps)
        self.name = str(self.folder)
        self.skipped = 0
        self._i = 0

    def isOpened(self) -> bool:  # noqa: N802 (cv2.VideoCapture's name)
        return True

    def read(self) -> tuple[bool, np.ndarray | None]:
        while self._i < len(self.files):
            path = self.files[self._i]
            self._i += 1
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # a truncated image is used as decoded (strict=False)
                    return True, ops.read_image(path, strict=False)
            except (ImageReadError, MissingFileError) as e:
                self.skipped += 1
                LOGGER.warning("skipping %s", e)
        return False, None

    def get(self, prop: int) -> float:
        if prop == cv2.CAP_PROP_FPS:
            return self.fps
        if prop == cv2.CAP_PROP_FRAME_COUNT:
            return float(len(self.files))
        return 0.0

    def release(self) -> None:
        self._i = len(self.files)


def _capture_params(open_timeout: float | None, read_timeout: float | None) -> list[int]:
    params: list[int] = []
    if open_timeout:
        params += [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(open_timeout * 1000)]
    if read_timeout:
        params += [cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(read_timeout * 1000)]
    return params


def open_source(
    source: SourceLike, open_timeout: float | None = 10.0, read_timeout: float | None = 5.0
) -> tuple[FrameSource, bool]:
    """Open a camera index, a video file, a stream URL or an image folder; returns ``(capture, is_live)``.

    A capture object (anything with ``read`` and ``release``) is passed through and counts as live; a
    callable is called and its result used. Opening a URL waits at most ``open_timeout`` seconds and a read
    at most ``read_timeout`` (OpenCV's ``CAP_PROP_OPEN_TIMEOUT_MSEC`` / ``CAP_PROP_READ_TIMEOUT_MSEC``, which
    its FFMPEG backend honours). Cameras open without them: OpenCV's camera backends (V4L2, DirectShow,
    MSMF) reject properties they do not support, and a rejected open parameter fails the whole open; a
    camera that stops delivering is the runner's watchdog's job.

    Raises ``MissingFileError`` (no such file or folder), ``SourceError`` (a camera, URL or file that does
    not open), ``InputTypeError`` (not a source).

    Example:
        >>> open_source("missing.mp4")
        Traceback (most recent call last):
        ...
        edge_mlla.errors.MissingFileError: video source not found: missing.mp4 (expected a camera index, a video file, an image folder or an rtsp/http URL)
    """
    if hasattr(source, "read") and hasattr(source, "release"):
        return source, True  # a caller-made capture: treat as live (we cannot know its pacing)
    if callable(source):
        cap = source()
        if not (hasattr(cap, "read") and hasattr(cap, "release")):
            raise InputTypeError(f"a source factory must return a capture (read/get/release), got {type(cap).__name__}")
        if hasattr(cap, "isOpened") and not cap.isOpened():
            raise SourceError(f"source factory {source_name(source)} returned a capture that is not opened")
        return cap, True
    if isinstance(source, bool) or not isinstance(source, (int, str, os.PathLike)):
        raise InputTypeError(
            f"source must be a camera index, a video path, an image folder or a URL, got {type(source).__name__}"
        )
    if isinstance(source, str) and source.strip().isdigit():
        source = int(source)
    params = _capture_params(open_timeout, read_timeout)
    if isinstance(source, int):
        cap = cv2.VideoCapture(source)  # no timeout params: camera backends fail the open on unsupported ones
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"camera {source} could not be opened (no such device, or busy); cameras here: {_cameras()}")
        return cap, True
    if _is_url(source):
        cap = cv2.VideoCapture(source, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            wait = f" within {open_timeout:g} s" if open_timeout else ""
            raise SourceError(
                f"could not open stream {_mask(source)}{wait} (unreachable host, refused connection, wrong path, "
                "or a stream FFMPEG cannot read; expected e.g. rtsp://host:554/path or http://host:port/video.mjpg)"
            )
        return cap, True
    path = Path(source)
    if path.is_dir():
        return ImageFolderSource(path), False
    if not path.is_file():
        raise MissingFileError(
            f"video source not found: {path} (expected a camera index, a video file, an image folder or an rtsp/http URL)"
        )
    cap = cv2.VideoCapture(str(path))  # a local file: nothing to time out, and no backend may reject the params
    if not cap.isOpened():
        cap.release()
        raise SourceError(f"{path} could not be opened as a video (not a video, or a codec this OpenCV build lacks)")
    return cap, False


# ------------------------------------------------------------------------------------------------ tracking
def _import_supervision() -> Any:
    try:
        import supervision as sv
    except ImportError as e:
        raise MissingDependencyError(f"tracking and line counting need supervision: {TRACK_INSTALL}") from e
    return sv


class Tracker:
    """ByteTrack for one stream: our :class:`Detections` in, the same with ``tracker_id`` out.

    Uses supervision's ``ByteTrack`` (supervision < 0.31); supervision 0.31 dropped it for the ``trackers``
    package, whose ``ByteTrackTracker`` is used when present. ``options`` go to the tracker's constructor.

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
                f"track=True needs ByteTrack, which supervision {sv.__version__} no longer has: "
                f"{TRACK_INSTALL} (supervision>=0.30,<0.31), or pip install trackers"
            ) from e
        self._impl = ByteTrackTracker(frame_rate=self.frame_rate, **options)
        self._update = self._impl.update
        self.kind = "trackers ByteTrackTracker"

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


# ------------------------------------------------------------------------------------------------ the runner
@dataclass
class _Frame:
    frame: np.ndarray
    index: int
    t_read: float  # monotonic
    capture: float  # seconds in read()
    src: int = 0
    t_submit: float = 0.0  # monotonic
    t_done: float = 0.0  # monotonic, when its inference call finished


class _Source:
    """Mutable per-source state; every field is guarded by the runner's condition lock."""

    STAGE_KEYS = FrameTiming.STAGES

    def __init__(self, index: int, spec: Any, cap: FrameSource, live: bool) -> None:
        self.index, self.spec, self.cap, self.live = index, spec, cap, live
        self.name = source_name(spec)
        self.reopenable = not (hasattr(spec, "read") and hasattr(spec, "release"))  # a capture object cannot be reopened
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0 < fps < 1000 else 30.0
        self.drop_stale = False
        self.queue: collections.deque[_Frame] = collections.deque()
        self.capacity = 2
        self.gen = 0
        self.next_index = 0
        self.last_frame = time.monotonic()
        self.finished = False
        self.attempts = 0
        self.lost = False
        self.read = self.processed = self.dropped = self.reconnects = 0
        self.sums = dict.fromkeys(self.STAGE_KEYS, 0.0)
        self.status = SourceStatus(index, self.name, "connecting", since=time.monotonic())
        self.threads: list[threading.Thread] = []
        self.tracker: Tracker | None = None
        self.error: BaseException | None = None


class StreamRunner:
    """Iterate over detections of one or several video sources, live-safe, reconnecting.

    Args:
        detector: a :class:`~edge_mlla.Detector` (anything with ``submit(frame) -> Future[Detections]``;
            ``predict(list)`` and ``batch`` are used for batched inference when present).
        source: a camera index (``0``), a video path, an image folder, an ``rtsp://`` / ``http://`` URL, a
            ``cv2.VideoCapture``-like object, a zero-argument callable returning one (reopened by calling it
            again), or a list of those for several sources.
        drop_stale: keep only the newest frame when inference falls behind. Default: True for live
            sources (cameras, URLs, capture objects, callables), False for files and folders.
        realtime: replay files at their frame rate (then ``drop_stale`` defaults to True).
        max_inflight: inference calls in flight at once; None (default): the backend's ``optimal_requests`` + 1, so
            every infer request stays busy while the next frame is read and preprocessed (at least 2;
            OpenVINO's throughput hint wants its number of infer requests + 1).
        max_frames: stop each source after this many read frames (None: until it ends or :meth:`stop`).
        reconnect: a :class:`Reconnect` policy for live sources, True (the default policy) or False (a
            failed live source ends).
        on_status: called with a :class:`SourceStatus` on every state change, from a capture thread
            (keep it quick; exceptions are logged and ignored).
        track: run ByteTrack per source (supervision) and fill ``Detections.tracker_id``.
        tracker_options: keyword arguments for the tracker (e.g. ``lost_track_buffer=30``).
        batch: frames per inference call; default: the model's fixed batch, or one frame per source for a
            dynamic-batch model (capped at 16).
        loop: restart files and folders at their end (demos, soak tests).
        open_timeout, read_timeout: seconds OpenCV may block opening / reading a camera or URL.

    Raises ``MissingFileError`` / ``SourceError`` / ``InputTypeError`` when a source cannot be opened (no
    retry at start: a wrong address fails fast), ``MissingDependencyError`` for ``track=True`` without
    supervision, ``ConfigError`` for bad values.

    Example:
        >>> run = StreamRunner(det, "rtsp://cam/stream", reconnect=Reconnect(max_tries=None),   # doctest: +SKIP
        ...                    on_status=print)
        >>> for r in run:                                    # doctest: +SKIP
        ...     print(r.index, r.timing.as_ms()["latency"], run.status[0].state)
    """

    def __init__(
        self,
        detector: Any,
        source: SourceLike | Sequence[SourceLike],
        drop_stale: bool | None = None,
        realtime: bool = False,
        max_inflight: int | None = None,
        max_frames: int | None = None,
        *,
        reconnect: Reconnect | bool = True,
        on_status: Callable[[SourceStatus], Any] | None = None,
        track: bool = False,
        tracker_options: dict[str, Any] | None = None,
        batch: int | None = None,
        loop: bool = False,
        open_timeout: float | None = 10.0,
        read_timeout: float | None = 5.0,
    ) -> None:
        if not callable(getattr(detector, "submit", None)):
            raise InputTypeError(f"detector must have submit(frame) -> Future (a Detector), got {type(detector).__name__}")
        if max_inflight is None:
            max_inflight = max(2, int(getattr(getattr(detector, "backend", None), "optimal_requests", 1) or 1) + 1)
        if isinstance(max_inflight, bool) or not isinstance(max_inflight, (int, np.integer)) or max_inflight < 1:
            raise ConfigError(f"max_inflight must be an int >= 1, got {max_inflight!r}")
        if max_frames is not None and (not isinstance(max_frames, (int, np.integer)) or max_frames < 1):
            raise ConfigError(f"max_frames must be an int >= 1 or None, got {max_frames!r}")
        if reconnect is True:
            reconnect = Reconnect()
        if reconnect is not False and not isinstance(reconnect, Reconnect):
            raise InputTypeError(f"reconnect must be a Reconnect policy, True or False, got {type(reconnect).__name__}")
        if on_status is not None and not callable(on_status):
            raise InputTypeError(f"on_status must be a callable taking a SourceStatus, got {type(on_status).__name__}")
        specs = list(source) if isinstance(source, (list, tuple)) else [source]
        if not specs:
            raise ConfigError("no sources given; expected a camera index, a file, a folder, a URL or a list of them")
        self.detector = detector
        self.realtime = bool(realtime)
        self.max_inflight = int(max_inflight)
        self.max_frames = None if max_frames is None else int(max_frames)
        self.policy: Reconnect | None = reconnect or None
        self.on_status = on_status
        self.loop = bool(loop)
        self.open_timeout, self.read_timeout = open_timeout, read_timeout
        self.batch = self._batch_size(detector, batch, len(specs))
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._started = False
        self._t_start = 0.0
        self._t_end: float | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._rr = 0  # round-robin pointer
        self._sources: list[_Source] = []
        try:
            for i, spec in enumerate(specs):
                cap, live = open_source(spec, open_timeout, read_timeout)
                src = _Source(i, spec, cap, live)
                src.drop_stale = (live or self.realtime) if drop_stale is None else bool(drop_stale)
                src.capacity = max(2, self.batch)
                self._sources.append(src)
            if track:
                opts = dict(tracker_options or {})
                for src in self._sources:
                    src.tracker = Tracker(frame_rate=src.fps, **opts)
        except BaseException:
            for src in self._sources:
                src.cap.release()
            raise
        self.track = bool(track)

    @staticmethod
    def _batch_size(detector: Any, batch: int | None, n_sources: int) -> int:
        model_batch = getattr(detector, "batch", 1)
        if batch is None:
            batch = model_batch if model_batch is not None else min(n_sources, 16)
        if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
            raise ConfigError(f"batch must be an int >= 1 or None, got {batch!r}")
        if batch > 1 and not callable(getattr(detector, "predict", None)):
            raise ConfigError(f"batch={batch} needs a detector with predict(list_of_frames); this one only has submit()")
        return int(batch)

    # ---------------------------------------------------------------------------------------- public views
    @property
    def sources(self) -> tuple[SourceInfo, ...]:
        """Name, liveness, drop policy and nominal FPS of every source."""
        return tuple(SourceInfo(s.index, s.name, s.live, s.drop_stale, s.fps) for s in self._sources)

    @property
    def live(self) -> bool:
        """Whether the first source is live (single-source convenience; see :attr:`sources`)."""
        return self._sources[0].live

    @property
    def drop_stale(self) -> bool:
        """Whether the first source drops stale frames (single-source convenience)."""
        return self._sources[0].drop_stale

    @property
    def source_fps(self) -> float:
        """Nominal frame rate of the first source (30 when the source does not say)."""
        return self._sources[0].fps

    @property
    def status(self) -> tuple[SourceStatus, ...]:
        """The current :class:`SourceStatus` of every source, in source order."""
        with self._cond:
            return tuple(s.status for s in self._sources)

    @property
    def stats(self) -> StreamStats:
        """A snapshot of the counts, FPS and mean stage milliseconds, overall and per source."""
        with self._cond:
            end = self._t_end if self._t_end is not None else time.monotonic()
            elapsed = max(end - self._t_start, 1e-9) if self._started else 0.0
            per = tuple(self._stats_of([s], elapsed) for s in self._sources)
            total = self._stats_of(self._sources, elapsed)
        return StreamStats(**{**total.__dict__, "sources": per})

    @staticmethod
    def _stats_of(sources: list[_Source], elapsed: float) -> StreamStats:
        processed = sum(s.processed for s in sources)
        sums = {k: sum(s.sums[k] for s in sources) for k in _Source.STAGE_KEYS}
        return StreamStats(
            read=sum(s.read for s in sources),
            processed=processed,
            dropped=sum(s.dropped for s in sources),
            fps=processed / elapsed if elapsed else 0.0,
            reconnects=sum(s.reconnects for s in sources),
            elapsed=elapsed,
            stages_ms={k: 1000.0 * v / processed for k, v in sums.items()} if processed else {},
        )

    # ---------------------------------------------------------------------------------------- status
    def _set_status(self, src: _Source, state: str, **kw: Any) -> None:
        with self._cond:
            st = SourceStatus(src.index, src.name, state, attempts=kw.get("attempts", src.attempts),
                              reconnects=src.reconnects, retry_in=kw.get("retry_in"), error=kw.get("error"),
                              since=time.monotonic())  # fmt: skip
            src.status = st
            self._cond.notify_all()
        level = logging.WARNING if state in ("lost", "gave_up") else logging.INFO
        LOGGER.log(level, "%s", st)
        if self.on_status is not None:
            try:
                self.on_status(st)
            except Exception:  # a broken callback must not kill the capture thread
                LOGGER.exception("on_status callback failed for %s", st)

    # ---------------------------------------------------------------------------------------- capture threads
    def _start_capture(self, src: _Source, cap: FrameSource | None) -> None:
        th = threading.Thread(
            target=self._capture, args=(src, src.gen, cap), name=f"edge_mlla-capture-{src.index}.{src.gen}", daemon=True
        )
        src.threads.append(th)
        th.start()

    def _reopen(self, src: _Source, gen: int) -> FrameSource | None:
        """Open ``src`` again with backoff; None when it gave up, was stopped or was replaced (watchdog)."""
        policy = self.policy or Reconnect()
        last_error = src.status.error
        while not self._stop.is_set() and src.gen == gen:
            attempt = src.attempts + 1
            if policy.max_tries is not None and attempt > policy.max_tries:
                self._set_status(src, "gave_up", attempts=src.attempts, error=last_error)
                return None
            delay = policy.delay(attempt)
            with self._cond:
                src.attempts = attempt
            self._set_status(src, "reconnecting", attempts=attempt, retry_in=delay, error=last_error)
            if self._stop.wait(delay) or src.gen != gen:
                return None
            try:
                cap, _ = open_source(src.spec, self.open_timeout, self.read_timeout)
            except Exception as e:
                last_error = f"reopen failed: {e}"
                continue
            if src.gen != gen or self._stop.is_set():
                cap.release()
                return None
            self._set_status(src, "connecting", attempts=attempt)
            return cap
        return None

    def _capture(self, src: _Source, gen: int, cap: FrameSource | None) -> None:
        t0 = time.monotonic()
        paced = 0
        try:
            while not self._stop.is_set() and src.gen == gen:
                if self.max_frames is not None and src.read >= self.max_frames:
                    self._finish(src, gen, "ended")
                    return
                if cap is None:
                    cap = self._reopen(src, gen)
                    if cap is None:
                        self._finish(src, gen, None)
                        return
                    with self._cond:
                        src.last_frame = time.monotonic()  # the watchdog counts from the reopen
                if self.realtime and not src.live:  # pace a file like a camera
                    delay = t0 + paced / src.fps - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        break
                    paced += 1
                t_a = time.perf_counter()
                try:
                    ok, frame = cap.read()
                    error = None if ok and frame is not None else "read returned no frame"
                except Exception as e:
                    ok, frame, error = False, None, f"read raised {type(e).__name__}: {e}"
                    if not src.live:
                        src.error = e
                capture = time.perf_counter() - t_a
                if src.gen != gen or self._stop.is_set():
                    break
                if error is not None:
                    if src.live and src.reopenable and self.policy is not None:
                        cap.release()
                        cap = None
                        with self._cond:
                            src.lost = True
                        self._set_status(src, "lost", error=error)
                        continue
                    if self.loop and not src.live and src.error is None and src.reopenable and src.next_index > 0:
                        cap.release()
                        cap, _ = open_source(src.spec, self.open_timeout, self.read_timeout)
                        continue
                    self._finish(src, gen, "ended", error if src.live or src.error else None)
                    return
                self._put(src, gen, frame, capture)
        except BaseException as e:  # surfaced to the consumer
            src.error = e
            self._finish(src, gen, "ended", f"{type(e).__name__}: {e}")
        finally:
            if cap is not None:
                cap.release()
            if self._stop.is_set() and src.gen == gen:
                self._finish(src, gen, None)

    def _put(self, src: _Source, gen: int, frame: np.ndarray, capture: float) -> None:
        now = time.monotonic()
        became_connected = False
        with self._cond:
            src.last_frame = now
            if src.status.state != "connected":
                became_connected = True
                if src.lost:
                    src.reconnects += 1
                src.lost = False
                src.attempts = 0
            if src.drop_stale:
                if src.queue:
                    src.dropped += len(src.queue)
                    src.queue.clear()
            else:  # files: back-pressure instead of dropping
                while len(src.queue) >= src.capacity and not self._stop.is_set() and src.gen == gen:
                    self._cond.wait(0.1)
                    src.last_frame = time.monotonic()  # waiting on the consumer is not a stalled source
            src.queue.append(_Frame(frame, src.next_index, now, capture, src.index))
            src.next_index += 1
            src.read += 1
            self._cond.notify_all()
        if became_connected:
            self._set_status(src, "connected", attempts=0)

    def _finish(self, src: _Source, gen: int, state: str | None, error: str | None = None) -> None:
        """Mark ``src`` as done (when ``gen`` is still its current connection)."""
        with self._cond:
            if src.gen != gen or src.finished:
                return
            src.finished = True
            self._cond.notify_all()
        if state is None:
            state = "stopped" if src.status.state not in ("gave_up",) else None
        if state is not None:
            self._set_status(src, state, error=error)

    def _check_watchdog(self) -> None:
        policy = self.policy
        if policy is None or policy.watchdog is None:
            return
        now = time.monotonic()
        for src in self._sources:
            with self._cond:
                stalled = (
                    src.live and src.reopenable and not src.finished and src.status.state in ("connecting", "connected")
                    and now - src.last_frame > policy.watchdog and not self._stop.is_set()
                )  # fmt: skip
                if not stalled:
                    continue
                src.gen += 1  # the stuck reader exits (and releases its capture) when its read returns
                src.lost = True
                src.threads = [t for t in src.threads if t.is_alive()]
            self._set_status(src, "lost", error=f"no frame for {now - src.last_frame:.1f} s (watchdog {policy.watchdog:g} s)")
            self._start_capture(src, None)

    # ---------------------------------------------------------------------------------------- consumer
    def _take(self, block: bool) -> list[_Frame]:
        """Up to ``self.batch`` frames, one source at a time in round-robin order; waits briefly if ``block``."""
        with self._cond:
            items = self._gather()
            if not items and block and not self._stop.is_set() and not self._all_done_locked():
                self._cond.wait(0.05)
                items = self._gather()
            if items:
                self._cond.notify_all()  # capture threads waiting on a full queue
            return items

    def _gather(self) -> list[_Frame]:
        if self._stop.is_set():
            return []
        items: list[_Frame] = []
        n = len(self._sources)
        while len(items) < self.batch:
            took = False
            for k in range(n):
                src = self._sources[(self._rr + k) % n]
                if src.queue:
                    items.append(src.queue.popleft())
                    self._rr = (src.index + 1) % n
                    took = True
                    break
            if not took:
                break
        return items

    def _all_done_locked(self) -> bool:
        return self._stop.is_set() or all(s.finished and not s.queue for s in self._sources)

    def _submit(self, items: list[_Frame]) -> Future:
        now = time.monotonic()
        for it in items:
            it.t_submit = now
        if self.batch == 1:
            fut = self.detector.submit(items[0].frame)
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.max_inflight, thread_name_prefix="edge_mlla-stream-infer")
            fut = self._pool.submit(self.detector.predict, [it.frame for it in items])

        def done(_: Future) -> None:
            t = time.monotonic()
            for it in items:
                it.t_done = t

        fut.add_done_callback(done)
        return fut

    def __iter__(self) -> Iterator[StreamResult]:
        if self._started:
            raise ConfigError("a StreamRunner can be iterated once; make a new one")
        if self._stop.is_set():
            raise ConfigError("this StreamRunner was stopped before it started; make a new one")
        self._started = True
        self._t_start = time.monotonic()
        for src in self._sources:
            with self._cond:
                src.last_frame = time.monotonic()
            self._set_status(src, "connecting")
            self._start_capture(src, src.cap)
        pending: collections.deque[tuple[list[_Frame], Future]] = collections.deque()
        try:
            while True:
                self._check_watchdog()
                if len(pending) < self.max_inflight:
                    # don't block on the sources while results are ready to hand out
                    items = self._take(block=not pending)
                    if items:
                        pending.append((items, self._submit(items)))
                        continue
                if not pending:
                    with self._cond:
                        if self._all_done_locked():
                            break
                    continue
                items, fut = pending.popleft()
                out = fut.result()
                for it, dets in zip(items, out if isinstance(out, list) else [out]):
                    yield self._result(it, dets, items)
        finally:
            self._t_end = time.monotonic()
            self.stop()
        errors = [s.error for s in self._sources if s.error is not None]
        if errors:
            raise errors[0]

    def _result(self, it: _Frame, dets: Detections, group: list[_Frame]) -> StreamResult:
        src = self._sources[it.src]
        t_track = 0.0
        if src.tracker is not None:
            t0 = time.perf_counter()
            dets = src.tracker.update(dets)
            t_track = time.perf_counter() - t0
        tm = dets.timing
        k = max(1, tm.images) if tm is not None else len(group)
        now = time.monotonic()
        timing = FrameTiming(
            capture=it.capture,
            wait=it.t_submit - it.t_read,
            preprocess=tm.preprocess / k if tm else 0.0,
            # a detector that reports no Timing: the whole call (submit -> done) counts as inference
            infer=tm.infer / k if tm else max(0.0, it.t_done - it.t_submit) / k,
            postprocess=tm.postprocess / k if tm else 0.0,
            track=t_track,
            latency=now - it.t_read,
            batch=k,
        )
        with self._cond:
            src.processed += 1
            for key in _Source.STAGE_KEYS:
                src.sums[key] += getattr(timing, key)
        return StreamResult(it.frame, dets, it.index, it.t_read, timing.latency, src.index, src.name, timing)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop reading; an iteration in progress ends after the calls already in inference. Joins the
        capture threads (up to ``timeout`` seconds each) and releases the sources. Safe to call twice."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
            threads = [t for s in self._sources for t in s.threads]
        me = threading.current_thread()
        for th in threads:
            if th is not me:
                th.join(timeout=timeout)
        for src in self._sources:
            if not src.threads:  # never handed to a capture thread
                src.cap.release()
            if src.status.state not in ("ended", "gave_up", "stopped"):
                with self._cond:
                    src.finished = True
                self._set_status(src, "stopped")
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        stuck = [th.name for th in threads if th.is_alive()]
        if stuck:
            LOGGER.warning("capture threads still blocked in read() after stop: %s (they exit when read returns)", stuck)

    close = stop

    def __enter__(self) -> StreamRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ------------------------------------------------------------------------------------------------ the bundled clip
def bundled_clip() -> Path:
    """Path of the bundled 640x480 BCCD panning clip (``edge_mlla/data/clips/bccd_pan.mp4``).

    Example:
        >>> bundled_clip().name
        'bccd_pan.mp4'
    """
    if not CLIP.is_file():
        raise MissingFileError(
            f"bundled clip not found: {CLIP} (this install lacks the package data; make one with "
            "edge_mlla.stream.make_pan_clip(path))"
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
        images = sorted((Path(__file__).resolve().parent / "data" / "bccd" / "images" / "test").glob("*.jpg"))[:4]
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
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".mp4", dir=out.parent)
    os.close(fd)
    writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
    try:
        if not writer.isOpened():
            raise OutputNotWritableError(f"cannot write {out} with the mp4v codec")
        for f in range(frames):
            x0 = pan_offset(f, frames, strip.shape[1], w)
            m = np.float32([[1, 0, -x0], [0, 1, 0]])
            writer.write(cv2.warpAffine(strip, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    except BaseException:
        writer.release()
        Path(tmp).unlink(missing_ok=True)
        raise
    writer.release()
    os.replace(tmp, out)
    return out

