"""The live view (issue 19): ``LiveView`` serves one page, MJPEG per source, ``/stats`` JSON, a token, 503 beyond its
connection cap and deadlines on slow clients; the page in a real headless browser (Debian's chromium and
chromium-driver through selenium; skipped, saying why, where they are missing); ``edge-mlla watch`` end to end."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_mlla import Detections
from edge_mlla.stream import SourceStatus, StreamResult
from edge_mlla.stream.web import LiveView
from test_stream import no_thread_survives  # noqa: F401  (autouse: no test here leaves a thread running)

ROOT = Path(__file__).resolve().parents[1]


def result(source: int, index: int, value: int = 90, size=(320, 240)) -> StreamResult:
    """A result whose frame is flat ``value`` with one box."""
    frame = np.full((size[1], size[0], 3), value, np.uint8)
    d = Detections(np.array([[20, 20, 80, 90]], np.float32), np.array([0.9], np.float32), np.zeros(1, np.int64),
                   names={0: "cell"}, data={"predicted": np.array([index % 2 == 1])})  # fmt: skip
    return StreamResult(frame, d, index, 0.0, 0.01, source, f"cam{source}", mode="detected" if index % 2 == 0 else "predicted")


def get(url: str, headers: dict | None = None, timeout: float = 10) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Feeder:
    """Publishes results of ``live`` sources into ``view`` from a thread until stopped (as a runner would)."""

    def __init__(self, view: LiveView, live: list[int]) -> None:
        self.view, self.live, self.stop, self.n = view, live, threading.Event(), 0
        self.thread = threading.Thread(target=self._run, name="feeder")
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            for s in self.live:
                self.view.publish(result(s, self.n, 40 + (self.n * 7) % 200), None, {"fps": 15.0, "gated_share": 0.5})
            self.n += 1
            self.stop.wait(0.02)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


# ------------------------------------------------------------------------------------------------ the server
def test_page_stats_frames_token_and_errors():
    with LiveView(["cam0", "rtsp://u:***@cam1/live"], port=0, token="s3cret", timeout=2) as view:
        base = view.url.split("?")[0]
        assert base.startswith("http://127.0.0.1:") and view.url.endswith("?token=s3cret")
        assert get(base + "health") == (200, b"ok")  # no token needed
        assert get(base)[0] == 401 and get(base + "stats")[0] == 401 and get(base + "stats?token=nope")[0] == 401
        code, page = get(view.url)
        assert code == 200 and b'src="/stream/0.mjpg?token=s3cret"' in page and b"rtsp://u:***@cam1/live" in page
        view.publish(result(0, 3), SourceStatus(0, "cam0", "connected", note="all-black frames"), {"fps": 14.5})
        view.set_status(SourceStatus(1, "cam1", "reconnecting", attempts=2, retry_in=1.0))
        code, body = get(base + "stats", {"Authorization": "Bearer s3cret"})
        s = json.loads(body)
        assert code == 200 and [x["frames"] for x in s["sources"]] == [1, 0]
        assert s["sources"][0]["state"] == "connected" and s["sources"][0]["note"] == "all-black frames"
        assert s["sources"][0]["fps"] == 14.5 and s["sources"][1]["state"] == "reconnecting"
        code, jpg = get(base + "frame/0.jpg?token=s3cret")
        img = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR)
        assert code == 200 and img.shape == (240, 320, 3)
        assert get(base + "frame/7.jpg?token=s3cret")[0] == 404 and get(base + "nope?token=s3cret")[0] == 404


def test_mjpeg_stream_sends_new_frames():
    with LiveView(["cam0"], port=0, timeout=2, max_fps=50) as view:
        feeder = Feeder(view, [0])
        try:
            with socket.create_connection(("127.0.0.1", int(view.url.split(":")[2].split("/")[0])), timeout=10) as s:
                s.sendall(b"GET /stream/0.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
                data = b""
                while data.count(b"--frame") < 3:
                    chunk = s.recv(65536)
                    assert chunk, "the stream closed"
                    data += chunk
        finally:
            feeder.close()
    assert data.startswith(b"HTTP/1.1 200") and b"multipart/x-mixed-replace; boundary=frame" in data
    jpgs = [m for m in re.findall(rb"\r\n\r\n(\xff\xd8.*?\xff\xd9)\r\n", data, re.S)]
    assert len(jpgs) >= 2 and all(cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR) is not None for j in jpgs)


def _port(view: LiveView) -> int:
    return int(view.url.split(":")[2].split("/")[0])


def test_connections_beyond_the_cap_get_503_not_a_hang():
    """Two connections that send half a request hold the only two slots: a third gets a 503 at once; when they go,
    the server answers again."""
    with LiveView(["cam0"], port=0, timeout=60, max_clients=2) as view:
        stalled = [socket.create_connection(("127.0.0.1", _port(view)), timeout=10) for _ in range(2)]
        try:
            for s in stalled:
                s.sendall(b"GET /stats HT")  # and nothing more
            code, deadline = None, time.monotonic() + 30
            while code != 503 and time.monotonic() < deadline:  # until both are accepted and hold their slots
                code = get(view.url + "stats")[0]
            assert code == 503
        finally:
            for s in stalled:
                s.close()
        code, deadline = None, time.monotonic() + 30
        while code != 200 and time.monotonic() < deadline:
            code = get(view.url + "stats")[0]
        assert code == 200


def test_a_dribbling_client_is_dropped_at_the_request_deadline():
    """A client sending its request a byte at a time (each byte within the read timeout) is still cut off: the whole
    request has a deadline."""
    with LiveView(["cam0"], port=0, timeout=0.3) as view:
        s = socket.create_connection(("127.0.0.1", _port(view)), timeout=10)
        closed = False
        try:
            for ch in b"GET /stats HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000:
                s.sendall(bytes([ch]))
                time.sleep(0.01)
        except OSError:
            closed = True  # the server shut the connection while we were still sending
        if not closed:
            closed = s.recv(1024) == b""
        s.close()
    assert closed


def test_another_address_warns(caplog):
    LiveView(["cam0"], host="0.0.0.0", port=0)  # not started: nothing listens
    assert "reachable from the network, without TLS and without a token" in caplog.text


# ------------------------------------------------------------------------------------------------ a real browser
def _browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("no chromium / chromedriver here (Debian: apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install 'edge-mlla[dev]')")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    opts.page_load_strategy = "eager"  # an MJPEG <img> never finishes loading: do not wait for the load event
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"):
        opts.add_argument(a)
    browser = webdriver.Chrome(service=Service(driver), options=opts)
    browser.set_page_load_timeout(60)
    return browser


def test_the_page_in_a_headless_browser(tmp_path):
    """The page loads, the streams' pictures arrive, the numbers update every second, a stopped source shows it."""
    from selenium.webdriver.support.ui import WebDriverWait

    with LiveView(["cam0", "cam1"], port=0, timeout=2, token="t0k") as view:
        feeder = Feeder(view, [0])  # cam1 sends one frame, then ends
        view.publish(result(1, 0), SourceStatus(1, "cam1", "connected"), {"fps": 0.0})
        view.set_status(SourceStatus(1, "cam1", "ended"))
        browser = _browser()
        try:
            browser.get(view.url)
            wait = WebDriverWait(browser, 30, poll_frequency=0.1)
            wait.until(lambda b: b.execute_script("return document.getElementById('img0').naturalWidth") == 320)
            frames = lambda: int(browser.find_element("id", "nums0").get_attribute("data-frames") or -1)  # noqa: E731
            wait.until(lambda b: frames() > 0)
            first = frames()
            wait.until(lambda b: frames() > first)  # the stats really update
            nums1 = browser.find_element("id", "nums1")
            wait.until(lambda b: "state ended" in nums1.text)
            assert "state-ended" in nums1.get_attribute("class")
            assert "fps 15.0" in browser.find_element("id", "nums0").text
            assert browser.execute_script("return document.getElementById('img1').naturalWidth") == 320
            browser.save_screenshot(str(tmp_path / "live_view.png"))
        finally:
            browser.quit()
            feeder.close()
    assert cv2.imread(str(tmp_path / "live_view.png")) is not None


