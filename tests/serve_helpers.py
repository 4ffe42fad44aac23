"""Helpers shared by the serve tests: loopback ports, raw HTTP, comparing answers with a local Detector, small
videos and a fake camera, and looking at this process tree (processes, listening sockets, peak memory)."""

from __future__ import annotations

import http.client
import socket
import time
from pathlib import Path

import cv2
import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port: int, body: bytes, ctype: str | None = "image/jpeg", path: str = "/", method: str = "POST",
         headers: dict[str, str] | None = None, timeout: float = 120.0):  # fmt: skip
    """``(status, content-type, body)`` of one request on a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        h = dict(headers or {})
        if ctype is not None:
            h["Content-Type"] = ctype
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        return r.status, r.getheader("content-type"), r.read()
    finally:
        conn.close()


def same_json(payload: dict, ref, atol: float = 1e-3) -> None:
    """The server's JSON answer equals a local Detections (boxes to ``atol`` px, classes exactly)."""
    boxes = np.asarray(payload["boxes"], np.float64).reshape(-1, 4)
    assert len(boxes) == len(ref), (len(boxes), len(ref))
    np.testing.assert_allclose(boxes, ref.xyxy, atol=atol)
    np.testing.assert_allclose(payload["scores"], ref.confidence, atol=1e-5)
    assert payload["class_ids"] == ref.class_id.tolist()
    assert payload["class_names"] == [ref.names[int(c)] for c in ref.class_id]


def same(a, b, atol: float = 1e-3) -> None:
    assert len(a) == len(b), (len(a), len(b))
    np.testing.assert_allclose(a.xyxy, b.xyxy, atol=atol)
    np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-5)
    np.testing.assert_array_equal(a.class_id, b.class_id)


def write_video(path: Path, frames: list[np.ndarray], fps: int = 10) -> Path:
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert vw.isOpened()
    for f in frames:
        vw.write(f)
    vw.release()
    return path


def read_video(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        out.append(f)
    cap.release()
    return out


class FakeCamera:
    """A live source that produces frames much faster than the server answers them."""

    live = True
    label = "fake-camera"

    def __init__(self, frames: list[np.ndarray], n: int) -> None:
        self.frames, self.n, self.i = frames, n, 0

    def read(self):
        if self.i >= self.n:
            return False, None
        time.sleep(0.002)
        f = self.frames[self.i % len(self.frames)]
        self.i += 1
        return True, f

    def get(self, prop: int) -> float:
        return 0.0

    def release(self) -> None:
        pass


def tree(psutil) -> list:
    """This process and all its descendants."""
    me = psutil.Process()
    return [me, *me.children(recursive=True)]


def ray_children(psutil) -> list[str]:
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            name = p.name()
        except psutil.NoSuchProcess:
            continue
        if name in ("raylet", "gcs_server") or name.startswith("ray::"):
            out.append(f"{p.pid}:{name}")
    return out


def listening(psutil) -> list[tuple[str, str, int]]:
    """``(process name, address, port)`` of every listening TCP socket of this process tree."""
    out = []
    for p in tree(psutil):
        try:
            out += [(p.name(), c.laddr.ip, c.laddr.port) for c in p.net_connections("inet") if c.status == psutil.CONN_LISTEN]
        except psutil.Error:
            continue
    return out


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def reset_peak_rss(pid: int) -> float:
    """Reset the kernel's peak-RSS mark of ``pid`` to its current RSS (clear_refs 5, Linux >= 4.0); returns it."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return peak_rss_mib(pid)
