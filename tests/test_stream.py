"""StreamRunner: stale frames dropped on live sources, files in order, reconnect (fake sources and a real MJPEG
stream over HTTP on 127.0.0.1), many sources round-robin and batched, tracking and line counting through
supervision, per-frame stage timing, bad sources as typed errors, the bundled clip, and a 2,000-frame soak.
No test leaves a thread running (autouse fixture)."""

from __future__ import annotations

import collections
import http.server
import os
import socket
import socketserver
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_mlla import Detections
from edge_mlla.errors import ConfigError, InputTypeError, MissingDependencyError, MissingFileError, SourceError
from edge_mlla.clips import CLIP, bundled_clip, make_pan_clip
from edge_mlla.stream import (
    FrameTiming,
    ImageFolderSource,
    LineCounter,
    Reconnect,
    StreamRunner,
    Tracker,
    open_source,
)

ROOT = Path(__file__).resolve().parents[1]
FAST = Reconnect(initial=0.01, factor=2.0, max_delay=0.04, max_tries=8, watchdog=0.3)


@pytest.fixture(autouse=True)
def no_thread_survives():
    """Every thread a test starts (capture, inference pools, servers) is gone when it ends."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 10
    while True:
        extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not extra or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not extra, f"threads still running after the test: {[t.name for t in extra]}"


# ------------------------------------------------------------------------------------------------ fakes
class FakeCamera:
    """A source: frame i is filled with the value (offset + i) % 256 and arrives every ``period`` seconds.

    ``fail_at``: read() returns False there; ``raise_at``: read() raises there; ``stall_at``: read() blocks
    ``stall`` seconds there, then returns False (a camera that stops delivering)."""

    def __init__(self, n: int, period: float = 0.002, offset: int = 0, fail_at=None, raise_at=None, stall_at=None,
                 stall: float = 1.0, shape=(8, 8, 3)) -> None:  # fmt: skip
        self.n, self.period, self.offset, self.i = n, period, offset, 0
        self.fail_at, self.raise_at, self.stall_at, self.stall, self.shape = fail_at, raise_at, stall_at, stall, shape
        self.released = False

    def read(self):
        if self.i >= self.n or self.i == self.fail_at:
            return False, None
        if self.i == self.raise_at:
            raise OSError("camera unplugged")
        if self.i == self.stall_at:
            time.sleep(self.stall)
            return False, None
        time.sleep(self.period)
        frame = np.full(self.shape, (self.offset + self.i) % 256, np.uint8)
        self.i += 1
        return True, frame

    def get(self, prop):
        return 0.0

    def release(self):
        self.released = True


class Factory:
    """A reconnectable source: each call opens the next capture of ``plan`` (an Exception is raised as a failed open)."""

    def __init__(self, plan) -> None:
        self.plan, self.calls = list(plan), 0

    def __call__(self):
        item = self.plan[min(self.calls, len(self.plan) - 1)]
        self.calls += 1
        if isinstance(item, Exception):
            raise item
        return item


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t
        self.lock = threading.Lock()

    def __call__(self) -> float:
        with self.lock:
            return self.t

    def advance(self, dt: float) -> None:
        with self.lock:
            self.t += dt


class SlowDetector:
    """Duck-typed detector: 'detects' one box whose class id is the frame's fill value, after ``delay`` s.

    With ``batch`` set it also has ``predict(list)``, and records the size of each call. ``until(frames)``: each call
    first waits (up to 10 s) until it returns True, so a test decides what has happened before a call ends;
    ``clock``: a FakeClock moved on by ``delay`` instead of sleeping."""

    def __init__(self, delay: float, batch: int | None = 1) -> None:
        self.delay, self.batch = delay, batch
        self.until = self.clock = None
        self.pool = ThreadPoolExecutor(2)
        self.in_flight = self.max_in_flight = 0
        self.calls: list[int] = []
        self.lock = threading.Lock()

    def _one(self, frame):
        return Detections(np.array([[1, 1, 5, 5]], np.float32), np.ones(1, np.float32), np.array([int(frame[0, 0, 0])]))

    def _run(self, frames):
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.calls.append(len(frames))
        deadline = time.monotonic() + 10
        while self.until is not None and not self.until(frames) and time.monotonic() < deadline:
            time.sleep(0.001)
        if self.clock is not None:
            self.clock.advance(self.delay)
        else:
            time.sleep(self.delay)
        with self.lock:
            self.in_flight -= 1
        return [self._one(f) for f in frames]

    def submit(self, frame) -> Future:
        return self.pool.submit(lambda: self._run([frame])[0])

    def predict(self, frames):
        return self._run(list(frames))

    def close(self):
        self.pool.shutdown(wait=True)


@pytest.fixture
def slow():
    made: list[SlowDetector] = []

    def make(delay: float = 0.0, batch: int | None = 1) -> SlowDetector:
        made.append(SlowDetector(delay, batch))
        return made[-1]

    yield make
    for d in made:
        d.close()


def _statuses(run_kwargs: dict) -> list:
    seen: list = []
    run_kwargs["on_status"] = seen.append
    return seen


# ------------------------------------------------------------------------------------------------ basics
def test_live_source_drops_stale_frames_and_results_match_their_frames(slow):
    cam = FakeCamera(60, period=0.0)
    det = slow(delay=0.0)
    det.until = lambda frames: cam.i >= min(cam.n, int(frames[0][0, 0, 0]) + 4)  # the camera is 4 frames ahead
    runner = StreamRunner(det, cam)
    assert runner.live and runner.drop_stale
    results = list(runner)
    idx = [r.index for r in results]
    assert idx == sorted(idx) and len(set(idx)) == len(idx)  # in order, no repeats
    assert runner.stats.read == 60
    assert runner.stats.dropped > 0 and runner.stats.processed == len(results) < 60
    assert runner.stats.read == runner.stats.processed + runner.stats.dropped
    for r in results:  # each result belongs to the frame it is yielded with
        assert r.detections.class_id[0] == r.index % 256 == r.frame[0, 0, 0]
        assert r.latency >= 0 and r.source == 0
    assert det.max_in_flight <= 2
    assert cam.released
    assert runner.status[0].state == "ended"  # a capture object cannot be reopened: it ends


def test_file_mode_keeps_every_frame_in_order(slow):
    cam = FakeCamera(25, period=0.0)
    det = slow(delay=0.0)
    det.until = lambda frames: int(frames[0][0, 0, 0]) != 0 or det.in_flight >= 2  # frame 0 waits for a second call
    runner = StreamRunner(det, cam, drop_stale=False, max_inflight=2)
    results = list(runner)
    assert [r.index for r in results] == list(range(25))
    assert all(r.detections.class_id[0] == r.index for r in results)
    assert runner.stats.dropped == 0 and det.max_in_flight == 2  # two requests really overlapped


def test_stop_ends_iteration(slow):
    runner = StreamRunner(slow(0.0), FakeCamera(10_000, period=0.001))
    seen = 0
    for _ in runner:
        seen += 1
        if seen == 5:
            runner.stop()
    assert 5 <= seen <= 7  # only the frames already in flight (max_inflight=2) still come out
    assert runner.status[0].state == "stopped"


def test_breaking_out_of_the_loop_releases_everything(slow):
    cam = FakeCamera(10_000, period=0.001)
    run = StreamRunner(slow(0.0), cam)
    for r in run:
        if r.index >= 3:
            break
    run.stop()
    assert cam.released  # and the autouse fixture checks that the capture thread is gone


def test_stage_timing_on_every_result(slow):
    det = slow(delay=0.01)
    det.clock = clock = FakeClock()  # each call takes 10 ms of the runner's clock
    run = StreamRunner(det, FakeCamera(12, period=0.0), drop_stale=False, max_inflight=1)
    run.clock = clock
    results = list(run)
    for r in results:
        t = r.timing
        assert isinstance(t, FrameTiming) and t.batch == 1
        assert t.infer == pytest.approx(0.01)  # a detector without its own Timing: submit -> done on the runner clock
        assert all(v >= 0 for v in t.as_ms().values())
        assert t.latency >= t.wait and r.latency == t.latency
    s = run.stats
    assert s.processed == 12 and s.fps > 0 and s.elapsed > 0
    assert set(s.stages_ms) == set(FrameTiming.STAGES)
    assert s.stages_ms["infer"] == pytest.approx(1000 * np.mean([r.timing.infer for r in results]))


def test_loop_restarts_a_file(tmp_path, slow):
    path = _write_clip(tmp_path / "three.mp4", 3, values=(10, 120, 230))
    results = list(StreamRunner(slow(0.0), path, loop=True, max_frames=7))
    assert [r.index for r in results] == list(range(7))
    means = [round(float(r.frame.mean()) / 10) * 10 for r in results]
    assert means == [10, 120, 230, 10, 120, 230, 10]


def test_image_folder_source(tmp_path, slow, val_images):
    for i, p in enumerate(val_images[:3]):
        (tmp_path / f"{i}.jpg").write_bytes(p.read_bytes())
    (tmp_path / "3.jpg").write_bytes(b"not an image")  # skipped with a warning
    (tmp_path / "notes.txt").write_text("x")
    run = StreamRunner(slow(0.0), tmp_path)
    assert not run.live and not run.drop_stale
    results = list(run)
    assert len(results) == 3
    for r, p in zip(results, val_images[:3]):
        assert np.array_equal(r.frame, cv2.imread(str(p)))
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingFileError, match="no images in folder"):
        ImageFolderSource(tmp_path / "empty")


def test_timeouts_go_to_stream_urls_only(monkeypatch):
    """OpenCV's camera backends (V4L2, DirectShow) fail an open whose parameters they do not support, so the
    open/read timeouts go to URLs (FFMPEG) only; cameras and files open with OpenCV's defaults. There is no camera
    here: this records what reaches cv2.VideoCapture."""
    import cv2

    import edge_mlla.stream.sources as stream

    calls: list[tuple] = []

    class Recorder:
        def __init__(self, *args):
            calls.append(args)

        def isOpened(self):  # noqa: N802  (OpenCV's name)
            return False

        def release(self):
            pass

    monkeypatch.setattr(stream.cv2, "VideoCapture", Recorder)
    with pytest.raises(SourceError):
        open_source(3)
    with pytest.raises(SourceError):
        open_source("rtsp://127.0.0.1:9/live", open_timeout=2, read_timeout=1)
    assert calls[0] == (3,)
    assert calls[1] == ("rtsp://127.0.0.1:9/live", cv2.CAP_FFMPEG,
                        [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 2000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 1000])  # fmt: skip


# ------------------------------------------------------------------------------------------------ bad sources
@pytest.mark.timeout(60)
def test_bad_sources_are_typed_errors_without_hanging(tmp_path, slow):
    with pytest.raises(MissingFileError, match="not found"):
        open_source(tmp_path / "nope.mp4")
    with pytest.raises(InputTypeError, match="camera index"):
        open_source(3.5)
    with pytest.raises(InputTypeError, match="submit"):
        StreamRunner(object(), FakeCamera(1))
    with pytest.raises(SourceError, match="camera 97 could not be opened"):
        open_source(97)
    bad = tmp_path / "text.mp4"
    bad.write_text("this is not a video")
    with pytest.raises(SourceError, match="could not be opened as a video"):
        open_source(bad)
    port = _free_port()  # nothing listens there: refused at once
    with pytest.raises(SourceError, match=rf"could not open stream http://127.0.0.1:{port}/video.mjpg: connection refused"):
        open_source(f"http://127.0.0.1:{port}/video.mjpg", open_timeout=2)
    with socket.socket() as silent:  # accepts the connection and never answers: the open timeout ends it
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        with pytest.raises(SourceError, match="accepts connections but sent no video within 1 s"):
            open_source(f"http://127.0.0.1:{silent.getsockname()[1]}/x", open_timeout=1)
    with pytest.raises(SourceError, match=r"user:\*\*\*@127.0.0.1"):  # a password never reaches a message
        open_source(f"rtsp://user:secret@127.0.0.1:{port}/live", open_timeout=1)
    with pytest.raises(ConfigError, match="max_tries"):
        Reconnect(max_tries=0)
    cam = FakeCamera(5)
    with pytest.raises(MissingFileError):  # a bad second source releases the first
        StreamRunner(slow(), [cam, tmp_path / "missing.mp4"])
    assert cam.released


# ------------------------------------------------------------------------------------------------ reconnect
def test_reconnect_after_read_failure_with_capped_backoff(slow):
    first = FakeCamera(100, period=0.001, fail_at=10)
    second = FakeCamera(20, period=0.001, offset=100)
    fails = [SourceError("camera busy")] * 4  # four failed reopen attempts, then the camera is back
    factory = Factory([first, *fails, second])
    kw: dict = {}
    seen = _statuses(kw)
    run = StreamRunner(slow(0.0), factory, reconnect=FAST, drop_stale=False, max_frames=30, **kw)
    results = list(run)
    states = [s.state for s in seen]
    assert states[:2] == ["connecting", "connected"]
    assert states[2:4] == ["lost", "reconnecting"] and states[-3:] == ["connecting", "connected", "ended"]
    tries = [(s.attempts, s.retry_in) for s in seen if s.state == "reconnecting"]
    # capped exponential backoff: 0.01, 0.02, 0.04, then capped at 0.04
    assert tries == [(1, 0.01), (2, 0.02), (3, 0.04), (4, 0.04), (5, 0.04)]
    assert seen[states.index("lost")].error == "read returned no frame"
    assert [r.index for r in results] == list(range(30))  # indices go on across the reconnect
    assert [int(r.frame[0, 0, 0]) for r in results] == list(range(10)) + list(range(100, 120))
    assert run.stats.reconnects == 1 and run.status[0].reconnects == 1
    assert first.released and second.released


def test_reconnect_after_read_raises(slow):
    factory = Factory([FakeCamera(50, raise_at=5), FakeCamera(5, offset=50)])
    kw: dict = {}
    seen = _statuses(kw)
    results = list(StreamRunner(slow(0.0), factory, reconnect=FAST, drop_stale=False, max_frames=10, **kw))
    lost = [s for s in seen if s.state == "lost"]
    assert len(lost) == 1 and "OSError: camera unplugged" in lost[0].error
    assert [int(r.frame[0, 0, 0]) for r in results] == [0, 1, 2, 3, 4, 50, 51, 52, 53, 54]


class StuckCamera(FakeCamera):
    """Delivers ``n`` frames, then blocks in read() until ``unblock`` is set (then returns no frame); ``entered`` is set
    when it blocks and ``on_block`` (if given) is called then."""

    def __init__(self, n: int, on_block=None, **kw) -> None:
        super().__init__(10_000, **kw)
        self.limit, self.on_block = n, on_block
        self.entered, self.unblock = threading.Event(), threading.Event()

    def read(self):
        if self.i >= self.limit:
            if self.on_block is not None:
                self.on_block()
            self.entered.set()
            self.unblock.wait(30)
            return False, None
        return super().read()


def test_stalled_source_is_caught_by_the_watchdog(slow):
    """The source blocks in read(); the runner's clock jumps past the watchdog while it is stuck: the watchdog (not a
    read error) declares it lost and a new reader takes over, on the runner's clock alone."""
    clock = FakeClock()
    stuck = StuckCamera(8, period=0.0, on_block=lambda: clock.advance(10.0))
    factory = Factory([stuck, FakeCamera(10, period=0.0, offset=100)])

    def opener():
        if factory.calls == 1:  # the watchdog replaced the stuck reader: let its read return (it is ignored)
            stuck.unblock.set()
        return factory()

    kw: dict = {}
    seen = _statuses(kw)
    policy = Reconnect(initial=0.01, factor=2.0, max_delay=0.04, max_tries=8, watchdog=1.0)
    run = StreamRunner(slow(0.0), opener, reconnect=policy, drop_stale=False, max_frames=18, **kw)
    run.clock = clock
    try:
        results = list(run)
    finally:
        stuck.unblock.set()
    lost = [s for s in seen if s.state == "lost"]
    assert len(lost) == 1 and lost[0].error == "no frame for 10.0 s (watchdog 1 s)"
    values = [int(r.frame[0, 0, 0]) for r in results]
    assert values == list(range(8)) + list(range(100, 110))
    assert run.status[0].reconnects == 1
    # the reader stuck in read() was abandoned, not joined; it exits when its read returns (the fixture waits)


