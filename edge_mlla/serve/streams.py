"""Many cameras against one served Detector: :func:`serve_streams` sends K sources to an app over HTTP or the
handle and reports per-source counts, FPS and latency."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import cv2
import numpy as np

from edge_mlla.errors import ConfigError, ImageReadError, InputTypeError
from edge_mlla.results import Detections
from edge_mlla.serve.client import HTTPClient, RemoteDetector, Retry, retryable
from edge_mlla.serve.codec import detections_from_json
from edge_mlla.serve.config import APP_NAME, positive_int

LOGGER = logging.getLogger("edge_mlla.serve")


def open_capture(source: Any, open_timeout: float | None = 10.0, read_timeout: float | None = 5.0) -> tuple[Any, bool, str]:
    """Open a camera index, video file, image folder or stream URL; returns ``(capture, live, label)``.

    The same rule as the stream runner's (:func:`edge_mlla.stream.open_source`: open and read timeouts, so a
    dead RTSP camera cannot hang a client; URL passwords masked in ``label``). Cameras and URLs are live
    (latest-frame policy); files and folders are read frame by frame. An object with ``read()``/``release()``
    is used as is (live unless it has ``live = False``).

    Example:
        >>> open_capture("missing.mp4")
        Traceback (most recent call last):
        ...
        edge_mlla.errors.MissingFileError: video source not found: missing.mp4 (expected a camera index, a video file, an image folder or an rtsp/http URL)
    """
    from edge_mlla.stream import open_source, source_name

    if hasattr(source, "read") and hasattr(source, "release"):
        return source, bool(getattr(source, "live", True)), getattr(source, "label", type(source).__name__)
    cap, live = open_source(source, open_timeout=open_timeout, read_timeout=read_timeout)
    return cap, live, source_name(source)


@dataclass
class FrameResult:
    """One answered frame of one source."""

    source: int
    frame: int
    detections: Detections
    latency_s: float


@dataclass
class SourceStats:
    """Per-source counters: ``read`` = ``processed`` + ``dropped`` (+ ``errors``) once finished."""

    source: str
    live: bool
    read: int = 0
    sent: int = 0
    processed: int = 0
    dropped: int = 0
    errors: int = 0
    retries: int = 0
    boxes: int = 0
    elapsed_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    results: list[FrameResult] = field(default_factory=list, repr=False)
    last_error: str = ""

    @property
    def fps(self) -> float:
        """Answered frames per second over the source's run time."""
        return self.processed / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        """JSON-ready counters, FPS and latency percentiles (ms)."""
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        d = {k: v for k, v in asdict(self).items() if k not in ("latencies_ms", "results")}
        return d | {"fps": round(self.fps, 2), "p50_ms": round(float(np.percentile(lat, 50)), 1),
                    "p99_ms": round(float(np.percentile(lat, 99)), 1)}  # fmt: skip


