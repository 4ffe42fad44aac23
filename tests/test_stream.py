"""StreamRunner: stale frames are dropped on live sources, files keep every frame in order, results match frames."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from edge_mlla import Detections
from edge_mlla.errors import InputTypeError, MissingFileError
from edge_mlla.stream import StreamRunner, open_source


class FakeCamera:
    """A live source: frame i is filled with the value i % 256 and arrives every ``period`` seconds."""

    def __init__(self, n: int, period: float = 0.002) -> None:
        self.n, self.period, self.i = n, period, 0
        self.released = False

    def read(self):
        if self.i >= self.n:
            return False, None
        time.sleep(self.period)
        frame = np.full((8, 8, 3), self.i % 256, np.uint8)
        self.i += 1
        return True, frame

    def get(self, prop):
        return 0.0

    def release(self):
        self.released = True


class SlowDetector:
    """Duck-typed detector: 'detects' one box whose class id is the frame's fill value, after ``delay`` s."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.pool = ThreadPoolExecutor(2)
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()

    def _run(self, frame):
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        time.sleep(self.delay)
        with self.lock:
            self.in_flight -= 1
        return Detections(np.zeros((1, 4), np.float32), np.ones(1, np.float32), np.array([int(frame[0, 0, 0])]))

    def submit(self, frame) -> Future:
        return self.pool.submit(self._run, frame)


def test_live_source_drops_stale_frames_and_results_match_their_frames():
    cam = FakeCamera(60, period=0.002)
    det = SlowDetector(delay=0.02)  # ~10x slower than the camera
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
        assert r.latency >= 0
    assert det.max_in_flight <= 2
    assert cam.released


def test_file_mode_keeps_every_frame_in_order():
    cam = FakeCamera(25, period=0.0)
    det = SlowDetector(delay=0.002)
    runner = StreamRunner(det, cam, drop_stale=False, max_inflight=2)
    results = list(runner)
    assert [r.index for r in results] == list(range(25))
    assert all(r.detections.class_id[0] == r.index for r in results)
    assert runner.stats.dropped == 0 and det.max_in_flight == 2  # two requests really overlapped


def test_stop_ends_iteration():
    runner = StreamRunner(SlowDetector(0.0), FakeCamera(10_000, period=0.001))
    seen = 0
    for _ in runner:
        seen += 1
        if seen == 5:
            runner.stop()
    assert 5 <= seen <= 7  # only the frames already in flight (max_inflight=2) still come out


def test_video_file_with_real_detector(tmp_path, trained_pt, exported, val_images):
    from edge_mlla import Detector

    path = tmp_path / "clip.mp4"
    frames = [cv2.resize(cv2.imread(str(p)), (320, 240)) for p in val_images[:3]]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    for f in frames * 2:
        writer.write(f)
    writer.release()
    det = Detector(exported("openvino"), conf=0.02)
    runner = StreamRunner(det, path)
    assert not runner.live and not runner.drop_stale
    results = list(runner)
    assert [r.index for r in results] == list(range(6))
    for r in results:  # async pipeline gives exactly what a synchronous call gives on the same decoded frame
        assert r.detections == det(r.frame)
    assert sum(len(r.detections) for r in results) > 0


def test_bad_sources(tmp_path):
    with pytest.raises(MissingFileError, match="not found"):
        open_source(tmp_path / "nope.mp4")
    with pytest.raises(InputTypeError, match="camera index"):
        open_source(3.5)
    with pytest.raises(InputTypeError, match="submit"):
        StreamRunner(object(), FakeCamera(1))