def test_watchdog_gives_the_new_reader_its_own_window(slow):
    """The runner's next watchdog check can land just after the replacement reader says "connecting", before it has
    read a frame (a preempted thread under load; CI met it): it must not replace that reader too, as if the stuck
    reader's silence were its own. The check is run exactly there, from the status callback."""
    clock = FakeClock()
    stuck = StuckCamera(8, period=0.0, on_block=lambda: clock.advance(10.0))
    factory = Factory([stuck, FakeCamera(10, period=0.0, offset=100)])
    seen: list = []
    run = None

    def on_status(status) -> None:  # noqa: ANN001
        seen.append(status)
        if status.state == "connecting" and status.attempts >= 1:  # the replacement is open, nothing read yet
            run._capture.check_watchdog()

    def opener():
        if factory.calls == 1:  # the watchdog replaced the stuck reader: let its read return (it is ignored)
            stuck.unblock.set()
        return factory()

    policy = Reconnect(initial=0.01, factor=2.0, max_delay=0.04, max_tries=8, watchdog=1.0)
    run = StreamRunner(slow(0.0), opener, reconnect=policy, drop_stale=False, max_frames=18, on_status=on_status)
    run.clock = clock
    try:
        results = list(run)
    finally:
        stuck.unblock.set()
    assert [s.error for s in seen if s.state == "lost"] == ["no frame for 10.0 s (watchdog 1 s)"]
    assert [int(r.frame[0, 0, 0]) for r in results] == list(range(8)) + list(range(100, 110))