# ------------------------------------------------------------------------------------------------ edge-mlla watch
def test_watch_command_serves_the_run(exported, bccd):
    """``edge-mlla watch`` on a clip and an image folder: the page answers, /stats has both sources with their
    counts, and --seconds ends it with a summary."""
    from edge_mlla.clips import CLIP

    cmd = [sys.executable, "-m", "edge_mlla.cli", "watch", str(CLIP), str(bccd / "images" / "test"), "--model",
           str(exported("openvino")), "--port", "0", "--seconds", "4", "--realtime"]  # fmt: skip
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        while line and not line.startswith("live view: "):
            line = p.stdout.readline()
        url = line.split()[2]
        stats = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            stats = json.loads(get(url + "stats")[1])
            if all(s["frames"] > 0 for s in stats["sources"]):
                break
            time.sleep(0.1)
        assert get(url)[0] == 200
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err[-2000:]
    assert [s["name"].split("/")[-1] for s in stats["sources"]] == ["bccd_pan.mp4", "test"]
    assert stats["motion"] is True and stats["precision"] in ("f32", "bf16") and all(s["frames"] > 0 for s in stats["sources"])
    assert re.search(r"\d+ frames in [\d.]+ s: \d+ detected, \d+ gated, \d+ carried", out), out
    assert "Traceback" not in out + err


def test_watch_command_bad_arguments_are_one_line(exported):
    p = subprocess.run([sys.executable, "-m", "edge_mlla.cli", "watch", "missing.mp4", "--model", str(exported("openvino")),
                        "--port", "0"], cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert p.returncode == 2 and "video source not found: missing.mp4" in p.stderr and "Traceback" not in p.stderr
    env = {**os.environ}
    p = subprocess.run([sys.executable, "-m", "edge_mlla.cli", "watch", "0", "--model", str(exported("openvino")),
                        "--seconds", "0"], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    assert p.returncode == 2 and "--seconds must be > 0" in p.stderr
