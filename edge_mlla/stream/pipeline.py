"""Detect-and-track: the consumer loop of :class:`~edge_mlla.stream.StreamRunner` when motion gating or a
:class:`~edge_mlla.stream.Schedule` is on. Every frame read gets a result, in its source's order: ``detected`` (the
detector ran on it, whole or on motion regions), ``predicted`` (the boxes carried from the last detection) or ``gated``
(no motion: the boxes stay). Each source is a :class:`Lane` of frames waiting to be handed out; a
:class:`~edge_mlla.stream.schedule.DetectScheduler` gives the detector's free calls to the sources' due frames."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_mlla.results import Detections
from edge_mlla.stream.capture import Capture, Frame, SourceState
from edge_mlla.stream.carry import Carrier, marked, with_ids
from edge_mlla.stream.motion import Motion, MotionResult
from edge_mlla.stream.records import FrameTiming, StreamResult
from edge_mlla.stream.regions import crops_of, merge_regions, plan_regions
from edge_mlla.stream.schedule import Candidate, DetectScheduler, Schedule

_STILL = MotionResult("still")


@dataclass
class Entry:
    """One frame in a lane: ``mode`` is ``wait`` (due, waiting for the detector), ``detect`` / ``regions`` (in the
    detector: ``future``), ``predict`` or ``gate`` (handed out with the carried boxes when its turn comes)."""

    frame: Frame
    mode: str
    future: Future | None = None
    regions: np.ndarray | None = None
    urgent: bool = False
    reset: bool = False  # the picture changed (size, or black): forget what was carried, when this frame's turn comes


class Lane:
    """One source's frames in order, its carried boxes, its tracker and what the last detection looked at."""

    def __init__(self, src: SourceState, make_tracker: Callable[[float], Any] | None) -> None:
        self.src = src
        self.entries: collections.deque[Entry] = collections.deque()
        self.carrier = Carrier()
        self.make_tracker = make_tracker
        self.tracker = src.tracker
        self.checked = np.zeros((0, 4), np.float32)  # motion boxes the last detection already looked at
        self.shape: tuple[int, ...] | None = None
        self.fps = src.fps
        self.t_prev: float | None = None
        self.waiting: Entry | None = None
        self.size = 8  # frames this lane holds; set from the schedule's backlog

    def room(self) -> int:
        """How many more frames this lane takes now: none while one of its frames is in the detector."""
        if any(e.future is not None for e in self.entries):
            return 0
        return max(0, self.size - len(self.entries))

    def reset(self) -> None:
        """The picture changed (resolution, or black): forget what was carried and tracked."""
        self.carrier = Carrier()
        self.tracker = self.make_tracker(self.src.fps) if self.make_tracker else None
        self.checked = np.zeros((0, 4), np.float32)

    def observe(self, frame: Frame) -> bool:
        """Follow the source's real frame rate; True when the frame's size differs from the last one's."""
        changed = self.shape is not None and frame.frame.shape != self.shape
        self.shape = frame.frame.shape
        if self.t_prev is not None and frame.t_read > self.t_prev:
            self.fps = 0.8 * self.fps + 0.2 / (frame.t_read - self.t_prev)
        self.t_prev = frame.t_read
        return changed

    def unexplained(self, motion: MotionResult, t: float) -> bool:
        """Motion that no moving carried box touches (a still one does not move the picture) and that the last
        detection did not already look at (a moving blob mostly inside a blob it looked at): something new came in."""
        if not len(motion.boxes):
            return False
        b = motion.boxes
        if len(self.carrier):
            k = self.carrier.predict(t).xyxy[self.carrier.moving()]
            touch = (b[:, None, 0] < k[None, :, 2]) & (k[None, :, 0] < b[:, None, 2]) & \
                    (b[:, None, 1] < k[None, :, 3]) & (k[None, :, 1] < b[:, None, 3])  # fmt: skip
            b = b[~touch.any(1)]
        if not len(b) or not len(self.checked):
            return bool(len(b))
        c = self.checked
        iw = np.clip(np.minimum(b[:, None, 2], c[None, :, 2]) - np.maximum(b[:, None, 0], c[None, :, 0]), 0, None)
        ih = np.clip(np.minimum(b[:, None, 3], c[None, :, 3]) - np.maximum(b[:, None, 1], c[None, :, 1]), 0, None)
        area = np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1.0)
        return bool(((iw * ih).max(1) / area < 0.7).any())