def test_stop_waits_a_bounded_total_and_never_twice_for_stuck_readers(slow):
    """Three readers blocked in read(): stop(timeout) spends timeout in total (the first wait uses it up, the others
    get 0), warns once, and a second stop does not wait on them again. The waits are recorded on a controlled clock
    (each wait on a stuck thread uses its whole budget)."""
    cams = [StuckCamera(1, period=0.0) for _ in range(3)]
    run = StreamRunner(slow(0.0), cams, reconnect=False)
    clock = FakeClock()
    run.clock = clock
    waits: list[float] = []

    def join_one(thread, timeout):
        waits.append(timeout)
        clock.advance(timeout)  # a stuck thread: the wait runs out

    run._capture.join_one = join_one
    it = iter(run)
    try:
        assert next(it).index == 0
        for c in cams:
            assert c.entered.wait(30)
        run.stop(timeout=2.0)
        assert waits == [2.0, 0.0, 0.0]
        run.stop(timeout=2.0)
        assert waits == [2.0, 0.0, 0.0]  # abandoned readers are not waited on again
        assert [st.state for st in run.status] == ["stopped"] * 3
        it.close()  # the iteration's own stop: nothing to wait on either
        assert waits == [2.0, 0.0, 0.0]
    finally:
        for c in cams:
            c.unblock.set()