@dataclass
class StreamsReport:
    """What :func:`serve_streams` measured: per-source stats and the aggregate."""

    sources: list[SourceStats]
    elapsed_s: float
    transport: str

    @property
    def fps(self) -> float:
        """All sources' answered frames per second."""
        return sum(s.processed for s in self.sources) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def table(self) -> str:
        """A Markdown table, one row per source plus the total."""
        rows = ["| source | live | read | processed | dropped | errors | retries | boxes | FPS | p50 ms | p99 ms |",
                "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for s in self.sources:
            m = s.summary()
            rows.append(f"| {s.source} | {'yes' if s.live else 'no'} | {s.read} | {s.processed} | {s.dropped} | {s.errors} "
                        f"| {s.retries} | {s.boxes} | {m['fps']:.1f} | {m['p50_ms']:.1f} | {m['p99_ms']:.1f} |")  # fmt: skip
        tot = lambda k: sum(getattr(s, k) for s in self.sources)
        rows.append(f"| all ({self.transport}) | | {tot('read')} | {tot('processed')} | {tot('dropped')} | {tot('errors')} "
                    f"| {tot('retries')} | {tot('boxes')} | {self.fps:.1f} | | |")  # fmt: skip
        return "\n".join(rows)

    def to_dict(self) -> dict[str, Any]:
        return {"transport": self.transport, "elapsed_s": round(self.elapsed_s, 3), "fps": round(self.fps, 2),
                "sources": [s.summary() for s in self.sources]}  # fmt: skip


class _LatestFrame:
    """Capture thread for a live source: keeps only the newest frame; overwritten frames count as dropped."""

    def __init__(self, cap: Any, stats: SourceStats, stop: threading.Event) -> None:
        self.cap, self.stats, self.stop = cap, stats, stop
        self.halt = threading.Event()  # this source only
        self.cond = threading.Condition()
        self.frame: tuple[int, np.ndarray] | None = None
        self.done = False
        self.thread = threading.Thread(target=self._loop, daemon=True, name="edge_mlla-capture")
        self.thread.start()

    def _loop(self) -> None:
        try:
            while not (self.stop.is_set() or self.halt.is_set()):
                ok, img = self.cap.read()
                if not ok or img is None:
                    break
                with self.cond:
                    if self.frame is not None:
                        self.stats.dropped += 1
                    self.frame = (self.stats.read, img)
                    self.stats.read += 1
                    self.cond.notify()
        finally:
            with self.cond:
                self.done = True
                self.cond.notify()

    def next(self) -> tuple[int, np.ndarray] | None:
        with self.cond:
            while self.frame is None and not self.done and not self.stop.is_set():
                self.cond.wait(0.1)
            item, self.frame = self.frame, None
            return item

    def close(self, stats: SourceStats) -> None:
        """The sender is done (max_frames, end, stop): stop the capture thread; a frame read but never sent
        counts as dropped."""
        self.halt.set()
        self.thread.join(timeout=5.0)
        with self.cond:
            if self.frame is not None:
                stats.dropped += 1
                self.frame = None


@dataclass
class _Plan:
    """What every sender shares: where frames go, how they are encoded, when to stop."""

    url: str | None
    remote: RemoteDetector | None
    encoding: str
    jpeg_quality: int
    retry: Retry
    timeout_s: float
    max_frames: int | None
    keep_results: bool
    on_result: Callable[[FrameResult], None] | None
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, client: HTTPClient | None, img: np.ndarray) -> Detections:
        if client is not None:
            jpeg = self.encoding == "jpeg"
            ext, params = (".jpg", [cv2.IMWRITE_JPEG_QUALITY, int(self.jpeg_quality)]) if jpeg else (".png", [cv2.IMWRITE_PNG_COMPRESSION, 1])
            ok, buf = cv2.imencode(ext, img, params)
            if not ok:
                raise ImageReadError(f"could not encode a {img.shape} frame as {self.encoding}")
            return detections_from_json(client.post_bytes(buf.tobytes(), "image/jpeg" if jpeg else "image/png"))
        return self.remote.predict(img)


def _next_frame(cap: Any, latest: _LatestFrame | None, st: SourceStats) -> tuple[int, np.ndarray] | None:
    if latest is not None:
        return latest.next()
    ok, img = cap.read()
    if not ok or img is None:
        return None
    st.read += 1
    return st.read - 1, img


def _send_source(plan: _Plan, i: int, cap: Any, live: bool, st: SourceStats) -> None:
    """One source's sender thread: read, send (the client retries what a lost replica failed), record."""
    client = HTTPClient(plan.url, plan.timeout_s, retry=plan.retry) if plan.url else None
    latest = _LatestFrame(cap, st, plan.stop) if live else None
    t_start = time.perf_counter()
    try:
        while not plan.stop.is_set() and (plan.max_frames is None or st.sent < plan.max_frames):
            item = _next_frame(cap, latest, st)
            if item is None:
                break
            idx, img = item
            st.sent += 1
            t0 = time.perf_counter()
            try:
                d = plan.send(client, img)
            except Exception as e:  # counted and recorded; the source goes on
                st.errors += 1
                st.last_error = f"{type(e).__name__}: {e}"[:300]
                LOGGER.warning("source %s frame %d failed: %s", st.source, idx, st.last_error)
                continue
            lat = time.perf_counter() - t0
            st.processed += 1
            st.boxes += len(d)
            st.latencies_ms.append(1000 * lat)
            res = FrameResult(i, idx, d, lat)
            if plan.keep_results:
                st.results.append(res)
            if plan.on_result is not None:
                with plan.lock:
                    plan.on_result(res)
    finally:
        st.elapsed_s = time.perf_counter() - t_start
        st.retries = (client.retries if client is not None else 0)
        if latest is not None:
            latest.close(st)
        if client is not None:
            client.close()


