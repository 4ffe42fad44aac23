"""Opening video sources: camera indices, files, ``rtsp://`` / ``http://`` URLs, image folders and caller-made
captures, with open/read timeouts for URLs and names that never show a password."""

from __future__ import annotations

import glob as _glob
import logging
import os
import re
import socket
import time
import warnings
from urllib.parse import urlsplit
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, Union

import cv2
import numpy as np

from edge_mlla import ops
from edge_mlla.errors import ImageReadError, InputTypeError, MissingFileError, SourceError

LOGGER = logging.getLogger("edge_mlla")
LIVE_PREFIXES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
_DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "rtmp": 1935, "http": 80, "https": 443}
_quieted = False


def quiet_opencv() -> None:
    """Keep OpenCV's and FFmpeg's own warnings (``[ WARN:0@0.1] global cap.cpp ...``, ``[tcp @ 0x...] Connection
    refused``) off stderr: the stream layer reports the same events as typed errors, statuses and ``logging``.
    Done once, before the first URL is opened; a value the user set in ``OPENCV_LOG_LEVEL`` or
    ``OPENCV_FFMPEG_LOGLEVEL`` is kept (set ``OPENCV_LOG_LEVEL=WARNING`` to see OpenCV's warnings again)."""
    global _quieted
    if _quieted:
        return
    _quieted = True
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # read by OpenCV when its FFmpeg backend starts
    if "OPENCV_LOG_LEVEL" not in os.environ:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def why_not_opened(url: str, open_timeout: float | None, elapsed: float, probe_timeout: float = 2.0) -> str:
    """Why FFmpeg could not open ``url``, found by connecting to its host and port once: refused at once, an
    unknown host, no answer, or a server that answers but sent no stream within ``open_timeout`` seconds.

    Example:
        >>> why_not_opened("http://127.0.0.1:9/video.mjpg", 10, 0.01)   # doctest: +SKIP
        'connection refused by 127.0.0.1:9 (nothing listens there)'
    """
    parts = urlsplit(url)
    try:
        host, port = parts.hostname, parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        host, port = None, None
    waited = f"within {open_timeout:g} s" if open_timeout else f"after {elapsed:.1f} s"
    if not host or not port or parts.scheme.lower() in ("udp", "srt"):
        return f"no stream {waited} (unreachable host, wrong path, or a stream FFMPEG cannot read)"
    limit = min(probe_timeout, open_timeout or probe_timeout)
    try:
        with socket.create_connection((host, port), timeout=limit):
            pass
    except ConnectionRefusedError:
        return f"connection refused by {host}:{port} (nothing listens there)"
    except socket.gaierror:
        return f"unknown host {host!r}"
    except socket.timeout:
        return f"{host}:{port} did not answer within {limit:g} s (unreachable host or a firewall)"
    except OSError as e:
        return f"cannot connect to {host}:{port} ({e.strerror or e})"
    if open_timeout and elapsed >= 0.8 * open_timeout:
        return f"{host}:{port} accepts connections but sent no video {waited}"
    return f"{host}:{port} answered but sent no stream FFMPEG can read after {elapsed:.1f} s (wrong path or format?)"


class FrameSource(Protocol):
    """What the runner reads from: ``cv2.VideoCapture`` or anything with the same three methods."""

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def get(self, prop: int) -> float: ...

    def release(self) -> None: ...


SourceLike = Union[int, str, os.PathLike, FrameSource, Callable[[], FrameSource]]


def _mask(url: str) -> str:
    """A URL with its password hidden (``rtsp://user:***@host``), for names and logs."""
    return re.sub(r"(://[^/:@]+):[^/@]*@", r"\1:***@", url)


def source_name(source: Any) -> str:
    """A printable name for a source (URL passwords masked).

    Example:
        >>> source_name("rtsp://admin:secret@10.0.0.5/live"), source_name(0)
        ('rtsp://admin:***@10.0.0.5/live', 'camera 0')
    """
    if isinstance(source, bool):
        return repr(source)
    if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
        return f"camera {int(source)}"
    if isinstance(source, (str, os.PathLike)):
        return _mask(str(source))
    return getattr(source, "name", None) or type(source).__name__


def _is_url(source: Any) -> bool:
    return isinstance(source, str) and source.lower().startswith(LIVE_PREFIXES)


def _cameras() -> str:
    found = sorted(_glob.glob("/dev/video*"))
    return ", ".join(found) if found else "none found under /dev/video*"