def test_deprecated_keywords_still_work_with_a_warning(slow):
    with pytest.warns(DeprecationWarning, match=r"Reconnect\(open_timeout=...\)"):
        run = StreamRunner(slow(), FakeCamera(2), open_timeout=3)
    assert run.opts.open_timeout == 3 and run.policy.open_timeout == 3
    run.stop()
    with pytest.warns(DeprecationWarning, match=r"track=\{...\}"):
        run = StreamRunner(slow(), FakeCamera(2), track=True, tracker_options={"lost_track_buffer": 7})
    run.stop()
    with pytest.raises(TypeError, match="unexpected keyword"):
        StreamRunner(slow(), FakeCamera(2), open_timout=3)
    import edge_mlla.stream as stream

    with pytest.warns(DeprecationWarning, match="moved to edge_mlla.clips"):
        assert stream.bundled_clip is bundled_clip


def test_opencv_and_ffmpeg_stay_off_stderr_and_refusals_say_so():
    """A library user opening a refused URL gets one typed error naming the refusal, and nothing on stderr (OpenCV's
    '[ WARN ...]' and FFmpeg's '[tcp @ ...]' lines are silenced)."""
    import subprocess

    port = _free_port()
    code = ("from edge_mlla.stream import open_source\n"
            f"try:\n    open_source('http://127.0.0.1:{port}/video.mjpg', open_timeout=5)\n"
            "except Exception as e:\n    print(type(e).__name__, e)\n")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert out.stdout.startswith(f"SourceError could not open stream http://127.0.0.1:{port}/video.mjpg: connection "
                                 f"refused by 127.0.0.1:{port}"), out.stdout  # fmt: skip
    assert "within" not in out.stdout  # refused at once: no claim of having waited
    assert out.stderr == "", out.stderr


