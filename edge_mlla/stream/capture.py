"""The capture side of :class:`~edge_mlla.stream.StreamRunner`: one thread per source connection reads frames
into the source's queue, reopens a failed live source with backoff, and a watchdog replaces a reader stuck
in ``read()``. Everything here shares the runner's condition lock; status changes go through a
:class:`StatusBoard` (logged, and to the ``on_status`` callback)."""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from edge_mlla.stream.records import FrameTiming, Reconnect, SourceStatus
from edge_mlla.stream.sources import FrameSource, open_source, source_name

LOGGER = logging.getLogger("edge_mlla")
Clock = Callable[[], float]
_DONE = object()  # a capture loop's "this source is finished"


@dataclass
class Frame:
    """A frame in flight: read at ``t_read`` (runner clock), ``capture`` seconds in ``read()``."""

    frame: np.ndarray
    index: int
    t_read: float
    capture: float
    src: int = 0
    t_submit: float = 0.0
    t_done: float = 0.0  # when its inference call finished
    motion: Any = None  # a MotionResult when motion gating is on


class SourceState:
    """Mutable per-source state; every field is guarded by the runner's condition lock."""

    STAGE_KEYS = FrameTiming.STAGES

    def __init__(self, index: int, spec: Any, cap: FrameSource, live: bool, now: float) -> None:
        self.index, self.spec, self.cap, self.live = index, spec, cap, live
        self.name = source_name(spec)
        self.reopenable = not (hasattr(spec, "read") and hasattr(spec, "release"))  # a capture object cannot be reopened
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0 < fps < 1000 else 30.0
        self.drop_stale = False
        self.keep = 1  # frames a live source keeps while the consumer is busy (drop_stale)
        self.queue: collections.deque[Frame] = collections.deque()
        self.capacity = 2
        self.gen = 0
        self.next_index = 0
        self.last_frame = now
        self.finished = False
        self.attempts = 0
        self.lost = False
        self.read = self.processed = self.dropped = self.reconnects = 0
        self.counts = {"detected": 0, "gated": 0, "carried": 0, "regions": 0}
        self.sums = dict.fromkeys(self.STAGE_KEYS, 0.0)
        self.status = SourceStatus(index, self.name, "connecting", since=now)
        self.threads: list[threading.Thread] = []
        self.started = False  # handed to a capture thread (which then owns the capture)
        self.tracker: Any = None
        self.error: BaseException | None = None


@dataclass(frozen=True)
class CaptureOptions:
    """How sources are read: reconnect ``policy`` (None: a failed live source ends), ``max_frames`` per
    source, ``realtime`` pacing of files, ``loop`` files, and OpenCV's open/read timeouts for URLs."""

    policy: Reconnect | None = None
    max_frames: int | None = None
    realtime: bool = False
    loop: bool = False
    open_timeout: float | None = 10.0
    read_timeout: float | None = 5.0


class StatusBoard:
    """Records a source's :class:`SourceStatus` under the lock, logs it, and calls ``on_status``. A change of
    ``note`` (what is odd about the frames) is a status change too."""

    def __init__(self, cond: threading.Condition, on_status: Callable[[SourceStatus], Any] | None, clock: Clock) -> None:
        self.cond, self.on_status, self.clock = cond, on_status, clock

    def set(self, src: SourceState, state: str, **kw: Any) -> None:
        with self.cond:
            st = SourceStatus(src.index, src.name, state, attempts=kw.get("attempts", src.attempts),
                              reconnects=src.reconnects, retry_in=kw.get("retry_in"), error=kw.get("error"),
                              since=self.clock(), note=src.status.note)  # fmt: skip
            src.status = st
            self.cond.notify_all()
        self._tell(st, logging.WARNING if state in ("lost", "gave_up") else logging.INFO)

    def note(self, src: SourceState, note: str | None) -> None:
        with self.cond:
            if src.status.note == note:
                return
            st = src.status = dataclasses.replace(src.status, note=note, since=self.clock())
        self._tell(st, logging.WARNING if note else logging.INFO)

    def _tell(self, st: SourceStatus, level: int) -> None:
        LOGGER.log(level, "%s", st)
        if self.on_status is not None:
            try:
                self.on_status(st)
            except Exception:  # a broken callback must not kill the capture thread
                LOGGER.exception("on_status callback failed for %s", st)