class ImageFolderSource:
    """A folder of images read as a video, sorted by name, like a file source (which files are images and how
    they are read is :func:`edge_mlla.ops.list_images` / :func:`edge_mlla.ops.read_image`'s rule).

    Images that cannot be decoded are skipped with a warning (``skipped`` counts them).

    Example:
        >>> src = ImageFolderSource("edge_mlla/data/bccd/images/test")
        >>> ok, frame = src.read()
        >>> ok, frame.shape
        (True, (480, 640, 3))
    """

    def __init__(self, folder: str | os.PathLike, fps: float = 30.0) -> None:
        self.folder = Path(folder)
        self.files = ops.list_images(self.folder)  # MissingFileError when it is not a folder
        if not self.files:
            raise MissingFileError(f"no images in folder {self.folder} (expected .jpg, .png, .bmp, .tif, .webp, ... files)")
        self.fps = float(fps)
        self.name = str(self.folder)
        self.skipped = 0
        self._i = 0

    def isOpened(self) -> bool:  # noqa: N802 (cv2.VideoCapture's name)
        return True

    def read(self) -> tuple[bool, np.ndarray | None]:
        while self._i < len(self.files):
            path = self.files[self._i]
            self._i += 1
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # a truncated image is used as decoded (strict=False)
                    return True, ops.read_image(path, strict=False)
            except (ImageReadError, MissingFileError) as e:
                self.skipped += 1
                LOGGER.warning("skipping %s", e)
        return False, None

    def get(self, prop: int) -> float:
        if prop == cv2.CAP_PROP_FPS:
            return self.fps
        if prop == cv2.CAP_PROP_FRAME_COUNT:
            return float(len(self.files))
        return 0.0

    def release(self) -> None:
        self._i = len(self.files)


def _capture_params(open_timeout: float | None, read_timeout: float | None) -> list[int]:
    params: list[int] = []
    if open_timeout:
        params += [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(open_timeout * 1000)]
    if read_timeout:
        params += [cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(read_timeout * 1000)]
    return params


def open_source(
    source: SourceLike, open_timeout: float | None = 10.0, read_timeout: float | None = 5.0
) -> tuple[FrameSource, bool]:
    """Open a camera index, a video file, a stream URL or an image folder; returns ``(capture, is_live)``.

    A capture object (anything with ``read`` and ``release``) is passed through and counts as live; a
    callable is called and its result used. Opening a URL waits at most ``open_timeout`` seconds and a read
    at most ``read_timeout`` (OpenCV's ``CAP_PROP_OPEN_TIMEOUT_MSEC`` / ``CAP_PROP_READ_TIMEOUT_MSEC``, which
    its FFMPEG backend honours). Cameras open without them: OpenCV's camera backends (V4L2, DirectShow,
    MSMF) reject properties they do not support, and a rejected open parameter fails the whole open; a
    camera that stops delivering is the runner's watchdog's job.

    Raises ``MissingFileError`` (no such file or folder), ``SourceError`` (a camera, URL or file that does
    not open), ``InputTypeError`` (not a source).

    Example:
        >>> open_source("missing.mp4")
        Traceback (most recent call last):
        ...
        edge_mlla.errors.MissingFileError: video source not found: missing.mp4 (expected a camera index, a video file, an image folder or an rtsp/http URL)
    """
    if hasattr(source, "read") and hasattr(source, "release"):
        return source, True  # a caller-made capture: treat as live (we cannot know its pacing)
    if callable(source):
        cap = source()
        if not (hasattr(cap, "read") and hasattr(cap, "release")):
            raise InputTypeError(f"a source factory must return a capture (read/get/release), got {type(cap).__name__}")
        if hasattr(cap, "isOpened") and not cap.isOpened():
            raise SourceError(f"source factory {source_name(source)} returned a capture that is not opened")
        return cap, True
    if isinstance(source, bool) or not isinstance(source, (int, str, os.PathLike)):
        raise InputTypeError(
            f"source must be a camera index, a video path, an image folder or a URL, got {type(source).__name__}"
        )
    if isinstance(source, str) and source.strip().isdigit():
        source = int(source)
    params = _capture_params(open_timeout, read_timeout)
    if isinstance(source, int):
        cap = cv2.VideoCapture(source)  # no timeout params: camera backends fail the open on unsupported ones
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"camera {source} could not be opened (no such device, or busy); cameras here: {_cameras()}")
        return cap, True
    quiet_opencv()
    if _is_url(source):
        t0 = time.monotonic()
        cap = cv2.VideoCapture(source, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            why = why_not_opened(source, open_timeout, time.monotonic() - t0)
            raise SourceError(f"could not open stream {_mask(source)}: {why} (expected e.g. rtsp://host:554/path or "
                              "http://host:port/video.mjpg)")  # fmt: skip
        return cap, True
    path = Path(source)
    if path.is_dir():
        return ImageFolderSource(path), False
    if not path.is_file():
        raise MissingFileError(
            f"video source not found: {path} (expected a camera index, a video file, an image folder or an rtsp/http URL)"
        )
    cap = cv2.VideoCapture(str(path))  # a local file: nothing to time out, and no backend may reject the params
    if not cap.isOpened():
        cap.release()
        raise SourceError(f"{path} could not be opened as a video (not a video, or a codec this OpenCV build lacks)")
    return cap, False