def test_gives_up_after_max_tries(slow):
    factory = Factory([FakeCamera(3, period=0.001), SourceError("no such camera")])
    kw: dict = {}
    seen = _statuses(kw)
    policy = Reconnect(initial=0.005, max_delay=0.01, max_tries=3, watchdog=None)
    run = StreamRunner(slow(0.0), factory, reconnect=policy, **kw)
    results = list(run)
    assert len(results) >= 1
    assert seen[-1].state == "gave_up" and seen[-1].attempts == 3
    assert "no such camera" in seen[-1].error and "after 3 tries" in str(seen[-1])
    assert run.status[0].state == "gave_up" and factory.calls == 4  # the first open + 3 tries


def test_reconnect_false_ends_the_source(slow):
    factory = Factory([FakeCamera(100, fail_at=4), FakeCamera(5)])
    run = StreamRunner(slow(0.0), factory, reconnect=False, drop_stale=False)
    assert len(list(run)) == 4 and run.status[0].state == "ended" and factory.calls == 1


class _MJPEGHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        srv = self.server
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        try:
            sent = 0
            while not srv.killed.is_set():
                if srv.frames_per_connection is not None and sent >= srv.frames_per_connection:
                    srv.killed.wait(0.05)  # a camera that stopped sending, connection kept open
                    continue
                jpg = cv2.imencode(".jpg", np.full((96, 128, 3), srv.value, np.uint8))[1].tobytes()
                head = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg)
                self.wfile.write(head + jpg + b"\r\n")
                self.wfile.flush()
                srv.sent += 1
                sent += 1
                srv.killed.wait(1 / 60)
        except OSError:  # the client went away
            pass

    def log_message(self, *args):
        pass


class MJPEGServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """MJPEG (multipart/x-mixed-replace) over HTTP on 127.0.0.1, every frame filled with ``value``; ``kill()``
    drops every connection and closes the port, like a camera that loses power."""

    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, value: int, port: int = 0, frames_per_connection: int | None = None) -> None:
        super().__init__(("127.0.0.1", port), _MJPEGHandler)
        self.value, self.sent, self.frames_per_connection = value, 0, frames_per_connection
        self.killed = threading.Event()
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, name="mjpeg-server")
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/video.mjpg"

    def kill(self) -> None:
        self.killed.set()
        self.shutdown()
        self.server_close()  # joins the handler threads
        self.thread.join()