class Capture:
    """Capture threads for a runner's sources (see the module docstring)."""

    def __init__(self, sources: list[SourceState], options: CaptureOptions, cond: threading.Condition,
                 stop: threading.Event, board: StatusBoard, clock: Clock) -> None:  # fmt: skip
        self.sources, self.opts, self.cond, self.stop, self.board, self.clock = sources, options, cond, stop, board, clock
        self.on_frame: Callable[[SourceState, np.ndarray], Any] | None = None  # e.g. motion analysis, in the capture thread
        self.abandoned: set[threading.Thread] = set()  # stuck in read() at a stop: never waited on again

    # ---------------------------------------------------------------------------------------- threads
    def start(self, src: SourceState, cap: FrameSource | None) -> None:
        th = threading.Thread(target=self._run, args=(src, src.gen, cap), name=f"edge_mlla-capture-{src.index}.{src.gen}",
                              daemon=True)  # fmt: skip
        src.threads.append(th)
        src.started = True
        th.start()

    def join(self, timeout: float) -> list[str]:
        """Wait for the capture threads, ``timeout`` seconds in total (not per thread); threads still blocked in
        ``read()`` are abandoned (they exit when their read returns) and not waited on again. Returns their names."""
        me = threading.current_thread()
        with self.cond:
            threads = [t for s in self.sources for t in s.threads if t is not me and t not in self.abandoned]
        deadline = self.clock() + max(0.0, timeout)
        for th in threads:
            self.join_one(th, max(0.0, deadline - self.clock()))
        stuck = [th for th in threads if th.is_alive()]
        with self.cond:
            self.abandoned.update(stuck)
            for s in self.sources:
                s.threads = [t for t in s.threads if t.is_alive()]
        return [th.name for th in stuck]

    @staticmethod
    def join_one(thread: threading.Thread, timeout: float) -> None:
        """Wait for one thread (an attribute, so that tests can watch the waits)."""
        thread.join(timeout)

    def _run(self, src: SourceState, gen: int, cap: FrameSource | None) -> None:
        t0 = time.monotonic()
        paced = 0
        try:
            while not self.stop.is_set() and src.gen == gen:
                if self.opts.max_frames is not None and src.read >= self.opts.max_frames:
                    self.finish(src, gen, "ended")
                    return
                if cap is None:
                    cap = self._reopen(src, gen)
                    if cap is None:
                        self.finish(src, gen, None)
                        return
                if self.opts.realtime and not src.live:  # pace a file like a camera
                    delay = t0 + paced / src.fps - time.monotonic()
                    if delay > 0 and self.stop.wait(delay):
                        break
                    paced += 1
                frame, error, capture = self._read(src, cap)
                if src.gen != gen or self.stop.is_set():
                    break
                if error is None:
                    self._put(src, gen, frame, capture)
                    continue
                cap.release()
                nxt = self._after_failure(src, gen, error)
                cap = None if nxt is _DONE else nxt
                if nxt is _DONE:
                    return
        except BaseException as e:  # surfaced to the consumer
            src.error = e
            self.finish(src, gen, "ended", f"{type(e).__name__}: {e}")
        finally:
            if cap is not None:
                cap.release()
            if self.stop.is_set() and src.gen == gen:
                self.finish(src, gen, None)

    def _read(self, src: SourceState, cap: FrameSource) -> tuple[np.ndarray | None, str | None, float]:
        t_a = time.perf_counter()
        try:
            ok, frame = cap.read()
            error = None if ok and frame is not None else "read returned no frame"
        except Exception as e:
            frame, error = None, f"read raised {type(e).__name__}: {e}"
            if not src.live:
                src.error = e
        return frame, error, time.perf_counter() - t_a

    def _after_failure(self, src: SourceState, gen: int, error: str) -> Any:
        """After a failed read (capture released): None to reopen with backoff, a new capture (a looped file), or
        ``_DONE`` when the source is finished."""
        if src.live and src.reopenable and self.opts.policy is not None:
            with self.cond:
                src.lost = True
            self.board.set(src, "lost", error=error)
            return None
        if self.opts.loop and not src.live and src.error is None and src.reopenable and src.next_index > 0:
            cap, _ = open_source(src.spec, self.opts.open_timeout, self.opts.read_timeout)
            return cap
        self.finish(src, gen, "ended", error if src.live or src.error else None)
        return _DONE

    def _reopen(self, src: SourceState, gen: int) -> FrameSource | None:
        """Open ``src`` again with backoff; None when it gave up, was stopped or was replaced (watchdog)."""
        policy = self.opts.policy or Reconnect()
        last_error = src.status.error
        while not self.stop.is_set() and src.gen == gen:
            attempt = src.attempts + 1
            if policy.max_tries is not None and attempt > policy.max_tries:
                self.board.set(src, "gave_up", attempts=src.attempts, error=last_error)
                return None
            delay = policy.delay(attempt)
            with self.cond:
                src.attempts = attempt
            self.board.set(src, "reconnecting", attempts=attempt, retry_in=delay, error=last_error)
            if self.stop.wait(delay) or src.gen != gen:
                return None
            try:
                cap, _ = open_source(src.spec, self.opts.open_timeout, self.opts.read_timeout)
            except Exception as e:
                last_error = f"reopen failed: {e}"
                continue
            if src.gen != gen or self.stop.is_set():
                cap.release()
                return None
            with self.cond:  # the watchdog counts from the reopen, from the moment it can see "connecting"
                src.last_frame = self.clock()
            self.board.set(src, "connecting", attempts=attempt)
            return cap
        return None

    def _put(self, src: SourceState, gen: int, frame: np.ndarray, capture: float) -> None:
        extra = self.on_frame(src, frame) if self.on_frame is not None else None
        became_connected = False
        with self.cond:
            now = self.clock()
            src.last_frame = now
            if src.status.state != "connected":
                became_connected = True
                if src.lost:
                    src.reconnects += 1
                src.lost = False
                src.attempts = 0
            if src.drop_stale:
                while len(src.queue) >= src.keep:  # live: the newest frames only (one, or a short backlog)
                    src.queue.popleft()
                    src.dropped += 1
            else:  # files: back-pressure instead of dropping
                while len(src.queue) >= src.capacity and not self.stop.is_set() and src.gen == gen:
                    self.cond.wait(0.1)
                    src.last_frame = self.clock()  # waiting on the consumer is not a stalled source
            src.queue.append(Frame(frame, src.next_index, now, capture, src.index, motion=extra))
            src.next_index += 1
            src.read += 1
            self.cond.notify_all()
        if became_connected:
            self.board.set(src, "connected", attempts=0)

    def finish(self, src: SourceState, gen: int, state: str | None, error: str | None = None) -> None:
        """Mark ``src`` as done (when ``gen`` is still its current connection)."""
        with self.cond:
            if src.gen != gen or src.finished:
                return
            src.finished = True
            self.cond.notify_all()
        if state is None:
            state = "stopped" if src.status.state not in ("gave_up",) else None
        if state is not None:
            self.board.set(src, state, error=error)

    # ---------------------------------------------------------------------------------------- watchdog
    def check_watchdog(self) -> None:
        """Replace the reader of every live source that delivered no frame for the policy's watchdog seconds."""
        policy = self.opts.policy
        if policy is None or policy.watchdog is None:
            return
        for src in self.sources:
            with self.cond:
                now = self.clock()
                stalled = (
                    src.live and src.reopenable and not src.finished and src.status.state in ("connecting", "connected")
                    and now - src.last_frame > policy.watchdog and not self.stop.is_set()
                )  # fmt: skip
                if not stalled:
                    continue
                src.gen += 1  # the stuck reader exits (and releases its capture) when its read returns
                src.lost = True
                src.threads = [t for t in src.threads if t.is_alive()]
                idle = now - src.last_frame  # the new reader's window starts at its reopen (_reopen)
            self.board.set(src, "lost", error=f"no frame for {idle:.1f} s (watchdog {policy.watchdog:g} s)")
            self.start(src, None)
