"""Many cameras against one served Detector: :func:`serve_streams` runs the stream layer's
:class:`~edge_mlla.stream.StreamRunner` over K sources with a :class:`~edge_mlla.serve.RemoteDetector` (HTTP or
the handle) and reports per-source counts, failures, FPS and latency.

Files are read frame by frame (every frame, back-pressured by the server); cameras and URLs keep only their newest
frame (stale ones are dropped and counted) and reconnect as the runner does. A frame the server fails after the
client's retries is counted as failed (in the report, not in a log line per frame) and the run goes on; when nothing
has answered for ``give_up_s`` seconds the run gives up with one warning (``StreamsReport.gave_up`` says why).

Imports inside functions: our module stream pulls in more than importing this module needs, so it loads when the
function that uses them runs.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_mlla.errors import ConfigError, InputTypeError
from edge_mlla.results import Detections
from edge_mlla.serve.client import RemoteDetector, Retry
from edge_mlla.serve.config import APP_NAME, positive_int, positive_seconds

LOGGER = logging.getLogger("edge_mlla.serve")


def open_capture(source: Any, open_timeout: float | None = 10.0, read_timeout: float | None = 5.0) -> tuple[Any, bool, str]:
    """Open a camera index, video file, image folder or stream URL; returns ``(capture, live, label)``, by the
    stream layer's rule (:func:`edge_mlla.stream.open_source`; URL passwords masked in ``label``).

    Example:
        >>> open_capture("missing.mp4")
        Traceback (most recent call last):
        ...
        edge_mlla.errors.MissingFileError: video source not found: missing.mp4 (expected a camera index, a video file, an image folder or an rtsp/http URL)
    """
    from edge_mlla.stream import open_source, source_name

    cap, live = open_source(source, open_timeout=open_timeout, read_timeout=read_timeout)
    return cap, live, source_name(source)


@dataclass
class FrameResult:
    """One answered frame of one source (``latency_s``: from the frame's read to its answer)."""

    source: int
    frame: int
    detections: Detections
    latency_s: float


@dataclass
class SourceStats:
    """One source's counts, from the runner's statistics plus the failures seen here: ``read`` = ``processed`` +
    ``dropped`` (stale frames of a live source) + ``errors`` (frames the server failed after the client's retries)
    when the source ran to its end; a stop (``duration_s``, giving up) also leaves frames read but not answered."""

    source: str
    live: bool
    read: int = 0
    processed: int = 0
    dropped: int = 0
    errors: int = 0
    reconnects: int = 0
    boxes: int = 0
    elapsed_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    results: list[FrameResult] = field(default_factory=list, repr=False)
    last_error: str = ""

    @property
    def fps(self) -> float:
        """Answered frames per second over the run."""
        return self.processed / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        """JSON-ready counters, FPS and latency percentiles (ms)."""
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        keys = ("source", "live", "read", "processed", "dropped", "errors", "reconnects", "boxes", "last_error")
        return {k: getattr(self, k) for k in keys} | {"elapsed_s": round(self.elapsed_s, 3), "fps": round(self.fps, 2),
                                                       "p50_ms": round(float(np.percentile(lat, 50)), 1),
                                                       "p99_ms": round(float(np.percentile(lat, 99)), 1)}  # fmt: skip


@dataclass
class StreamsReport:
    """What :func:`serve_streams` measured: per-source stats, the aggregate, the client's retries, and why it
    gave up (empty when it did not)."""

    sources: list[SourceStats]
    elapsed_s: float
    transport: str
    retries: int = 0
    gave_up: str = ""

    @property
    def fps(self) -> float:
        """All sources' answered frames per second."""
        return sum(s.processed for s in self.sources) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def failed(self) -> int:
        """Frames the server failed (after retries), all sources."""
        return sum(s.errors for s in self.sources)

    def table(self) -> str:
        """A Markdown table, one row per source plus the total."""
        rows = ["| source | live | read | processed | dropped | failed | boxes | FPS | p50 ms | p99 ms |",
                "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for s in self.sources:
            m = s.summary()
            rows.append(f"| {s.source} | {'yes' if s.live else 'no'} | {s.read} | {s.processed} | {s.dropped} | {s.errors} "
                        f"| {s.boxes} | {m['fps']:.1f} | {m['p50_ms']:.1f} | {m['p99_ms']:.1f} |")  # fmt: skip
        tot = lambda k: sum(getattr(s, k) for s in self.sources)  # noqa: E731
        rows.append(f"| all ({self.transport}, {self.retries} retries) | | {tot('read')} | {tot('processed')} "
                    f"| {tot('dropped')} | {tot('errors')} | {tot('boxes')} | {self.fps:.1f} | | |")  # fmt: skip
        return "\n".join(rows)

    def to_dict(self) -> dict[str, Any]:
        return {"transport": self.transport, "elapsed_s": round(self.elapsed_s, 3), "fps": round(self.fps, 2),
                "retries": self.retries, "failed": self.failed, "gave_up": self.gave_up,
                "sources": [s.summary() for s in self.sources]}  # fmt: skip


class _Failed(Detections):
    """What a frame the server failed yields through the runner: no boxes, and the error."""

    error: str = ""


class _Tolerant:
    """The detector the runner sees: a :class:`RemoteDetector` whose failures become :class:`_Failed` results (the run
    goes on), watching for an outage: nothing answered for ``give_up_s`` seconds (``clock``) sets :attr:`gave_up`."""

    batch = 1

    def __init__(self, remote: RemoteDetector, give_up_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.remote, self.give_up_s, self.clock = remote, give_up_s, clock
        self.last_ok = clock()
        self.failed = 0
        self.gave_up = ""
        self.outage = threading.Event()

    def submit(self, frame: np.ndarray) -> Future:
        out: Future = Future()

        def done(f: Future) -> None:
            try:
                out.set_result(f.result())
                self.last_ok = self.clock()
            except Exception as e:  # counted by the caller from the result
                out.set_result(self._failure(e))

        self.remote.submit(frame).add_done_callback(done)
        return out

    def _failure(self, e: Exception) -> _Failed:
        self.failed += 1
        error = f"{type(e).__name__}: {e}"[:300]
        LOGGER.debug("a frame failed after %d retries: %s", self.remote.retry.tries, error)
        down = self.clock() - self.last_ok
        if down >= self.give_up_s and not self.gave_up:
            self.gave_up = f"no answer for {down:.0f} s ({self.failed} frames failed; last: {error}); giving up"
            self.outage.set()
        failed = _Failed(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
        failed.error = error
        return failed


def _check(sources: Sequence[Any], max_frames: int | None, duration_s: float | None) -> None:
    if isinstance(sources, (str, int, os.PathLike)) or not sources:
        raise InputTypeError("sources must be a non-empty list of camera indexes, video paths, image folders or URLs")
    if max_frames is not None:
        positive_int(max_frames, "max_frames")
    if duration_s is not None:
        positive_seconds(duration_s, "duration_s")


def serve_streams(
    sources: Sequence[Any],
    *,
    url: str | None = None,
    app: str = APP_NAME,
    address: str | None = None,
    duration_s: float | None = None,
    max_frames: int | None = None,
    encoding: str = "jpeg",
    retry: Retry | None = None,
    give_up_s: float = 30.0,
    keep_results: bool = False,
    on_result: Callable[[FrameResult], None] | None = None,
) -> StreamsReport:
    """Send frames of K sources to a served Detector through a :class:`~edge_mlla.stream.StreamRunner` and measure.

    With ``url`` frames go over HTTP (``encoding``: ``jpeg`` q90 or lossless ``png``); without it through Ray's
    handle (``app``, ``address``) as arrays. A request a lost replica failed is retried (``retry``); a frame that
    still fails is counted (``errors``) and the run goes on, until nothing has answered for ``give_up_s`` seconds:
    then it stops with one warning and ``report.gave_up`` says why. Stops at ``duration_s``, after ``max_frames``
    per source, or when every source ends.

    Example:
        >>> rep = serve_streams(["cam1.mp4", "cam2.mp4", 0], url="http://127.0.0.1:8000/", duration_s=30)  # doctest: +SKIP
        >>> print(rep.table())                                                                          # doctest: +SKIP
    """
    from edge_mlla.stream import Reconnect, StreamRunner

    _check(sources, max_frames, duration_s)
    positive_seconds(give_up_s, "give_up_s")
    if encoding not in ("jpeg", "png"):
        raise ConfigError(f"encoding must be 'jpeg' or 'png', got {encoding!r}")
    k = len(sources)
    remote = RemoteDetector(app, address=address, retry=retry, url=url, encoding=encoding, workers=k + 1)
    det = _Tolerant(remote, give_up_s)
    try:
        runner = StreamRunner(det, list(sources), max_inflight=k + 1, max_frames=max_frames,
                              reconnect=Reconnect(max_tries=3))  # fmt: skip
        stats = [SourceStats(s.name, s.live) for s in runner.sources]
        stop = threading.Event()
        watcher = threading.Thread(target=_watch, args=(runner, det.outage, stop, duration_s), daemon=True)
        watcher.start()
        t0 = time.perf_counter()
        try:
            for r in runner:
                _record(stats[r.source], r, keep_results, on_result)
        finally:
            stop.set()
            runner.stop()
        elapsed = time.perf_counter() - t0
    finally:
        remote.close()
    report = _report(runner, stats, elapsed, "http" if url else "handle", remote.retries, det.gave_up)
    if det.gave_up:
        LOGGER.warning("serve-streams: %s", det.gave_up)
    LOGGER.info("streams: %d sources, %.1f FPS total over %.1f s (%s)", k, report.fps, report.elapsed_s, report.transport)
    return report


def _watch(runner: Any, outage: threading.Event, stop: threading.Event, duration_s: float | None) -> None:
    """Stop the runner at ``duration_s`` or on an outage, whichever comes first (or never, once ``stop`` is set)."""
    deadline = None if duration_s is None else time.monotonic() + duration_s
    while not stop.is_set():
        if outage.wait(0.1) or (deadline is not None and time.monotonic() >= deadline):
            runner.stop()
            return


def _record(st: SourceStats, r: Any, keep: bool, on_result: Callable[[FrameResult], None] | None) -> None:
    if isinstance(r.detections, _Failed):
        st.errors += 1
        st.last_error = r.detections.error
        return
    st.boxes += len(r.detections)
    st.latencies_ms.append(1000 * r.latency)
    res = FrameResult(r.source, r.index, r.detections, r.latency)
    if keep:
        st.results.append(res)
    if on_result is not None:
        on_result(res)


def _report(runner: Any, stats: list[SourceStats], elapsed: float, transport: str, retries: int, gave_up: str) -> StreamsReport:
    for st, per in zip(stats, runner.stats.sources):
        st.read, st.dropped, st.reconnects = per.read, per.dropped, per.reconnects
        st.processed = per.processed - st.errors  # the runner counts a failed frame as processed
        st.elapsed_s = elapsed
    return StreamsReport(stats, elapsed, transport, retries, gave_up)


__all__ = ["FrameResult", "SourceStats", "StreamsReport", "open_capture", "serve_streams"]
