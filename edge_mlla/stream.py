"""Run a :class:`~edge_mlla.Detector` on a video stream without falling behind it.

A capture thread reads frames as fast as the source delivers them. For live sources (camera,
RTSP/HTTP) it keeps only the newest frame: when inference is slower than the camera, stale frames
are dropped instead of queueing up, so results describe what is in front of the camera now, not
seconds ago. For video files every frame is processed in order (nothing to fall behind), unless
``realtime=True`` replays the file at its own frame rate like a camera. Inference is asynchronous:
up to ``max_inflight`` frames are in the backend at once (OpenVINO infer requests in a thread pool, ONNX Runtime
pool) while the next frame is read and preprocessed; results come back in frame order.

Example:
    >>> from edge_mlla import Detector
    >>> from edge_mlla.stream import StreamRunner
    >>> det = Detector("model.xml")                                # doctest: +SKIP
    >>> with StreamRunner(det, "rtsp://camera/stream") as run:     # doctest: +SKIP
    ...     for r in run:
    ...         show(r.detections.draw(r.frame))
    >>> run.stats                                                  # doctest: +SKIP
    StreamStats(read=912, processed=301, dropped=611, fps=14.8)
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from edge_mlla.errors import ConfigError, InputTypeError, MissingFileError
from edge_mlla.results import Detections

LOGGER = logging.getLogger("edge_mlla")
_LIVE_PREFIXES = ("rtsp://", "rtmp://", "http://", "https://", "udp://", "tcp://")


class FrameSource(Protocol):
    """What the runner reads from: ``cv2.VideoCapture`` or anything with the same three methods."""

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def get(self, prop: int) -> float: ...

    def release(self) -> None: ...


@dataclass(frozen=True)
class StreamResult:
    """One processed frame: the BGR frame, its detections, its index in the source, when it was read
    (``time.monotonic()``), and ``latency`` seconds from read to result."""

    frame: np.ndarray
    detections: Detections
    index: int
    timestamp: float
    latency: float


@dataclass
class StreamStats:
    """Frames read from the source, processed, and dropped as stale; processed frames per second."""

    read: int = 0
    processed: int = 0
    dropped: int = 0
    fps: float = 0.0


def open_source(source: int | str | os.PathLike | FrameSource) -> tuple[FrameSource, bool]:
    """Open a camera index, a file path or a stream URL (or pass a capture through); returns (capture, is_live).

    Example:
        >>> open_source("missing.mp4")
        Traceback (most recent call last):
        ...
        edge_mlla.errors.MissingFileError: video source not found: missing.mp4 (expected a camera index, a video file or an rtsp/http URL)
    """
    if hasattr(source, "read") and hasattr(source, "release"):
        return source, True  # a caller-made capture: treat as live (we cannot know its pacing)
    if isinstance(source, bool) or not isinstance(source, (int, str, os.PathLike)):
        raise InputTypeError(f"source must be a camera index, a video path or a URL, got {type(source).__name__}")
    if isinstance(source, str) and source.isdigit():
        source = int(source)
    if isinstance(source, int):
        cap, live = cv2.VideoCapture(source), True
    elif str(source).lower().startswith(_LIVE_PREFIXES):
        cap, live = cv2.VideoCapture(str(source)), True
    else:
        path = Path(source)
        if not path.is_file():
            raise MissingFileError(
                f"video source not found: {path} (expected a camera index, a video file or an rtsp/http URL)"
            )
        cap, live = cv2.VideoCapture(str(path)), False
    if not cap.isOpened():
        raise MissingFileError(f"could not open video source {source!r} (no such camera, unreachable URL, or unsupported codec)")
    return cap, live


class StreamRunner:
    """Iterate over detections of a video source, live-safe.

    Args:
        detector: a :class:`~edge_mlla.Detector` (anything with ``submit(frame) -> Future[Detections]``).
        source: camera index (``0``), video path, ``rtsp://`` / ``http://`` URL, or an opened ``cv2.VideoCapture``.
        drop_stale: keep only the newest frame when inference falls behind. Default: True for live
            sources, False for files (every frame, in order).
        realtime: replay a file at its frame rate (then ``drop_stale`` defaults to True).
        max_inflight: frames in inference at once (2 overlaps preprocessing/reading with inference).
        max_frames: stop after this many read frames (None: until the source ends or :meth:`stop`).
    """

    def __init__(
        self,
        detector: Any,
        source: int | str | os.PathLike | FrameSource,
        drop_stale: bool | None = None,
        realtime: bool = False,
        max_inflight: int = 2,
        max_frames: int | None = None,
    ) -> None:
        if not callable(getattr(detector, "submit", None)):
            raise InputTypeError(f"detector must have submit(frame) -> Future (a Detector), got {type(detector).__name__}")
        if int(max_inflight) < 1:
            raise ConfigError(f"max_inflight must be >= 1, got {max_inflight}")
        self.detector = detector
        self._cap, self.live = open_source(source)
        self.realtime = bool(realtime)
        self.drop_stale = (self.live or self.realtime) if drop_stale is None else bool(drop_stale)
        self.max_inflight = int(max_inflight)
        self.max_frames = max_frames
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.source_fps = fps if 0 < fps < 1000 else 30.0
        self.stats = StreamStats()
        self._cond = threading.Condition()
        self._slot: collections.deque = collections.deque()  # (frame, index, t_read)
        self._ended = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    # ------------------------------------------------------------------------------ capture thread
    def _capture(self) -> None:
        idx = 0
        t0 = time.monotonic()
        try:
            while not self._stop.is_set():
                if self.max_frames is not None and idx >= self.max_frames:
                    break
                if self.realtime and not self.live:  # pace a file like a camera
                    delay = t0 + idx / self.source_fps - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                ok, frame = self._cap.read()
                if not ok or frame is None:
                    break
                now = time.monotonic()
                with self._cond:
                    if self.drop_stale:
                        if self._slot:
                            self._slot.clear()
                            self.stats.dropped += 1
                    else:
                        while len(self._slot) >= self.max_inflight and not self._stop.is_set():
                            self._cond.wait(0.1)  # files: back-pressure instead of dropping
                    self._slot.append((frame, idx, now))
                    self.stats.read += 1
                    self._cond.notify_all()
                idx += 1
        except BaseException as e:  # surfaced to the consumer
            self._error = e
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def _next_frame(self) -> tuple[np.ndarray, int, float] | None:
        with self._cond:
            while not self._slot and not self._ended and not self._stop.is_set():
                self._cond.wait(0.1)
            if not self._slot or self._stop.is_set():
                return None
            item = self._slot.popleft()
            self._cond.notify_all()
            return item

    # ------------------------------------------------------------------------------ consumer
    def __iter__(self) -> Iterator[StreamResult]:
        if self._thread is not None:
            raise ConfigError("a StreamRunner can be iterated once")
        self._thread = threading.Thread(target=self._capture, name="edge_mlla-capture", daemon=True)
        self._thread.start()
        pending: collections.deque[tuple[np.ndarray, int, float, Future]] = collections.deque()
        t_start = time.monotonic()
        try:
            while True:
                item = None
                if len(pending) < self.max_inflight:
                    # don't block on the camera while results are ready to hand out
                    item = self._next_frame() if not pending or self._has_frame() else None
                    if item is not None:
                        frame, idx, t_read = item
                        pending.append((frame, idx, t_read, self.detector.submit(frame)))
                        continue
                if not pending:
                    if self._ended or self._stop.is_set():
                        break
                    continue
                frame, idx, t_read, fut = pending.popleft()
                dets = fut.result()
                self.stats.processed += 1
                self.stats.fps = self.stats.processed / max(time.monotonic() - t_start, 1e-9)
                yield StreamResult(frame, dets, idx, t_read, time.monotonic() - t_read)
        finally:
            self.stop()
        if self._error is not None:
            raise self._error

    def _has_frame(self) -> bool:
        with self._cond:
            return bool(self._slot)

    def stop(self) -> None:
        """Stop reading; the iteration ends after the frames already in inference."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._cap.release()

    def __enter__(self) -> StreamRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