def _open_all(sources: Sequence[Any]) -> list[tuple[Any, bool, str]]:
    opened: list[tuple[Any, bool, str]] = []
    try:
        for s in sources:
            opened.append(open_capture(s))
    except BaseException:
        for cap, _, _ in opened:
            cap.release()
        raise
    return opened


def serve_streams(
    sources: Sequence[Any],
    *,
    url: str | None = None,
    app: str = APP_NAME,
    address: str | None = None,
    duration_s: float | None = None,
    max_frames: int | None = None,
    encoding: str = "jpeg",
    jpeg_quality: int = 90,
    retry: Retry | None = None,
    timeout_s: float = 60.0,
    keep_results: bool = False,
    on_result: Callable[[FrameResult], None] | None = None,
) -> StreamsReport:
    """Send frames of K sources to a served Detector, one sender thread per source, and measure.

    Files are read frame by frame (every frame, back-pressured by the server); cameras and URLs
    through a capture thread that keeps only the latest frame (stale frames are dropped and counted).
    With ``url`` frames go over HTTP (encoded as ``encoding``: ``jpeg`` or lossless ``png``);
    without it through :class:`RemoteDetector` (``app``, ``address``) as raw arrays. A request a lost
    replica failed is retried (``retry``); retries and final failures are counted per source. Stops at
    ``duration_s``, after ``max_frames`` per source, or when every source ends.

    Example:
        >>> rep = serve_streams(["cam1.mp4", "cam2.mp4", 0], url="http://127.0.0.1:8000/", duration_s=30)  # doctest: +SKIP
        >>> print(rep.table())                                                                          # doctest: +SKIP
    """
    if isinstance(sources, (str, int, os.PathLike)) or not sources:
        raise InputTypeError("sources must be a non-empty list of camera indexes, video paths, image folders or URLs")
    if encoding not in ("jpeg", "png"):
        raise ConfigError(f"encoding must be 'jpeg' or 'png', got {encoding!r}")
    if max_frames is not None:
        max_frames = positive_int(max_frames, "max_frames")
    if duration_s is not None and (not isinstance(duration_s, (int, float)) or duration_s <= 0):
        raise ConfigError(f"duration_s must be a positive number of seconds, got {duration_s!r}")
    if url:
        HTTPClient(url)  # validates the URL
    remote = None if url else RemoteDetector(app, address=address, timeout_s=timeout_s, retry=retry)
    plan = _Plan(url, remote, encoding, jpeg_quality, retry or Retry(), timeout_s, max_frames, keep_results, on_result)
    opened = _open_all(sources)
    stats = [SourceStats(label, live) for _, live, label in opened]
    t0 = time.perf_counter()
    threads = [threading.Thread(target=_send_source, args=(plan, i, cap, live, stats[i]), daemon=True,
                                name=f"edge_mlla-stream{i}") for i, (cap, live, _) in enumerate(opened)]  # fmt: skip
    for t in threads:
        t.start()
    try:
        _join(threads, plan.stop, None if duration_s is None else t0 + duration_s)
    finally:
        plan.stop.set()
        for cap, _, _ in opened:
            cap.release()
    report = StreamsReport(stats, time.perf_counter() - t0, "http" if url else "handle")
    LOGGER.info("streams: %d sources, %.1f FPS total over %.1f s (%s)", len(stats), report.fps, report.elapsed_s, report.transport)
    return report


def _join(threads: list[threading.Thread], stop: threading.Event, deadline: float | None) -> None:
    try:
        for t in threads:
            while t.is_alive():
                remaining = None if deadline is None else deadline - time.perf_counter()
                if remaining is not None and remaining <= 0:
                    stop.set()
                t.join(timeout=0.2 if remaining is None else max(0.01, min(0.2, remaining)))
    except KeyboardInterrupt:
        stop.set()
        for t in threads:
            t.join(timeout=10.0)


__all__ = ["FrameResult", "SourceStats", "StreamsReport", "open_capture", "serve_streams"]