class DetectTrack:
    """The detect-and-track loop (see the module docstring) over a runner's sources."""

    def __init__(self, runner: Any, schedule: Schedule, motion: Motion | None,
                 make_tracker: Callable[[float], Any] | None) -> None:  # fmt: skip
        self.r = runner
        self.schedule, self.motion = schedule, motion
        self.lanes = [Lane(src, make_tracker) for src in runner._sources]
        for lane in self.lanes:
            lane.size = max(8, int(schedule.backlog * lane.src.fps))
        self.scheduler = DetectScheduler(schedule, len(self.lanes))
        imgsz = getattr(runner.detector, "imgsz", None)
        self.model_hw = tuple(int(v) for v in imgsz) if motion is not None and motion.regions and imgsz else None

    # ---------------------------------------------------------------------------------------- the loop
    def run(self) -> Iterator[StreamResult]:
        r = self.r
        capture: Capture = r._capture
        while True:
            capture.check_watchdog()
            with r._cond:  # a lane takes frames while none of its frames is in the detector (its decisions then use
                # what that detection finds), up to its room; the rest waits in its source (which drops, or waits)
                taken = [[src.queue.popleft() for _ in range(min(len(src.queue), ln.room()))]
                         for src, ln in zip(r._sources, self.lanes)]  # fmt: skip
                done = r._stop.is_set() or all(s.finished and not s.queue for s in r._sources)
                if any(taken):
                    r._cond.notify_all()
            for lane, frames in zip(self.lanes, taken):
                for f in frames:
                    self._admit(lane, f)
                    if lane.waiting is not None:
                        self._grant()  # a free call goes to this frame before the next one of its source supersedes it
            self._grant()
            emitted = 0
            for lane in self.lanes:
                for res in self._emit(lane):
                    emitted += 1
                    yield res
            if r._stop.is_set() and not any(e.mode in ("detect", "regions") for ln in self.lanes for e in ln.entries):
                return  # stopped: what is not in the detector is not handed out
            if done and not any(ln.entries for ln in self.lanes):
                return
            if not emitted and not any(taken):
                with r._cond:  # nothing to do until a frame a lane can take comes, or a detection ends (both notify)
                    if not any(src.queue and ln.room() for src, ln in zip(r._sources, self.lanes)) and not r._stop.is_set():
                        r._cond.wait(0.05)

    # ---------------------------------------------------------------------------------------- deciding
    def _admit(self, lane: Lane, f: Frame) -> None:
        resized = lane.observe(f)
        motion = f.motion if isinstance(f.motion, MotionResult) else None
        if lane.waiting is not None:  # a newer frame of this source: the waiting one is carried instead
            lane.waiting.mode = "predict"
            lane.waiting = None
        if motion is not None and motion.state == "dark":
            self._append(lane, Entry(f, "gate", reset=True))  # nothing to see: what was carried goes
            return
        moving = motion is None or motion.moving
        urgent = motion is not None and (motion.state == "all" or lane.unexplained(motion, f.t_read))
        if not moving and lane.carrier.moving(new=False).any():  # stillness nothing explains: stopped, or too small
            moving = urgent = True
        every = lane.carrier.every(lane.fps, self.schedule.shift, self.schedule.max_every) if moving else None
        interval = every / max(lane.fps, 1e-6) if every else self.schedule.min_interval
        if self.scheduler.due(lane.src.index, f.t_read, interval, urgent):
            entry = Entry(f, "wait")
            lane.waiting = entry
        else:
            entry = Entry(f, "predict" if moving else "gate")
        entry.urgent, entry.reset = urgent, resized
        self._append(lane, entry)

    def _append(self, lane: Lane, entry: Entry) -> None:
        lane.entries.append(entry)

    def _grant(self) -> None:
        busy = sum(1 for ln in self.lanes for e in ln.entries if e.future is not None and not e.future.done())
        free = self.r.max_inflight - busy  # calls still in the detector (a finished one frees its slot at once)
        if free <= 0:
            return
        waiting = [Candidate(ln.src.index, ln.waiting.frame.t_read, ln.waiting.urgent, ln.waiting) for ln in self.lanes
                   if ln.waiting]  # fmt: skip
        for c in self.scheduler.order(waiting)[:free]:
            lane = self.lanes[c.source]
            self._submit(lane, c.item)
            lane.waiting = None

    def _submit(self, lane: Lane, entry: Entry) -> None:
        f = entry.frame
        motion = f.motion if isinstance(f.motion, MotionResult) else _STILL
        regions = None
        if self.model_hw is not None and motion.state == "motion":
            regions = plan_regions(motion.boxes, (f.frame.shape[1], f.frame.shape[0]), self.model_hw, self.motion)
        images = crops_of(f.frame, regions) if regions is not None else [f.frame]
        entry.mode, entry.regions = ("regions" if regions is not None else "detect"), regions
        f.t_submit = self.r.clock()
        self.scheduler.granted(lane.src.index, f.t_read)
        lane.checked = motion.boxes
        entry.future = self.r._infer.submit(images)

        def done(_: Future) -> None:
            f.t_done = self.r.clock()
            with self.r._cond:
                self.r._cond.notify_all()

        entry.future.add_done_callback(done)

    # ---------------------------------------------------------------------------------------- handing out
    def _emit(self, lane: Lane) -> Iterator[StreamResult]:
        while lane.entries:
            e = lane.entries[0]
            if e.mode == "wait" or (e.future is not None and not e.future.done()):
                return
            lane.entries.popleft()
            if e.reset:
                lane.reset()
            if e.future is not None:
                yield self._detected(lane, e)
            else:
                yield self._carried(lane, e)

    def _detected(self, lane: Lane, e: Entry) -> StreamResult:
        f = e.frame
        out = e.future.result()
        timing = out[0].timing if out else None
        t0 = time.perf_counter()
        if e.regions is not None:
            shown = lane.carrier.compose(merge_regions(out, e.regions, (f.frame.shape[1], f.frame.shape[0])), f.t_read, e.regions)
        else:
            shown = marked(out[0], False)
        if lane.tracker is not None:  # carry every box (a new one is confirmed by the tracker on the next frame), show
            tracked = lane.tracker.update(shown)  # what the tracker reports
            lane.carrier.update(with_ids(shown, tracked), f.t_read)
            shown = tracked
        else:
            lane.carrier.update(shown, f.t_read)
        track = time.perf_counter() - t0
        tm = FrameTiming(f.capture, f.t_submit - f.t_read, timing.preprocess if timing else 0.0,  # one frame a call
                         timing.infer if timing else max(0.0, f.t_done - f.t_submit), timing.postprocess if timing else 0.0,
                         track, self.r.clock() - f.t_read, len(out))  # fmt: skip
        return self._result(lane, f, shown, tm, "regions" if e.regions is not None else "detected")

    def _carried(self, lane: Lane, e: Entry) -> StreamResult:
        f = e.frame
        t0 = time.perf_counter()
        if e.mode == "gate":
            lane.carrier.freeze(f.t_read)
        dets = lane.carrier.predict(f.t_read)
        if lane.tracker is not None:  # ByteTrack sees every frame (it assumes so): its tracks follow the carried boxes
            dets = lane.tracker.update(dets)
        tm = FrameTiming(capture=f.capture, track=time.perf_counter() - t0, latency=self.r.clock() - f.t_read)
        return self._result(lane, f, dets, tm, "gated" if e.mode == "gate" else "predicted")

    def _result(self, lane: Lane, f: Frame, dets: Detections, tm: FrameTiming, mode: str) -> StreamResult:
        src = lane.src
        if lane.tracker is not None and dets.tracker_id is None:  # nothing tracked yet: still a tracked result
            dets.tracker_id = np.full(len(dets), -1, np.int64)
        with self.r._cond:
            src.processed += 1
            src.counts["carried" if mode == "predicted" else mode] += 1
            if mode == "regions":
                src.counts["detected"] += 1
            for key in SourceState.STAGE_KEYS:
                src.sums[key] += getattr(tm, key)
        return StreamResult(f.frame, dets, f.index, f.t_read, tm.latency, src.index, src.name, tm, mode)