@pytest.mark.timeout(120)
def test_real_mjpeg_stream_reconnects_after_the_server_dies(slow):
    server = MJPEGServer(value=40)
    url, port = server.url, server.server_address[1]
    kw: dict = {}
    seen = _statuses(kw)
    policy = Reconnect(initial=0.05, factor=2.0, max_delay=0.2, max_tries=50, watchdog=3.0, open_timeout=3, read_timeout=3)
    run = StreamRunner(slow(0.0), url, reconnect=policy, **kw)
    assert run.live and run.drop_stale
    values: list[int] = []
    revived = None
    try:
        for r in run:
            values.append(int(round(float(r.frame.mean()))))
            if len(values) == 10:
                server.kill()  # mid-stream: the connection drops, then the port refuses
                deadline = time.monotonic() + 60
                while not any(s.attempts >= 2 for s in seen if s.state == "reconnecting") and time.monotonic() < deadline:
                    time.sleep(0.01)  # until a second reconnect try is announced (the first failed)
                revived = MJPEGServer(value=200, port=port)
            if values[-1] > 150 and values.count(values[-1]) >= 5:
                break
    finally:
        run.stop()
        server.kill() if not server.killed.is_set() else None
        if revived is not None:
            revived.kill()
    states = [s.state for s in seen]
    assert states[:2] == ["connecting", "connected"]
    i_lost = states.index("lost")
    assert "reconnecting" in states[i_lost:] and "connected" in states[i_lost:]
    assert any(s.attempts >= 2 for s in seen if s.state == "reconnecting")  # it was down for several tries
    assert all(abs(v - 40) <= 3 for v in values[:10])  # JPEG round trip of a flat frame
    assert abs(values[-1] - 200) <= 3 and run.stats.reconnects == 1


# ------------------------------------------------------------------------------------------------ many sources
def test_many_sources_tagged_and_in_order(slow):
    cams = [FakeCamera(12, period=0.0, offset=k * 50) for k in range(3)]
    det = slow(0.001)
    run = StreamRunner(det, cams, drop_stale=False)
    results = list(run)
    assert len(results) == 36
    for k in range(3):
        mine = [r for r in results if r.source == k]
        assert [r.index for r in mine] == list(range(12))  # order kept per source
        assert all(int(r.frame[0, 0, 0]) == k * 50 + r.index == r.detections.class_id[0] for r in mine)
        assert all(r.source_name == "FakeCamera" for r in mine)
    s = run.stats
    assert [p.processed for p in s.sources] == [12, 12, 12] and s.processed == 36


def test_round_robin_takes_ready_sources_in_turn():
    """Fairness is the scheduler's rule, tested on queues the test fills (no threads, no timing): every source with a
    frame ready is served once before any is served twice, a source with nothing ready is skipped, not waited for."""
    from edge_mlla.stream.schedule import RoundRobin

    rr = RoundRobin()
    queues = [collections.deque(f"a{i}" for i in range(5)), collections.deque(["b0", "b1"]), collections.deque()]
    taken = [rr.take(queues, 1)[0] for _ in range(5)]
    assert taken == ["a0", "b0", "a1", "b1", "a2"]  # c has nothing: skipped; b runs dry: a alone
    queues[2].extend(["c0", "c1"])
    queues[1].append("b2")
    assert rr.take(queues, 4) == ["b2", "c0", "a3", "c1"]  # resumes after the last served source
    assert rr.take(queues, 4) == ["a4"] and rr.take(queues, 4) == []
    # a long run with every source always ready: no source ever leads another by more than one frame
    rr, lead = RoundRobin(), 0
    queues = [collections.deque(range(100)) for _ in range(3)]
    for _ in range(90):
        rr.take(queues, 1)
        counts = [100 - len(q) for q in queues]
        lead = max(lead, max(counts) - min(counts))
    assert lead == 1
    assert counts == [30, 30, 30]


def test_fixed_batch_model_gets_full_padded_batches(slow):
    det = slow(0.005, batch=4)
    cams = [FakeCamera(10, period=0.0, offset=k * 50) for k in range(2)]
    run = StreamRunner(det, cams, drop_stale=False, max_inflight=2)
    assert run.batch == 4
    results = list(run)
    assert len(results) == 20 and sum(det.calls) == 20
    assert max(det.calls) <= 4 and max(det.calls) > 1  # frames really went in batches
    assert all(1 <= r.timing.batch <= 4 for r in results)  # the fake reports no Timing: its call size
    for k in range(2):
        assert [r.index for r in results if r.source == k] == list(range(10))


def test_dynamic_batch_model_gets_one_frame_per_source(slow):
    det = slow(0.005, batch=None)
    cams = [FakeCamera(6, period=0.0, offset=k * 50) for k in range(3)]
    run = StreamRunner(det, cams, drop_stale=False)
    assert run.batch == 3
    assert len(list(run)) == 18 and max(det.calls) <= 3


def test_batched_real_detector_matches_single_frame_calls(exported):
    """Two copies of the clip through a batch-2 IR: every result equals a synchronous call on its frame."""
    from edge_mlla import Detector

    with Detector(exported("openvino", batch=2), conf=0.1) as det:
        assert det.batch == 2
        run = StreamRunner(det, [CLIP, CLIP], max_frames=4)
        assert run.batch == 2
        results = list(run)
        assert sorted((r.source, r.index) for r in results) == [(s, i) for s in (0, 1) for i in range(4)]
        for r in results:
            ref = det(r.frame)
            assert len(r.detections) == len(ref) > 0
            np.testing.assert_allclose(r.detections.xyxy, ref.xyxy, atol=1e-2)
            assert np.array_equal(r.detections.class_id, ref.class_id)
            assert r.timing.batch in (1, 2)  # a call takes the frames that are ready (1 padded to 2, or 2)
        assert any(r.timing.batch == 2 for r in results)


