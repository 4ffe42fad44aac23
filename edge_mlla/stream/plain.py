"""Every frame to the detector: the consumer loop of :class:`~edge_mlla.stream.StreamRunner` without motion gating
or a schedule. Sources are served round-robin, up to ``max_inflight`` calls are in the detector at once, a
fixed-batch model gets one batch per call (padded when fewer frames are ready), and results come out in the order
the calls were made (so each source's in its own order)."""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

from edge_mlla.results import Detections
from edge_mlla.stream.capture import Frame, SourceState
from edge_mlla.stream.records import FrameTiming, StreamResult
from edge_mlla.stream.schedule import RoundRobin


class EveryFrame:
    """The every-frame loop over a runner's sources (see the module docstring)."""

    def __init__(self, runner: Any) -> None:
        self.r = runner
        self.rr = RoundRobin()

    def _take(self, block: bool) -> list[Frame]:
        """Up to ``self.r.batch`` frames, one source at a time in round-robin order; waits briefly if ``block``."""
        with self.r._cond:
            items = self._gather()
            if not items and block and not self.r._stop.is_set() and not self._all_done_locked():
                self.r._cond.wait(0.05)
                items = self._gather()
            if items:
                self.r._cond.notify_all()  # capture threads waiting on a full queue
            return items

    def _gather(self) -> list[Frame]:
        if self.r._stop.is_set():
            return []
        return self.rr.take([s.queue for s in self.r._sources], self.r.batch)

    def _all_done_locked(self) -> bool:
        return self.r._stop.is_set() or all(s.finished and not s.queue for s in self.r._sources)

    def _submit(self, items: list[Frame]) -> Future:
        now = self.r.clock()
        for it in items:
            it.t_submit = now
        fut = self.r._infer.submit([it.frame for it in items])

        def done(_: Future) -> None:
            t = self.r.clock()
            for it in items:
                it.t_done = t

        fut.add_done_callback(done)
        return fut

    def run(self) -> Iterator[StreamResult]:
        pending: collections.deque[tuple[list[Frame], Future]] = collections.deque()
        while True:
            self.r._capture.check_watchdog()
            if len(pending) < self.r.max_inflight:
                # don't block on the sources while results are ready to hand out
                items = self._take(block=not pending)
                if items:
                    pending.append((items, self._submit(items)))
                    continue
            if not pending:
                with self.r._cond:
                    if self._all_done_locked():
                        return
                continue
            items, fut = pending.popleft()
            out = fut.result()
            for it, dets in zip(items, out):
                yield self._result(it, dets, items)

    def _result(self, it: Frame, dets: Detections, group: list[Frame]) -> StreamResult:
        src = self.r._sources[it.src]
        t_track = 0.0
        if src.tracker is not None:
            t0 = time.perf_counter()
            dets = src.tracker.update(dets)
            t_track = time.perf_counter() - t0
        tm = dets.timing
        k = max(1, tm.images) if tm is not None else len(group)
        now = self.r.clock()
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
        with self.r._cond:
            src.processed += 1
            src.counts["detected"] += 1
            for key in SourceState.STAGE_KEYS:
                src.sums[key] += getattr(timing, key)
        return StreamResult(it.frame, dets, it.index, it.t_read, timing.latency, src.index, src.name, timing)
