"""Connect a :class:`~edge_mlla.stream.StreamRunner` to a :class:`~edge_mlla.stream.web.LiveView`: every result goes
to the page with its source's numbers (FPS, latency, gated share, tracks, line counts), every state change too.

Example:
    >>> from edge_mlla import Detector
    >>> from edge_mlla.stream import StreamRunner
    >>> from edge_mlla.stream.web import LiveView
    >>> from edge_mlla.stream.watch import Watch
    >>> det = Detector("model.xml")                                           # doctest: +SKIP
    >>> w = Watch(["rtsp://cam1/live", 0])                                    # doctest: +SKIP
    >>> run = StreamRunner(det, w.sources, motion=True, on_status=w.status)  # doctest: +SKIP
    >>> with LiveView(run_names(run), port=8080) as view:                   # doctest: +SKIP
    ...     w.feed(run, view)                                               # until the sources end or run.stop()
"""

from __future__ import annotations

import collections
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from edge_mlla.stream.records import SourceStatus, StreamResult
from edge_mlla.stream.track import LineCounter


def run_names(run: Any) -> list[str]:
    """The printable names of a runner's sources (passwords masked)."""
    return [s.name for s in run.sources]


class Watch:
    """Per-source numbers for a live view, kept from the results as they come (``sources``: what the runner reads;
    ``lines``: a :class:`LineCounter` per source or None). ``status`` is an ``on_status`` callback for the runner."""

    def __init__(self, sources: Sequence[Any], lines: Sequence[LineCounter | None] | None = None, window: float = 2.0) -> None:
        self.sources = list(sources)
        self.lines = list(lines) if lines is not None else [None] * len(self.sources)
        self.window = float(window)
        self.recent = [collections.deque(maxlen=256) for _ in self.sources]  # (time, latency) of recent results
        self.view: Any = None
        self._pending: list[SourceStatus] = []

    def status(self, st: SourceStatus) -> None:
        """``on_status`` for the runner: the page shows every state change, frames or not."""
        if self.view is not None:
            self.view.set_status(st)
        else:
            self._pending.append(st)

    def info(self, run: Any, r: StreamResult) -> dict[str, Any]:
        """The numbers of ``r``'s source after ``r``."""
        now = time.monotonic()
        q = self.recent[r.source]
        q.append((now, r.latency))
        while q and now - q[0][0] > self.window:
            q.popleft()
        span = q[-1][0] - q[0][0] if len(q) > 1 else 0.0
        s = run.stats.sources[r.source]
        line = self.lines[r.source]
        tid = r.detections.tracker_id
        return {
            "fps": (len(q) - 1) / span if span > 0 else 0.0,
            "latency_ms": 1000.0 * float(np.mean([x[1] for x in q])),
            "processed": s.processed, "detected": s.detected, "gated": s.gated, "carried": s.carried,
            "gated_share": s.gated / s.processed if s.processed else 0.0, "dropped": s.dropped,
            "objects": len(r.detections), "tracks": len(set(tid.tolist())) if tid is not None else None,
            "line": {"in": line.in_count, "out": line.out_count} if line is not None else None,
            "_line": line, "mode": r.mode,
        }  # fmt: skip

    def feed(self, run: Any, view: Any) -> int:
        """Hand every result of ``run`` to ``view`` until the run ends (or is stopped); returns the results fed."""
        self.view = view
        for st in self._pending:
            view.set_status(st)
        self._pending.clear()
        n = 0
        for r in run:
            line = self.lines[r.source]
            if line is not None:
                line.update(r.detections)
            view.publish(r, run.status[r.source], self.info(run, r))
            n += 1
        for st in run.status:
            view.set_status(st)
        return n