def test_video_file_with_real_detector(tmp_path, exported, val_images):
    from edge_mlla import Detector

    path = tmp_path / "clip.mp4"
    frames = [cv2.resize(cv2.imread(str(p)), (320, 240)) for p in val_images[:3]]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    for f in frames * 2:
        writer.write(f)
    writer.release()
    with Detector(exported("openvino"), conf=0.02) as det:
        runner = StreamRunner(det, path)
        assert not runner.live and not runner.drop_stale
        results = list(runner)
        assert [r.index for r in results] == list(range(6))
        for r in results:  # async pipeline gives exactly what a synchronous call gives on the same decoded frame
            assert r.detections == det(r.frame)
            assert r.timing.infer > 0 and r.timing.preprocess > 0 and r.timing.postprocess > 0
            assert r.timing.preprocess == r.detections.timing.preprocess
        assert sum(len(r.detections) for r in results) > 0


# ------------------------------------------------------------------------------------------------ tracking
class BoxesDetector(SlowDetector):
    """Returns ``script[i]`` (a list of xyxy boxes) for the frame whose fill value is i."""

    def __init__(self, script) -> None:
        super().__init__(0.0)
        self.script = script

    def _one(self, frame):
        boxes = np.array(self.script[int(frame[0, 0, 0])], np.float32).reshape(-1, 4)
        return Detections(boxes, np.full(len(boxes), 0.9, np.float32), np.zeros(len(boxes), np.int64), names={0: "cell"})


def test_tracking_and_line_counting_match_a_hand_computed_crossing():
    # three 80x80 boxes over 24 frames, a vertical line x=300 drawn top to bottom:
    # A moves right 10 px/frame, centre x 205 -> 435: crosses once, left to right (295 at frame 9, 305 at 10)
    # B moves left 10 px/frame, centre x 425 -> 195: crosses once, right to left (305 at frame 12, 295 at 13)
    # C stays at centre x=100: never crosses
    def box(cx, cy):
        return [cx - 40, cy - 40, cx + 40, cy + 40]

    script = [[box(205 + 10 * f, 100), box(425 - 10 * f, 300), box(100, 200)] for f in range(24)]
    det = BoxesDetector(script)
    try:
        run = StreamRunner(det, FakeCamera(24, period=0.0, shape=(480, 640, 3)), drop_stale=False, track=True)
        line = LineCounter((300, 0), (300, 480))
        ids, crossings = [], []
        for r in run:
            assert r.detections.tracker_id is not None
            ids.append(dict(zip(np.round(r.detections.xyxy[:, 1]).astype(int).tolist(), r.detections.tracker_id.tolist())))
            c_in, c_out = line.update(r.detections)
            crossings += [(r.index, "in", int(t)) for t in r.detections.tracker_id[c_in]]
            crossings += [(r.index, "out", int(t)) for t in r.detections.tracker_id[c_out]]
    finally:
        det.close()
    # ids are stable: each box (told apart by its fixed y) keeps one id over all 24 frames
    for y in (60, 260, 160):
        assert len({frame_ids[y] for frame_ids in ids if y in frame_ids}) == 1
    a, b = ids[-1][60], ids[-1][260]
    # LineZone: "in" = arriving on the left of start->end; for a line drawn downwards that is the +x side
    assert crossings == [(10, "in", a), (13, "out", b)]
    assert (line.in_count, line.out_count) == (1, 1)


def test_tracker_ids_are_stable_on_the_panning_clip(exported):
    """The clip pans at a known speed: a box of frame f-1 shifted by that speed is the same cell in frame f;
    ByteTrack must give it the same id."""
    from edge_mlla import Detector

    speed = (4 * 640 - 640) / 299  # px per frame, from the clip's definition (make_pan_clip docstring)
    with Detector(exported("openvino"), conf=0.3) as det:
        run = StreamRunner(det, CLIP, max_frames=60, track=True)
        prev = None
        same = total = 0
        for r in run:
            d = r.detections
            assert d.tracker_id is not None and len(set(d.tracker_id.tolist())) == len(d)  # unique within a frame
            if prev is not None and len(prev) and len(d):
                shifted = prev.xyxy - np.array([speed, 0, speed, 0], np.float32)
                iou = _iou(shifted, d.xyxy)
                for i in range(len(prev)):
                    j = int(iou[i].argmax())
                    if iou[i, j] > 0.7 and iou[:, j].argmax() == i:  # the same cell, unambiguously
                        total += 1
                        same += int(prev.tracker_id[i] == d.tracker_id[j])
            prev = d
    print(f"{same} of {total} cell-to-cell matches kept their id")
    assert total > 200  # plenty of cells followed from frame to frame
    assert same / total >= 0.97, (same, total)


