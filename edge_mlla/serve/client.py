"""Clients of a served Detector: :class:`HTTPClient` (plain HTTP, keep-alive, bounded retries) and
:class:`RemoteDetector` (Ray Serve's handle: arrays through Ray's object store). Both retry what a lost replica
costs (HTTP 500/502/503/504, a dropped connection, Ray's actor errors) a bounded number of times, with capped
exponential back-off whose ``sleep`` is injected (tests pass a fake one).

Imports inside functions: cv2 is optional or slow to import; our modules serve.app, serve.raystart pull in more than
importing this module needs, so they load when the function that uses them runs.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import threading
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_mlla._env import env_token
from edge_mlla.errors import ConfigError, InputTypeError, MissingFileError, ServeError, ShapeError
from edge_mlla.results import Detections
from edge_mlla.serve.codec import detections_from_json
from edge_mlla.serve.config import APP_NAME

LOGGER = logging.getLogger("edge_mlla.serve")
RETRY_STATUSES = (500, 502, 503, 504)


@dataclass(frozen=True)
class Retry:
    """How often and how long to retry a request a lost replica failed: ``tries`` retries after the first
    attempt, waiting ``base_s * 2**k`` seconds (at most ``max_s``) before retry ``k``.

    Example:
        >>> [Retry(tries=4, base_s=0.25, max_s=1.0).delay(k) for k in range(4)]
        [0.25, 0.5, 1.0, 1.0]
    """

    tries: int = 3
    base_s: float = 0.25
    max_s: float = 2.0

    def delay(self, attempt: int) -> float:
        return min(self.max_s, self.base_s * 2**attempt)


class RemoteError(ServeError):
    """A non-2xx answer: ``status``, the error ``kind`` (``error.type`` of the JSON, or ``"http_<status>"``) and
    the server's message."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(f"HTTP {status} {kind}: {message}")
        self.status, self.kind, self.message = status, kind, message

    @classmethod
    def from_response(cls, status: int, body: bytes) -> RemoteError:
        try:
            err = json.loads(body)["error"]
            return cls(status, str(err.get("type", f"http_{status}")), str(err.get("message", ""))[:500])
        except (ValueError, KeyError, TypeError):
            return cls(status, f"http_{status}", body.decode("utf-8", "replace")[:500])

    @property
    def retryable(self) -> bool:
        """Whether a retry may succeed: the server or a replica was unavailable, not the request wrong."""
        return self.status in RETRY_STATUSES and self.kind != "internal_error"


def retryable(e: BaseException) -> bool:
    """Whether ``e`` is what a lost or restarting replica (or a dropped connection) raises."""
    if isinstance(e, RemoteError):
        return e.retryable
    if isinstance(e, (ConnectionError, http.client.HTTPException, TimeoutError)):
        return True
    name = type(e).__name__
    return type(e).__module__.startswith("ray") and name in ("ActorDiedError", "RayActorError", "ActorUnavailableError",
                                                             "DeploymentUnavailableError", "BackPressureError")  # fmt: skip


