"""The samples as a user runs them (subprocesses): samples/camera.py on the bundled clip (tracking, line counting,
several sources, a live MJPEG stream that dies and comes back, Ctrl-C / SIGTERM), samples/app.py on images.
No traceback ever reaches the user: errors are one ``error:`` line and an exit status."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import pytest

from edge_mlla.clips import CLIP

ROOT = Path(__file__).resolve().parents[1]
CAMERA = ROOT / "samples" / "camera.py"
APP = ROOT / "samples" / "app.py"


@pytest.fixture(autouse=True)
def no_thread_survives():
    """The helper threads (output readers, MJPEG servers) are gone when a test ends."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 10
    while (extra := [t for t in threading.enumerate() if t not in before and t.is_alive()]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not extra, f"threads still running after the test: {[t.name for t in extra]}"


def run_sample(script: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def frames_of(path: Path) -> tuple[int, tuple[int, int]]:
    """Frames really decodable in a video (not the container's claim) and its (width, height)."""
    cap = cv2.VideoCapture(str(path))
    n, size = 0, (0, 0)
    while True:
        ok, f = cap.read()
        if not ok:
            break
        n, size = n + 1, (f.shape[1], f.shape[0])
    cap.release()
    return n, size


def no_traceback(p: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in p.stderr + p.stdout, p.stderr[-3000:]


def test_camera_sample_on_the_clip_tracks_counts_and_writes(tmp_path, exported):
    out = tmp_path / "out.mp4"
    p = run_sample(CAMERA, "--model", exported("openvino"), "--source", CLIP, "--save", out, "--track",
                   "--line", "320,0,320,480", "--max-frames", 48)  # fmt: skip
    no_traceback(p)
    assert p.returncode == 0, p.stderr[-3000:]
    assert frames_of(out) == (48, (640, 480))
    row = re.search(r"\| 0: .*bccd_pan\.mp4 \| ended \| (\d+) \| (\d+) \| (\d+) \| 0 \|", p.stdout)
    assert row and row.groups() == ("48", "48", "0"), p.stdout
    for stage in ("capture", "preprocess", "infer", "postprocess", "track", "draw", "write", "latency"):
        assert re.search(rf"\| {stage}[^|]* \| \d+\.\d \| \d+\.\d \| \d+\.\d \|", p.stdout), stage
    assert re.search(r"48 frames processed in [\d.]+ s: [\d.]+ FPS", p.stdout)
    # the clip pans right, so cells move left across x=320 (6.4 px a frame: 48 frames carry many a cell across): they
    # cross "out" (LineZone: in = towards +x here); a track that jitters on the line may count one "in"
    line = re.search(r"line on source 0: in (\d+), out (\d+)", p.stdout)
    assert line and int(line.group(2)) >= 1 and int(line.group(2)) > 2 * int(line.group(1)), p.stdout


def test_camera_sample_many_sources(tmp_path, exported, bccd):
    out = tmp_path / "multi.mp4"
    p = run_sample(CAMERA, "--model", exported("openvino"), "--source", CLIP, "--source", bccd / "images" / "test",
                   "--save", out, "--max-frames", 6)  # fmt: skip
    no_traceback(p)
    assert p.returncode == 0, p.stderr[-3000:]
    assert frames_of(tmp_path / "multi_0.mp4") == (6, (640, 480))
    assert frames_of(tmp_path / "multi_1.mp4")[0] == 6
    assert re.search(r"\| 1: .*images/test \| ended \| 6 \| 6 \| 0 \| 0 \|", p.stdout), p.stdout
    assert "12 frames processed" in p.stdout


def test_camera_sample_with_motion_gating_and_the_live_view(tmp_path, exported):
    p = run_sample(CAMERA, "--model", exported("openvino"), "--source", CLIP, "--motion", "--web", "0",
                   "--max-frames", 40, "--save", tmp_path / "m.mp4")  # fmt: skip
    no_traceback(p)
    assert p.returncode == 0, p.stderr[-3000:]
    assert re.search(r"live view: http://127\.0\.0\.1:\d+/", p.stdout), p.stdout
    m = re.search(r"motion gating: (\d+) detected, (\d+) gated, (\d+) carried by the tracker", p.stdout)
    assert m and sum(map(int, m.groups())) == 40 and int(m.group(1)) >= 1, p.stdout  # every frame has a result
    assert frames_of(tmp_path / "m.mp4") == (40, (640, 480))


def test_camera_show_without_gui_is_a_clear_error(exported):
    gui = re.search(r"GUI:\s*(\S+)", cv2.getBuildInformation())
    if gui and gui.group(1).upper() != "NONE" and (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        pytest.skip("this OpenCV has a GUI and there is a display")
    p = run_sample(CAMERA, "--model", exported("openvino"), "--source", CLIP, "--show")
    no_traceback(p)
    assert p.returncode == 2
    assert p.stderr.startswith("error: --show needs")
    assert "--save" in p.stderr  # says what to do instead


@pytest.mark.parametrize(
    "source, needle",
    [
        ("missing.mp4", "video source not found: missing.mp4"),
        ("97", "camera 97 could not be opened"),
        ("http://127.0.0.1:9/video.mjpg", "could not open stream http://127.0.0.1:9/video.mjpg"),
    ],
)
def test_camera_bad_sources_are_one_line_errors(exported, source, needle):
    p = run_sample(CAMERA, "--model", exported("openvino"), "--source", source, timeout=60)
    no_traceback(p)
    assert p.returncode == 2 and needle in p.stderr, p.stderr


def test_camera_bad_model_and_bad_line(tmp_path, exported):
    p = run_sample(CAMERA, "--model", tmp_path / "nope.xml", "--source", CLIP)
    no_traceback(p)
    assert p.returncode == 2 and "model file not found" in p.stderr
    p = run_sample(CAMERA, "--model", exported("openvino"), "--source", CLIP, "--line", "1,2,3")
    no_traceback(p)
    assert p.returncode == 2 and "--line needs four numbers x1,y1,x2,y2" in p.stderr


class Sample:
    """A sample running in the background; its stdout and stderr are collected by two reader threads."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, *map(str, args)], cwd=ROOT, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)  # fmt: skip
        self.out: list[str] = []
        self.err: list[str] = []
        self.changed = threading.Condition()
        self.readers = [threading.Thread(target=self._pump, args=(s, buf), daemon=True)
                        for s, buf in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]  # fmt: skip
        for t in self.readers:
            t.start()

    def _pump(self, stream, buf: list[str]) -> None:
        for line in stream:
            with self.changed:
                buf.append(line)
                self.changed.notify_all()

    def wait_for(self, needle: str, timeout: float = 120) -> None:
        """Block until ``needle`` appears on stderr."""
        with self.changed:
            ok = self.changed.wait_for(lambda: needle in "".join(self.err) or self.proc.poll() is not None, timeout)
        assert ok and needle in "".join(self.err), "".join(self.err)

    def finish(self, sig: int, timeout: float = 60) -> tuple[int, str, str]:
        """Send ``sig`` and wait for the exit; returns (status, stdout, stderr). Kills it if it does not exit."""
        try:
            self.proc.send_signal(sig)
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            for t in self.readers:
                t.join(10)
        return code, "".join(self.out), "".join(self.err)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_camera_ctrl_c_and_sigterm_exit_cleanly_with_a_summary(tmp_path, exported, sig):
    out = tmp_path / "loop.mp4"
    sample = Sample(CAMERA, "--model", exported("openvino"), "--source", CLIP, "--loop", "--save", out)
    try:
        sample.wait_for("connected")
        deadline = time.monotonic() + 60
        while not out.exists() and sample.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # the video is opened at the first processed frame
    finally:
        code, stdout, stderr = sample.finish(sig)
    assert code == 0, stderr
    assert "Traceback" not in stdout + stderr and "interrupted: stopping" in stderr
    row = re.search(r"\| 0: .*bccd_pan\.mp4 \| stopped \| (\d+) \| (\d+) \|", stdout)
    assert row and int(row.group(2)) > 0, stdout
    written = re.search(r"source 0: (\d+) frames written to", stdout)
    n, size = frames_of(out)  # the video was finalized: every frame written decodes
    assert written and n == int(written.group(1)) and size == (640, 480)
    assert int(row.group(2)) - 1 <= n <= int(row.group(2))  # the signal may land between a result and its write


@pytest.mark.timeout(180)
def test_camera_shows_a_live_stream_reconnecting(tmp_path, exported):
    from test_stream import MJPEGServer

    server = MJPEGServer(value=60)
    port = server.server_address[1]
    revived = None
    sample = Sample(CAMERA, "--model", exported("openvino"), "--source", server.url, "--save", tmp_path / "live.mp4")
    try:
        sample.wait_for("connected")
        time.sleep(1.5)  # some frames flow first (no assertion counts them: the states below are what is checked)
        server.kill()
        sample.wait_for("reconnecting")
        time.sleep(1.0)  # reconnect tries fail meanwhile (refused)
        revived = MJPEGServer(value=180, port=port)
        deadline = time.monotonic() + 60
        while "".join(sample.err).count("): connected") < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # frames from the revived stream
    finally:
        code, stdout, stderr = sample.finish(signal.SIGINT)
        if not server.killed.is_set():
            server.kill()
        if revived is not None:
            revived.kill()
    assert code == 0 and "Traceback" not in stdout + stderr
    status = [line.split("): ", 1)[1] for line in stderr.splitlines() if "): " in line]
    assert status[0] == "connected"
    assert status[1].startswith("lost") and status[2].startswith("reconnecting, try 1 in 0.5 s")
    assert "connected" in status[3:], stderr
    assert re.search(r"\| 0: http://127.0.0.1:\d+/video.mjpg \| stopped \| \d+ \| \d+ \| \d+ \| 1 \|", stdout), stdout


@pytest.mark.timeout(120)
def test_camera_seconds_ends_a_live_run_that_gets_no_frames(tmp_path, exported):
    """A stream that sends 40 frames per connection (what OpenCV needs to open it) and then nothing: --seconds still ends the run (a timer, not a
    check per frame) and the summary is printed; the reader stuck in read() does not hold the exit up."""
    from test_stream import MJPEGServer

    server = MJPEGServer(value=90, frames_per_connection=40)
    try:
        p = run_sample(CAMERA, "--model", exported("openvino"), "--source", server.url, "--seconds", 1,
                       "--save", tmp_path / "x.mp4", timeout=90)  # fmt: skip
    finally:
        server.kill()
    no_traceback(p)
    assert p.returncode == 0, p.stderr[-3000:]
    assert re.search(r"\| 0: http://127.0.0.1:\d+/video.mjpg \| stopped \| \d+ \| \d+ \|", p.stdout), p.stdout
    assert re.search(r"\d+ frames processed in [\d.]+ s", p.stdout), p.stdout


def test_app_sample(tmp_path, exported, val_images):
    p = run_sample(APP, "--model", exported("openvino"), "--out", tmp_path / "ann", *val_images[:2])
    no_traceback(p)
    assert p.returncode == 0, p.stderr
    for img in val_images[:2]:
        assert re.search(rf"{img.name}: \d+ \w+", p.stdout)
        assert cv2.imread(str(tmp_path / "ann" / img.name)).shape == cv2.imread(str(img)).shape
    p = run_sample(APP, "--model", tmp_path / "missing.onnx", val_images[0])
    no_traceback(p)
    assert p.returncode == 2 and p.stderr.startswith("error: model file not found")