def test_track_without_supervision_is_a_clear_error(monkeypatch, slow):
    monkeypatch.setitem(sys.modules, "supervision", None)
    cam = FakeCamera(3)
    with pytest.raises(MissingDependencyError, match=r"pip install 'edge-mlla\[track\]'"):
        StreamRunner(slow(), cam, track=True)
    assert cam.released
    with pytest.raises(MissingDependencyError, match="supervision"):
        LineCounter((0, 0), (1, 1))


def test_stream_module_imports_no_supervision():
    import subprocess

    code = "import sys, edge_mlla.stream; print(sorted(m for m in ('supervision', 'torch', 'openvino') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stderr[-1000:]


def test_line_counter_arguments():
    assert LineCounter.parse("10,20,30,40").start == (10.0, 20.0)
    with pytest.raises(ConfigError, match="four numbers"):
        LineCounter.parse("10,20,30")
    with pytest.raises(ConfigError, match="two different points"):
        LineCounter((5, 5), (5, 5))
    with pytest.raises(ConfigError, match="tracker_id"):
        LineCounter((0, 0), (0, 10)).update(Detections.empty())
    t = Tracker(frame_rate=30)
    assert t.update(Detections.empty()).tracker_id is not None


# ------------------------------------------------------------------------------------------------ the clip
def test_pan_clip_is_deterministic_and_pans_as_specified(tmp_path, bccd):
    tiles = sorted((bccd / "images" / "test").glob("*.jpg"))[:2]  # 1280 px wide: offsets 0, 160, ..., 640 (integers)
    a = make_pan_clip(tmp_path / "a.mp4", images=tiles, frames=5, fps=10)
    b = make_pan_clip(tmp_path / "b.mp4", images=tiles, frames=5, fps=10)
    assert a.read_bytes() == b.read_bytes()
    assert a.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600: a container running as another user reads it
    assert {p.name for p in tmp_path.iterdir()} == {"a.mp4", "b.mp4"}  # no temporary file left
    strip = np.concatenate([cv2.imread(str(p)) for p in tiles], axis=1)
    cap = cv2.VideoCapture(str(a))
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == 5 and cap.get(cv2.CAP_PROP_FPS) == 10
    for f in range(5):
        ok, frame = cap.read()
        assert ok and frame.shape == (480, 640, 3)
        assert cv2.PSNR(frame, strip[:, 160 * f : 160 * f + 640]) > 30  # mp4v loses a little
    cap.release()
    assert not list(tmp_path.glob("tmp*"))  # the temporary file was renamed


def test_bundled_clip(bccd):
    assert bundled_clip() == CLIP and CLIP.stat().st_size <= 4_000_000
    tiles = sorted((bccd / "images" / "test").glob("*.jpg"))[:4]
    strip = np.concatenate([cv2.imread(str(p)) for p in tiles], axis=1)
    cap = cv2.VideoCapture(str(CLIP))
    assert (cap.get(cv2.CAP_PROP_FRAME_COUNT), cap.get(cv2.CAP_PROP_FPS)) == (300, 30)
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (640, 480)
    ok, first = cap.read()
    cap.release()
    assert ok and cv2.PSNR(first, strip[:, :640]) > 30


# ------------------------------------------------------------------------------------------------ soak
def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") / 2**20)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads RSS from /proc")
def test_soak_2000_frames_memory_flat(slow):
    """2,000 640x480 frames through the runner with tracking: RSS grows <= 10% after warm-up (a few seconds).

    The real-detector soak (OpenVINO, bundled clip) is in benchmarks/bench_stream.py."""
    rng = np.random.default_rng(0)
    script = [[[x, y, x + 60, y + 60] for x, y in rng.integers(0, 500, (8, 2))] for _ in range(256)]
    det = BoxesDetector(script)
    try:
        run = StreamRunner(det, FakeCamera(2000, period=0.0, shape=(480, 640, 3)), drop_stale=False, track=True)
        rss = {}
        for r in run:
            if r.index in (200, 1999):
                rss[r.index] = _rss_mb()
    finally:
        det.close()
    assert run.stats.processed == 2000
    growth = rss[1999] / rss[200] - 1
    print(f"soak: RSS {rss[200]:.1f} MB after 200 frames, {rss[1999]:.1f} MB after 2000 ({100 * growth:+.1f}%)")
    assert growth <= 0.10


# ------------------------------------------------------------------------------------------------ helpers
def _write_clip(path: Path, n: int, values=(0,), size=(64, 48)) -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, size)
    for i in range(n):
        w.write(np.full((size[1], size[0], 3), values[i % len(values)], np.uint8))
    w.release()
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (n, 4) and (m, 4) xyxy boxes (written here, independent of edge_mlla.ops)."""
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(br - tl, 0, None), axis=2)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)

