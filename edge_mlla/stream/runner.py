"""``StreamRunner``: iterate over detections of one or several video sources, live-safe, reconnecting."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from edge_mlla.errors import ConfigError, InputTypeError
from edge_mlla.stream.capture import Capture, CaptureOptions, Clock, SourceState, StatusBoard
from edge_mlla.stream.infer import Inference
from edge_mlla.stream.motion import Motion, MotionDetector, MotionResult
from edge_mlla.stream.pipeline import DetectTrack
from edge_mlla.stream.plain import EveryFrame
from edge_mlla.stream.records import Reconnect, SourceInfo, SourceStatus, StreamResult, StreamStats
from edge_mlla.stream.schedule import Schedule
from edge_mlla.stream.sources import SourceLike, open_source
from edge_mlla.stream.track import Tracker

LOGGER = logging.getLogger("edge_mlla")


class StreamRunner:
    """Iterate over detections of one or several video sources, live-safe, reconnecting.

    Args:
        detector: a :class:`~edge_mlla.Detector`, or any detector-like object (see below).
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
        reconnect: a :class:`Reconnect` policy for live sources (backoff, watchdog, and the seconds OpenCV may
            block opening or reading a URL), True (the default policy) or False (a failed live source ends).
        on_status: called with a :class:`SourceStatus` on every state change, from a capture thread
            (keep it quick; exceptions are logged and ignored).
        track: run ByteTrack per source (supervision) and fill ``Detections.tracker_id``; a dict instead of
            True gives the tracker's keyword arguments (e.g. ``{"lost_track_buffer": 30}``).
        batch: frames per inference call; default: the model's fixed batch, or one frame per source for a
            dynamic-batch model (capped at 16).
        loop: restart files and folders at their end (demos, soak tests).
        motion: motion gating per source (True, or :class:`Motion` options): a frame where nothing moves is not sent
            to the detector and keeps the boxes it had (``mode="gated"``); ``Motion(regions=True)`` also detects on
            the motion regions of large frames. Turns detect-and-track on.
        schedule: detect-and-track (:class:`Schedule`): the detector runs on a source's frame only when it is due
            (motion that nothing explains, every k-th moving frame with k adapted to the objects' speed, a minimum
            rate), sharing one detector across the sources by priority; the other frames get the boxes carried from
            the last detection (``mode="predicted"``). Default with ``motion``: ``Schedule()``.

    With detect-and-track on, every frame read gets a result (in its source's order); a live source keeps up to
    ``Schedule.backlog`` seconds of frames instead of only the newest; :attr:`stats` counts frames ``detected``,
    ``gated`` and ``carried`` per source, and ``StreamResult.detections.data["predicted"]`` tells carried boxes.

    Deprecated keywords (one more release, with a warning): ``tracker_options`` (use ``track={...}``),
    ``open_timeout`` / ``read_timeout`` (use ``Reconnect(open_timeout=..., read_timeout=...)``).

    :attr:`clock` (default ``time.monotonic``) is the time source for timestamps, latencies and the watchdog;
    replace it before iterating to run the runner on a controlled clock (tests do).

    The detector protocol (what ``detector`` must offer; :class:`~edge_mlla.Detector` has all of it):

    * ``submit(frame) -> Future[Detections]`` (used for one frame per call), and/or
      ``predict(frames: list) -> list[Detections]`` (used for batches, in a pool of ``max_inflight`` threads), or
      at least ``detector(frame) -> Detections`` (run in that pool);
    * optional: ``batch`` (the model's fixed batch, None for dynamic), ``names`` (class id -> name),
      ``precision`` (reported by views such as ``edge-mlla watch``), ``backend.optimal_requests``.

    A remote model (for example an HTTP client of ``edge-mlla serve``) therefore plugs in as an object with a
    ``submit`` that returns a future of :class:`~edge_mlla.Detections`.

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
        track: bool | Mapping[str, Any] = False,
        batch: int | None = None,
        loop: bool = False,
        motion: bool | Motion = False,
        schedule: Schedule | None = None,
        **deprecated: Any,
    ) -> None:
        reconnect, track, timeouts = _deprecated(deprecated, reconnect, track)
        if max_inflight is None:
            max_inflight = max(2, int(getattr(getattr(detector, "backend", None), "optimal_requests", 1) or 1) + 1)
        _check_int("max_inflight", max_inflight)
        if max_frames is not None:
            _check_int("max_frames", max_frames, "or None")
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
        self.max_inflight = int(max_inflight)
        self._infer = Inference(detector, self.max_inflight)
        self.batch = self._batch_size(detector, batch, len(specs))
        self.clock: Clock = time.monotonic
        self.opts = CaptureOptions(reconnect or None, None if max_frames is None else int(max_frames), bool(realtime),
                                   bool(loop), timeouts.open_timeout, timeouts.read_timeout)  # fmt: skip
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._stopping = threading.Lock()
        self._started = False
        self._t_start = 0.0
        self._t_end: float | None = None
        self._make_tracker: Callable[[float], Tracker] | None = None
        self.motion: Motion | None = (Motion() if motion is True else motion) or None
        if self.motion is not None and not isinstance(self.motion, Motion):
            raise InputTypeError(f"motion must be True, False or Motion(...), got {type(motion).__name__}")
        if schedule is not None and not isinstance(schedule, Schedule):
            raise InputTypeError(f"schedule must be a Schedule(...) or None, got {type(schedule).__name__}")
        self.schedule = schedule or (Schedule() if self.motion is not None else None)
        self._sources = self._open(specs, drop_stale, track)
        self.track = bool(track)
        self._board = StatusBoard(self._cond, on_status, self._now)
        self._capture = Capture(self._sources, self.opts, self._cond, self._stop, self._board, self._now)
        if self.motion is not None:
            self._motion = [MotionDetector(self.motion) for _ in self._sources]
            self._capture.on_frame = self._analyse

    def _now(self) -> float:
        return self.clock()

    def _analyse(self, src: SourceState, frame: np.ndarray) -> MotionResult:
        """Motion analysis of a source's new frame, in its capture thread; a new remark goes to the status."""
        result = self._motion[src.index].update(frame)
        if result.note != src.status.note:
            self._board.note(src, result.note)
        return result

    def _open(self, specs: list, drop_stale: bool | None, track: bool | Mapping[str, Any]) -> list[SourceState]:
        sources: list[SourceState] = []
        try:
            for i, spec in enumerate(specs):
                cap, live = open_source(spec, self.opts.open_timeout, self.opts.read_timeout)
                src = SourceState(i, spec, cap, live, self.clock())
                src.drop_stale = (live or self.opts.realtime) if drop_stale is None else bool(drop_stale)
                src.capacity = max(2, self.batch)
                sources.append(src)
            if track:
                options = dict(track) if isinstance(track, Mapping) else {}
                self._make_tracker = lambda fps: Tracker(frame_rate=fps, **options)  # noqa: E731
                for src in sources:
                    src.tracker = self._make_tracker(src.fps)
            if self.schedule is not None:  # every frame gets a result: live sources keep a short backlog
                for src in sources:
                    src.keep = src.capacity = max(2, int(self.schedule.backlog * src.fps))
        except BaseException:
            for src in sources:
                src.cap.release()
            raise
        return sources

    @staticmethod
    def _batch_size(detector: Any, batch: int | None, n_sources: int) -> int:
        model_batch = getattr(detector, "batch", 1)
        if batch is None:
            batch = model_batch if model_batch is not None else min(n_sources, 16)
        _check_int("batch", batch, "or None")
        if batch > 1 and not callable(getattr(detector, "predict", None)):
            raise ConfigError(f"batch={batch} needs a detector with predict(list_of_frames); this one has no predict()")
        return int(batch)

    # ---------------------------------------------------------------------------------------- public views
    @property
    def realtime(self) -> bool:
        return self.opts.realtime

    @property
    def max_frames(self) -> int | None:
        return self.opts.max_frames

    @property
    def loop(self) -> bool:
        return self.opts.loop

    @property
    def policy(self) -> Reconnect | None:
        return self.opts.policy

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
            end = self._t_end if self._t_end is not None else self.clock()
            elapsed = max(end - self._t_start, 1e-9) if self._started else 0.0
            per = tuple(_stats_of([s], elapsed) for s in self._sources)
            total = _stats_of(self._sources, elapsed)
        return StreamStats(**{**total.__dict__, "sources": per})

    # ---------------------------------------------------------------------------------------- consumer
    def __iter__(self) -> Iterator[StreamResult]:
        if self._started:
            raise ConfigError("a StreamRunner can be iterated once; make a new one")
        if self._stop.is_set():
            raise ConfigError("this StreamRunner was stopped before it started; make a new one")
        self._started = True
        self._t_start = self.clock()
        for src in self._sources:
            with self._cond:
                src.last_frame = self.clock()
            self._board.set(src, "connecting")
            self._capture.start(src, src.cap)
        if self.schedule is not None:
            loop: Any = DetectTrack(self, self.schedule, self.motion, self._make_tracker)
        else:
            loop = EveryFrame(self)
        try:
            yield from loop.run()
        finally:
            self._t_end = self.clock()
            self.stop()
        errors = [s.error for s in self._sources if s.error is not None]
        if errors:
            raise errors[0]

    def stop(self, timeout: float = 5.0) -> None:
        """Stop reading; an iteration in progress ends after the calls already in inference. Waits for the
        capture threads up to ``timeout`` seconds in total, and releases the sources. A thread still blocked in
        a source's ``read()`` is left to exit when its read returns (a warning names it once) and is not waited
        on by a later call. Safe to call twice, and from another thread."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        with self._stopping:  # one stop at a time (a timer's and the loop's): the second finds the work done
            stuck = self._capture.join(timeout)
            for src in self._sources:
                if not src.started:  # never handed to a capture thread
                    src.cap.release()
                    src.started = True  # released once
                if src.status.state not in ("ended", "gave_up", "stopped"):
                    with self._cond:
                        src.finished = True
                    self._board.set(src, "stopped")
            self._infer.close()
        if stuck:
            LOGGER.warning("capture threads still blocked in read() after stop: %s (they exit when read returns)", stuck)

    close = stop

    def __enter__(self) -> StreamRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _deprecated(kw: dict[str, Any], reconnect: Reconnect | bool, track: Any) -> tuple[Reconnect | bool, Any, Reconnect]:
    """Fold the keywords of the 0.x signature into their new homes, with a DeprecationWarning; returns the
    reconnect policy, the track argument and the policy whose open/read timeouts apply."""
    unknown = set(kw) - {"tracker_options", "open_timeout", "read_timeout"}
    if unknown:
        raise TypeError(f"StreamRunner() got unexpected keyword arguments {sorted(unknown)}")
    for name in kw:
        home = "track={...}" if name == "tracker_options" else f"Reconnect({name}=...)"
        warnings.warn(f"StreamRunner({name}=...) is deprecated: use {home}", DeprecationWarning, stacklevel=3)
    if kw.get("tracker_options") and track:
        track = {**(track if isinstance(track, Mapping) else {}), **kw["tracker_options"]}
    base = reconnect if isinstance(reconnect, Reconnect) else Reconnect()
    timeouts = dataclasses.replace(base, **{k: kw[k] for k in ("open_timeout", "read_timeout") if k in kw})
    if reconnect is True or isinstance(reconnect, Reconnect):
        reconnect = timeouts
    return reconnect, track, timeouts


def _check_int(name: str, value: Any, extra: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be an int >= 1{' ' + extra if extra else ''}, got {value!r}")


def _stats_of(sources: list[SourceState], elapsed: float) -> StreamStats:
    processed = sum(s.processed for s in sources)
    sums = {k: sum(s.sums[k] for s in sources) for k in SourceState.STAGE_KEYS}
    counts = {k: sum(s.counts[k] for s in sources) for k in ("detected", "gated", "carried", "regions")}
    return StreamStats(
        read=sum(s.read for s in sources),
        processed=processed,
        dropped=sum(s.dropped for s in sources),
        fps=processed / elapsed if elapsed else 0.0,
        reconnects=sum(s.reconnects for s in sources),
        elapsed=elapsed,
        stages_ms={k: 1000.0 * v / processed for k, v in sums.items()} if processed else {},
        **counts,
    )