class HTTPClient:
    """A small keep-alive HTTP client for one thread: ``post_bytes(image) -> dict`` (raises :class:`RemoteError`
    on non-2xx), with bounded retries of idempotent requests (predict and GET) a lost replica failed.

    Example:
        >>> c = HTTPClient("http://127.0.0.1:8000/", token=None)              # doctest: +SKIP
        >>> c.post_bytes(open("a.jpg", "rb").read(), "image/jpeg")["model"]["precision"]   # doctest: +SKIP
        'f32'
    """

    def __init__(self, url: str, timeout_s: float = 60.0, retry: Retry | None = None, token: str | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:  # fmt: skip
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ConfigError(f"url must look like http://HOST:PORT/, got {url!r}")
        self.host, self.port, self.path = u.hostname, u.port or (443 if u.scheme == "https" else 80), u.path or "/"
        self._cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
        self.timeout_s, self.retry, self._sleep = timeout_s, retry or Retry(), sleep
        self.token = token if token is not None else env_token()
        self.retries = 0  # retries made so far (all requests)
        self._conn: http.client.HTTPConnection | None = None

    def _once(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, bytes]:
        """One request on the kept-alive connection; a connection the server closed while idle is reopened once."""
        for attempt in (0, 1):
            if self._conn is None:
                self._conn = self._cls(self.host, self.port, timeout=self.timeout_s)
            try:
                self._conn.request(method, path, body=body, headers=headers)
                resp = self._conn.getresponse()
                data = resp.read()
                if resp.will_close:
                    self.close()
                return resp.status, data
            except (ConnectionError, http.client.HTTPException, OSError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                retry: bool = True) -> tuple[int, bytes]:  # fmt: skip
        """``(status, body)`` of one request; with ``retry`` a 500/502/503/504 that is not our own
        ``internal_error``, or a failed connection, is retried up to ``self.retry.tries`` times."""
        headers = dict(headers or {})
        if self.token:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        attempt = 0
        while True:
            try:
                status, data = self._once(method, path, body, headers)
                err: BaseException | None = RemoteError.from_response(status, data) if status in RETRY_STATUSES else None
            except (ConnectionError, http.client.HTTPException, OSError) as e:
                status, data, err = -1, b"", e
            if err is None or not retry or attempt >= self.retry.tries or not retryable(err):
                if status == -1 and err is not None:
                    raise err
                return status, data
            LOGGER.debug("retrying %s %s after %s", method, path, err)
            self._sleep(self.retry.delay(attempt))
            attempt += 1
            self.retries += 1

    def post_bytes(self, data: bytes, content_type: str = "image/jpeg") -> dict[str, Any]:
        """POST an encoded image; the answer's JSON (detections, image, model with its precision, timing)."""
        status, body = self.request("POST", self.path, data, {"Content-Type": content_type})
        if status != 200:
            raise RemoteError.from_response(status, body)
        return json.loads(body)

    def get_json(self, route: str) -> dict[str, Any]:
        """GET ``route`` (``"health"``, ``"info"``) under the client's path."""
        status, body = self.request("GET", self.path.rstrip("/") + "/" + route.lstrip("/"))
        if status != 200:
            raise RemoteError.from_response(status, body)
        return json.loads(body)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class _Handle:
    """Ray Serve's handle to an app: arrays through Ray's object store."""

    def __init__(self, app: str, address: str | None, timeout_s: float) -> None:
        from edge_mlla.serve.app import import_ray

        ray, serve = import_ray()
        if not ray.is_initialized():
            if not address:
                raise ServeError("Ray is not initialized; pass address='auto' (or HEAD:6379) to join the cluster running "
                                 "the app, or url='http://HOST:PORT/' to use HTTP")  # fmt: skip
            from edge_mlla.serve.raystart import start_ray

            start_ray(address)
        try:
            self.handle = serve.get_app_handle(app)
        except Exception as e:
            raise ServeError(f"no Serve app named {app!r} on this Ray cluster ({e}); start it with edge-mlla serve") from e
        self.timeout_s = timeout_s

    def send(self, payload: np.ndarray | bytes) -> Any:
        return self.handle.detect.remote(payload)

    def result(self, sent: Any) -> Detections:
        return sent.result(timeout_s=self.timeout_s)

    def info(self) -> dict[str, Any]:
        return self.handle.info.remote().result(timeout_s=self.timeout_s)


class _HTTP:
    """HTTP to an app's URL: arrays encoded as JPEG (quality 90) or lossless PNG; one keep-alive client per thread."""

    def __init__(self, url: str, timeout_s: float, token: str | None, encoding: str) -> None:
        if encoding not in ("jpeg", "png"):
            raise ConfigError(f"encoding must be 'jpeg' or 'png', got {encoding!r}")
        HTTPClient(url)  # checks the URL now
        self.url, self.timeout_s, self.token, self.encoding = url, timeout_s, token, encoding
        self._local = threading.local()
        self._clients: list[HTTPClient] = []

    def client(self) -> HTTPClient:
        c = getattr(self._local, "client", None)
        if c is None:  # retries are the RemoteDetector's: one policy for both transports
            c = self._local.client = HTTPClient(self.url, self.timeout_s, retry=Retry(tries=0), token=self.token)
            self._clients.append(c)
        return c

    def send(self, payload: np.ndarray | bytes) -> tuple[bytes, str]:
        if isinstance(payload, np.ndarray):
            import cv2

            png = self.encoding == "png"
            ok, buf = cv2.imencode(".png" if png else ".jpg", payload,
                                   [cv2.IMWRITE_PNG_COMPRESSION, 1] if png else [cv2.IMWRITE_JPEG_QUALITY, 90])  # fmt: skip
            if not ok:
                raise ShapeError(f"could not encode a {payload.shape} {payload.dtype} array as {self.encoding}")
            return buf.tobytes(), "image/png" if png else "image/jpeg"
        return payload, "image/png" if payload[:4] == b"\x89PNG" else "image/jpeg"

    def result(self, sent: tuple[bytes, str]) -> Detections:
        return detections_from_json(self.client().post_bytes(*sent))

    def info(self) -> dict[str, Any]:
        return self.client().get_json("info")

    def close(self) -> None:
        for c in self._clients:
            c.close()


class RemoteDetector:
    """A ``Detector``-like client of a served app: over Ray Serve's ``DeploymentHandle`` (``app``, ``address``) or
    over HTTP (``url``), with the same calls as a local :class:`~edge_mlla.Detector`.

    ``rd(image)`` / ``rd.predict(images)`` return :class:`~edge_mlla.results.Detections`; ``rd.submit(image)``
    returns a ``concurrent.futures.Future``, so a ``RemoteDetector`` drives a
    :class:`~edge_mlla.stream.StreamRunner` like a local one (``batch`` is 1: the server batches). A call a lost
    replica failed is retried (``retry``, back-off through ``sleep``) on the others. The handle needs a Ray
    connection (``address=`` joins a cluster; in the process that ran :func:`~edge_mlla.serve.run` it is there);
    HTTP needs none, and sends arrays as JPEG (or ``encoding="png"``, lossless) with the ``token`` if set.

    Example:
        >>> rd = RemoteDetector("edge_mlla")                          # doctest: +SKIP
        >>> d = rd(frame)                                             # doctest: +SKIP
        >>> rd([frame1, frame2])    # sent concurrently, batched by Serve   # doctest: +SKIP
        >>> web = RemoteDetector(url="http://127.0.0.1:8000/")        # doctest: +SKIP
        >>> for r in StreamRunner(web, ["cam1.mp4", "rtsp://cam2/live"]): ...   # doctest: +SKIP
    """

    batch = 1

    def __init__(self, app: str = APP_NAME, address: str | None = None, timeout_s: float = 60.0,
                 retry: Retry | None = None, *, url: str | None = None, token: str | None = None,
                 encoding: str = "jpeg", workers: int = 8, sleep: Callable[[float], None] = time.sleep) -> None:  # fmt: skip
        self.app, self.url, self.timeout_s = app, url, float(timeout_s)
        self.retry, self._sleep, self.retries = retry or Retry(), sleep, 0
        token = token if token is not None else env_token()
        self._t: Any = _HTTP(url, self.timeout_s, token, encoding) if url else _Handle(app, address, self.timeout_s)
        self._workers = max(1, int(workers))
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._info: dict[str, Any] | None = None

    @staticmethod
    def _payload(image: Any) -> np.ndarray | bytes:
        if isinstance(image, (str, os.PathLike)):
            p = Path(image)
            if not p.is_file():
                raise MissingFileError(f"image file not found: {p}")
            return p.read_bytes()
        if isinstance(image, (np.ndarray, bytes, bytearray)):
            return image if not isinstance(image, bytearray) else bytes(image)
        raise InputTypeError(f"image has type {type(image).__name__}; expected a BGR uint8 array, a path, or JPEG/PNG bytes")

    def _finish(self, payload: Any, sent: Any) -> Detections:
        attempt = 0
        while True:
            try:
                return self._t.result(sent)
            except Exception as e:
                if attempt >= self.retry.tries or not retryable(e):
                    raise
                self._sleep(self.retry.delay(attempt))
                attempt += 1
                self.retries += 1
                sent = self._t.send(payload)

    def predict(self, images: Any) -> Detections | list[Detections]:
        """Detections for an image (array, path, bytes) or a list of them (sent concurrently)."""
        if isinstance(images, (list, tuple)):
            payloads = [self._payload(im) for im in images]
            if self.url:
                return [f.result() for f in [self.submit(p) for p in payloads]]
            sent = [self._t.send(p) for p in payloads]
            return [self._finish(p, s) for p, s in zip(payloads, sent)]
        payload = self._payload(images)
        return self._finish(payload, self._t.send(payload))

    __call__ = predict

    def submit(self, image: Any) -> Future:
        """Send one image without waiting; a ``concurrent.futures.Future`` of its :class:`Detections`."""
        payload = self._payload(image)
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="edge_mlla-remote")
            pool = self._pool
        return pool.submit(lambda: self._finish(payload, self._t.send(payload)))

    def info(self) -> dict[str, Any]:
        """Model (with the precision that runs) and serving settings, of the replica that answers."""
        return self._t.info()

    def _model(self) -> dict[str, Any]:
        if self._info is None:
            self._info = self.info()
        return self._info["model"]

    @property
    def names(self) -> dict[int, str]:
        """Class id -> name, as the served model says."""
        return {int(k): v for k, v in self._model()["names"].items()}

    @property
    def precision(self) -> str:
        """The precision the replicas run (``f32``, ``bf16``, ...)."""
        return self._model()["precision"]

    def close(self) -> None:
        """Stop the submit threads and close HTTP connections. Safe to call twice."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        if isinstance(self._t, _HTTP):
            self._t.close()

    def __enter__(self) -> RemoteDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["HTTPClient", "RemoteDetector", "RemoteError", "Retry", "retryable"]
