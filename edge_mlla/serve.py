"""Serve a ``Detector`` on Ray Serve: N replicas, dynamic batching, HTTP + Python handle, many cameras.

``import edge_mlla.serve`` is light (numpy, OpenCV): Ray is imported inside the functions that need
it, and a missing Ray raises :class:`~edge_mlla.errors.MissingDependencyError` with the pip command
(``pip install "edge-mlla[serve]"``). Torch is never imported here (only a ``.pt`` model's own
backend imports it, inside the replica).

What runs where:

* :func:`build_app` makes the Serve application: one deployment, ``replicas`` copies of
  :class:`DetectorDeployment`, each a Ray actor with ``num_cpus`` reserved and its runtime limited to
  ``threads`` threads (OpenVINO ``INFERENCE_NUM_THREADS``, ONNX Runtime/CUDA ``threads``, torch
  ``set_num_threads``). Requests are grouped by ``@serve.batch`` (``max_batch`` images or
  ``batch_wait_ms``, whichever comes first) into one ``Detector.predict(list)`` call;
  ``batcher="greedy"`` forms each batch only when the previous one has finished (see
  :class:`GreedyBatcher`), which keeps batches full when the replica is saturated.
* :func:`run` starts Ray (or joins a cluster with ``address=``), starts the HTTP proxy on
  ``host:port`` (127.0.0.1 unless told otherwise) and deploys the app.
* HTTP routes: ``POST /`` (or ``/predict``) with a JPEG/PNG body (``Content-Type: image/jpeg``,
  ``image/png`` or ``application/octet-stream``) -> JSON detections; ``GET /health``; ``GET /info``.
  Bad input answers 4xx with ``{"error": {"status", "type", "message"}}``; the size of an image is
  read from its PNG/JPEG header and checked against ``max_pixels`` before anything is decoded.
* :class:`RemoteDetector` is the Python handle API (a ``DeploymentHandle``): ``rd(frame)`` returns
  :class:`~edge_mlla.results.Detections` like a local ``Detector``.
* :func:`serve_streams` reads K video sources (files: every frame; cameras/URLs: latest frame, stale
  frames dropped) and sends them to the app over HTTP or the handle, collecting per-source results
  and FPS.

Example:
    >>> from edge_mlla.serve import run, RemoteDetector           # doctest: +SKIP
    >>> server = run("best.xml", replicas=2, port=8000, max_batch=4, blocking=False)   # doctest: +SKIP
    >>> import urllib.request                                     # doctest: +SKIP
    >>> req = urllib.request.Request(server.url, data=open("img.jpg", "rb").read(),
    ...                              headers={"Content-Type": "image/jpeg"})       # doctest: +SKIP
    >>> json.load(urllib.request.urlopen(req))["class_names"][:3]    # doctest: +SKIP
    ['RBC', 'RBC', 'WBC']
    >>> RemoteDetector()(frame).xyxy.shape                       # doctest: +SKIP
    (13, 4)
    >>> server.shutdown()                                          # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import os
import shutil
import socket
import struct
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_mlla.errors import (
    ConfigError,
    EdgeMLLAError,
    ImageReadError,
    InputTypeError,
    MissingDependencyError,
    MissingFileError,
    ServeError,
    ShapeError,
)
from edge_mlla.results import Detections, Timing

LOGGER = logging.getLogger("edge_mlla.serve")

APP_NAME = "edge_mlla"
DEPLOYMENT_NAME = "Detector"
DEFAULT_PORT = 8000
DEFAULT_MAX_PIXELS = 36_000_000  # 8K UHD (7680x4320 = 33.2 MP) fits; a 50 MP upload does not
DEFAULT_MAX_BYTES = 32 * 1024 * 1024
_PIP = 'pip install "edge-mlla[serve]"'
_CONTENT_TYPES = ("image/jpeg", "image/jpg", "image/png", "application/octet-stream")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


# ============================================================================== Ray import / start
def _import_ray() -> tuple[Any, Any]:
    """``(ray, ray.serve)``, with Ray's usage stats off unless the user chose otherwise."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
        from ray import serve
    except ImportError as e:
        raise MissingDependencyError(f"Ray Serve is not installed ({e}); {_PIP}") from e
    return ray, serve


def _start_ray(address: str | None = None, num_cpus: float | None = None) -> bool:
    """Connect to ``address`` (a running cluster, or "auto") or start a local single-node Ray without
    dashboard; returns True when this call started (and so owns) the Ray instance."""
    ray, _ = _import_ray()
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    address = address or os.environ.get("RAY_ADDRESS") or None  # Ray's own variable: join that cluster
    if address:
        _probe_cluster(address)
        kwargs = {"address": address, "log_to_driver": False}
    else:  # "local": a new instance even if a stale or foreign cluster is recorded in /tmp/ray
        kwargs["address"] = "local"
        kwargs["_node_ip_address"] = "127.0.0.1"
        if num_cpus is not None:
            kwargs["num_cpus"] = num_cpus
    try:
        ray.init(**kwargs)
    except ConnectionError as e:
        raise ServeError(f"could not connect to the Ray cluster at {address!r}: {e}; start it with `ray start --head`") from e
    return not address


def _probe_cluster(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast (Ray itself retries for minutes) when nothing listens at a cluster address."""
    target = address
    if address == "auto":
        recorded = Path(tempfile.gettempdir(), "ray", "ray_current_cluster")  # where `ray start` records the head
        if not recorded.is_file():
            raise ServeError("address='auto' but no Ray cluster was started on this machine; run `ray start --head` "
                             "first, or give the head's HOST:PORT")  # fmt: skip
        target = recorded.read_text().strip()
    hostport = target.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"Ray address must be HOST:PORT (e.g. 10.0.0.5:6379) or 'auto', got {address!r}")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as e:
        raise ServeError(f"no Ray cluster answers at {hostport} ({e}); start the head with `ray start --head --port={port}`"
                         + (" (the cluster recorded in /tmp/ray is gone)" if address == "auto" else "")) from e


# ============================================================================== configuration
@dataclass(frozen=True)
class ServeConfig:
    """Everything a replica needs; built and validated by :func:`build_app`.

    ``threads`` is the runtime thread budget per replica; ``num_cpus`` what Ray reserves for it.
    """

    model: str
    backend: str = "auto"
    device: str | None = None
    precision: str | None = None
    conf: float = 0.25
    iou: float = 0.45
    max_det: int = 300
    max_batch: int = 8
    batch_wait_ms: float = 5.0
    batcher: str = "serve"
    threads: int | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = DEFAULT_MAX_BYTES
    detector_options: dict[str, Any] = field(default_factory=dict)


def _positive_int(value: Any, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _thread_options(backend: str, threads: int | None, options: dict[str, Any]) -> dict[str, Any]:
    """Backend options that limit the runtime to ``threads`` threads (merged with the user's)."""
    opts = dict(options)
    if threads is None:
        return opts
    if backend == "openvino":
        opts["config"] = {"INFERENCE_NUM_THREADS": int(threads), **(opts.get("config") or {})}
    elif backend in ("onnxruntime", "cuda"):
        opts.setdefault("threads", int(threads))
    return opts


def _model_files(path: Path) -> list[Path]:
    """The files that make up a model: ``x.onnx``; ``x.xml`` + ``x.bin`` (+ ``metadata.yaml``); ``x.pt``."""
    from edge_mlla.modelfile import resolve_model_file

    path = resolve_model_file(path)  # an OpenVINO export folder -> its single .xml
    files = [path]
    if path.suffix.lower() == ".xml":
        files += [p for p in (path.with_suffix(".bin"), path.parent / "metadata.yaml") if p.is_file()]
    return files


# ============================================================================== image checks
def image_header(data: bytes) -> tuple[str, int, int]:
    """``(format, width, height)`` of a PNG or JPEG from its header, without decoding the pixels.

    Raises :class:`ImageReadError` for anything that is not a PNG or a JPEG with a frame header.

    Example:
        >>> import cv2, numpy as np
        >>> ok, buf = cv2.imencode(".png", np.zeros((48, 64, 3), np.uint8))
        >>> image_header(buf.tobytes())
        ('png', 64, 48)
        >>> image_header(b"GIF89a....")
        Traceback (most recent call last):
        ...
        edge_mlla.errors.ImageReadError: not a JPEG or PNG image (starts with b'GIF89a..'); send a JPEG (FF D8 FF) or PNG (89 50 4E 47) file
    """
    if data[:8] == _PNG_MAGIC:
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise ImageReadError("truncated PNG: no IHDR header in the first 24 bytes")
        w, h = struct.unpack(">II", data[16:24])
        return "png", int(w), int(h)
    if data[:3] == b"\xff\xd8\xff":
        i, n = 2, len(data)
        while i + 4 <= n:
            if data[i] != 0xFF:
                raise ImageReadError(f"corrupt JPEG: expected a marker at byte {i}")
            marker = data[i + 1]
            if marker == 0xFF:  # fill byte
                i += 1
                continue
            if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
                i += 2
                continue
            if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
                break
            seglen = struct.unpack(">H", data[i + 2 : i + 4])[0]
            if marker in _JPEG_SOF and i + 9 <= n:
                h, w = struct.unpack(">HH", data[i + 5 : i + 9])
                return "jpeg", int(w), int(h)
            i += 2 + seglen
        raise ImageReadError("corrupt or truncated JPEG: no frame header (SOF) found")
    raise ImageReadError(
        f"not a JPEG or PNG image (starts with {bytes(data[:8])!r}); send a JPEG (FF D8 FF) or PNG (89 50 4E 47) file"
    )


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Check the header (format, ``max_pixels``), then decode a JPEG/PNG to BGR uint8.

    Example:
        >>> import cv2, numpy as np
        >>> ok, buf = cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))
        >>> decode_image(buf.tobytes()).shape
        (48, 64, 3)
        >>> decode_image(buf.tobytes(), max_pixels=1000)
        Traceback (most recent call last):
        ...
        edge_mlla.errors.ShapeError: image is 64x48 (3072 pixels); this server accepts at most 1000 pixels (max_pixels)
    """
    if not data:
        raise ImageReadError("empty image: the body has 0 bytes; send a JPEG or PNG file")
    fmt, w, h = image_header(data)
    if w <= 0 or h <= 0:
        raise ImageReadError(f"{fmt} header says {w}x{h}; expected positive width and height")
    if w * h > max_pixels:
        raise ShapeError(f"image is {w}x{h} ({w * h} pixels); this server accepts at most {max_pixels} pixels (max_pixels)")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ImageReadError(f"{fmt} image ({w}x{h}) could not be decoded: corrupt or truncated data")
    return img


# ============================================================================== JSON form
def detections_to_json(d: Detections) -> dict[str, Any]:
    """Column form of one image's detections: ``boxes`` (xyxy, original pixels), ``scores``,
    ``class_ids``, ``class_names``.

    Example:
        >>> d = Detections(np.array([[1, 2, 3, 4]], np.float32), np.array([0.5], np.float32), np.array([1]), names={1: "WBC"})
        >>> detections_to_json(d)
        {'boxes': [[1.0, 2.0, 3.0, 4.0]], 'scores': [0.5], 'class_ids': [1], 'class_names': ['WBC']}
    """
    return {
        "boxes": d.xyxy.astype(float).tolist(),
        "scores": d.confidence.astype(float).tolist(),
        "class_ids": d.class_id.astype(int).tolist(),
        "class_names": [str(n) for n in d.class_name],
    }


def detections_from_json(payload: dict[str, Any], names: dict[int, str] | None = None) -> Detections:
    """Rebuild :class:`Detections` from a server answer (``names`` from ``class_names`` when not given).

    Example:
        >>> d = detections_from_json({"boxes": [[1, 2, 3, 4]], "scores": [0.5], "class_ids": [1], "class_names": ["WBC"]})
        >>> d.class_name.tolist(), d.xyxy.dtype.name
        (['WBC'], 'float32')
    """
    ids = [int(c) for c in payload.get("class_ids", [])]
    if names is None:
        names = {c: str(n) for c, n in zip(ids, payload.get("class_names", []))}
    boxes = np.asarray(payload.get("boxes", []), np.float32).reshape(-1, 4)
    return Detections(boxes, np.asarray(payload.get("scores", []), np.float32), np.asarray(ids, np.int64), names=names)


# ============================================================================== batching
BATCHERS = ("serve", "greedy")


class GreedyBatcher:
    """Dynamic batching that forms a batch only when the previous batch has finished.

    ``@serve.batch`` forms batches eagerly: while one batch runs, the next is closed after
    ``batch_wait_ms`` with whatever arrived and then waits its turn, so on a saturated CPU replica
    batches stay near size 1 (measured: ``benchmarks/results/bench_serve.md``). This batcher, like
    Triton's dynamic batcher, takes every waiting request (up to ``max_batch``) when it is free, and
    waits up to ``wait_s`` for company only when fewer are waiting. Use it from one event loop.

    Example:
        >>> import asyncio
        >>> async def double(xs): return [2 * x for x in xs]
        >>> async def main():
        ...     b = GreedyBatcher(double, max_batch=4, wait_s=0.01)
        ...     return await asyncio.gather(*(b(i) for i in range(6)))
        >>> asyncio.run(main())
        [0, 2, 4, 6, 8, 10]
    """

    def __init__(self, fn: Callable[[list[Any]], Any], max_batch: int, wait_s: float) -> None:
        self.fn, self.max_batch, self.wait_s = fn, int(max_batch), float(wait_s)
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None

    async def __call__(self, item: Any) -> Any:
        loop = asyncio.get_running_loop()
        if self._queue is None:
            self._queue = asyncio.Queue()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run())
        fut = loop.create_future()
        self._queue.put_nowait((item, fut))
        return await fut

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        queue = self._queue
        while True:
            batch = [await queue.get()]
            deadline = loop.time() + self.wait_s
            while len(batch) < self.max_batch:
                if not queue.empty():
                    batch.append(queue.get_nowait())
                    continue
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
            live = [(x, f) for x, f in batch if not f.done()]  # callers that gave up are skipped
            if not live:
                continue
            try:
                results = await self.fn([x for x, _ in live])
            except Exception as e:  # one failure fails this batch's callers, not the loop
                for _, f in live:
                    if not f.done():
                        f.set_exception(e)
                continue
            for (_, f), r in zip(live, results):
                if not f.done():
                    f.set_result(r)


# ============================================================================== the deployment
class _HTTPError(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


@dataclass
class _Item:
    image: np.ndarray
    enqueued: float


class DetectorDeployment:
    """The Ray Serve replica: one ``Detector`` per replica, requests batched by ``@serve.batch``.

    Not used directly: :func:`build_app` wraps it with ``serve.deployment``. Its methods are the
    handle API (``detect``, ``detect_json``, ``info``) and ``__call__`` is the HTTP entry point.

    Example:
        >>> app = build_app("best.onnx", replicas=2, max_batch=4)     # doctest: +SKIP
        >>> handle = serve.run(app, name="edge_mlla")                 # doctest: +SKIP
        >>> handle.detect.remote(frame).result().class_name           # doctest: +SKIP
    """

    def __init__(self, config: ServeConfig, model_files: dict[str, bytes] | None = None) -> None:
        from ray import serve

        from edge_mlla.detector import Detector
        from edge_mlla.runtimes import select_backend

        self.config = config
        self._tmp: str | None = None
        path = Path(config.model)
        if model_files:  # shipped from the driver: this node need not have the file
            self._tmp = tempfile.mkdtemp(prefix="edge_mlla_serve_")
            for fname, blob in model_files.items():
                Path(self._tmp, fname).write_bytes(blob)
            path = Path(self._tmp, path.name)
        backend = select_backend(path, config.backend).name
        opts = _thread_options(backend, config.threads, config.detector_options)
        self.det = Detector(path, backend=backend, device=config.device, precision=config.precision,
                            conf=config.conf, iou=config.iou, max_det=config.max_det, **opts)  # fmt: skip
        if backend == "torch" and config.threads:
            import torch  # only for .pt models, whose backend has imported it already

            torch.set_num_threads(int(config.threads))
        self._pool = ThreadPoolExecutor(max(2, config.threads or 1), thread_name_prefix="edge_mlla-serve")
        wait_s = config.batch_wait_ms / 1000.0
        if config.batcher == "greedy":
            self._batched: Callable[[_Item], Any] = GreedyBatcher(self._predict_batch, config.max_batch, wait_s)
        else:
            self._batched = serve.batch(max_batch_size=config.max_batch, batch_wait_timeout_s=wait_s)(self._predict_batch)
        try:
            self.replica_id = serve.get_replica_context().replica_id.to_full_id_str()
        except Exception:  # outside a replica (unit use)
            self.replica_id = f"local-{os.getpid()}"
        self._model_info = {
            "model": Path(config.model).name,
            "backend": self.det.backend.name,
            "device": self.det.device,
            "precision": self.det.precision,
            "imgsz": list(self.det.imgsz),
            "batch": self.det.batch,  # None: dynamic batch
            "names": {int(k): v for k, v in self.det.names.items()},
        }
        LOGGER.info("replica %s serving %s", self.replica_id, self._model_info)

    # ------------------------------------------------------------------ batching core
    async def _predict_batch(self, items: list[_Item]) -> list[tuple[Detections, float, int]]:
        start = time.perf_counter()
        loop = asyncio.get_running_loop()
        dets = await loop.run_in_executor(self._pool, self.det.predict, [it.image for it in items])
        return [(d, start - it.enqueued, len(items)) for d, it in zip(dets, items)]

    async def _detect(self, image: np.ndarray) -> tuple[Detections, float, int]:
        return await self._batched(_Item(image, time.perf_counter()))

    async def _decode(self, data: bytes) -> np.ndarray:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, decode_image, data, self.config.max_pixels)

    def _as_image(self, image: Any) -> np.ndarray:
        if isinstance(image, np.ndarray):
            from edge_mlla.ops import as_bgr

            img = as_bgr(image)
            if img.shape[0] * img.shape[1] > self.config.max_pixels:
                raise ShapeError(
                    f"image is {img.shape[1]}x{img.shape[0]}; this server accepts at most {self.config.max_pixels} pixels (max_pixels)"
                )
            return img
        raise InputTypeError(f"image has type {type(image).__name__}; expected a BGR uint8 numpy array or JPEG/PNG bytes")

    # ------------------------------------------------------------------ handle API
    async def detect(self, image: np.ndarray | bytes) -> Detections:
        """Detections for one image: a BGR uint8 array or JPEG/PNG bytes (timing = its batch's Timing)."""
        img = await self._decode(bytes(image)) if isinstance(image, (bytes, bytearray, memoryview)) else self._as_image(image)
        d, _, _ = await self._detect(img)
        return d

    async def detect_json(self, image: np.ndarray | bytes) -> dict[str, Any]:
        """The HTTP answer's JSON for one image (array or JPEG/PNG bytes)."""
        t0 = time.perf_counter()
        if isinstance(image, (bytes, bytearray, memoryview)):
            img = await self._decode(bytes(image))
        else:
            img = self._as_image(image)
        return await self._answer(img, t0, time.perf_counter() - t0)

    def info(self) -> dict[str, Any]:
        """Model and serving settings of this replica."""
        cfg = self.config
        return {
            "model": self._model_info,
            "serve": {"max_batch": cfg.max_batch, "batch_wait_ms": cfg.batch_wait_ms, "batcher": cfg.batcher, "threads": cfg.threads,
                      "max_pixels": cfg.max_pixels, "max_bytes": cfg.max_bytes},
            "replica": self.replica_id,
            "pid": os.getpid(),
        }  # fmt: skip

    def check_health(self) -> None:
        """Serve's periodic replica health check: fails when the detector is gone."""
        if getattr(self, "det", None) is None:
            raise ServeError("replica has no detector loaded")

    async def _answer(self, img: np.ndarray, t0: float, decode_s: float) -> dict[str, Any]:
        d, queue_s, batch = await self._detect(img)
        t: Timing = d.timing or Timing()
        return {
            **detections_to_json(d),
            "image": {"width": int(img.shape[1]), "height": int(img.shape[0])},
            "model": {k: v for k, v in self._model_info.items() if k != "names"},
            "timing_ms": {
                "decode": 1000 * decode_s,
                "queue": 1000 * queue_s,
                "batch_size": batch,
                "preprocess": 1000 * t.preprocess,  # these three are for the whole batch
                "infer": 1000 * t.infer,
                "postprocess": 1000 * t.postprocess,
                "server_total": 1000 * (time.perf_counter() - t0),
            },
            "replica": self.replica_id,
        }

    # ------------------------------------------------------------------ HTTP
    async def __call__(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        scope = request.scope
        path = scope.get("path", "/")
        root = scope.get("root_path", "") or ""
        if root and path.startswith(root):
            path = path[len(root) :]
        path = "/" + path.strip("/")
        try:
            if path in ("/health", "/healthz"):
                self._method(request, "GET")
                return JSONResponse({"status": "ok", "replica": self.replica_id, **self._model_info_short()})
            if path == "/info":
                self._method(request, "GET")
                return JSONResponse(self.info())
            if path not in ("/", "/predict", "/detect"):
                raise _HTTPError(404, "not_found", f"no route {path}; use POST / (or /predict) with an image, GET /health, GET /info")
            self._method(request, "POST")
            t0 = time.perf_counter()
            data = await self._read_body(request)
            try:
                img = await self._decode(data)
            except ShapeError as e:
                raise _HTTPError(413, "image_too_large", str(e)) from None
            except ImageReadError as e:
                raise _HTTPError(400, "bad_image", str(e)) from None
            return JSONResponse(await self._answer(img, t0, time.perf_counter() - t0))
        except _HTTPError as e:
            return JSONResponse({"error": {"status": e.status, "type": e.kind, "message": e.message}}, status_code=e.status)
        except EdgeMLLAError as e:
            return JSONResponse({"error": {"status": 400, "type": type(e).__name__, "message": str(e)}}, status_code=400)

    def _model_info_short(self) -> dict[str, Any]:
        return {k: self._model_info[k] for k in ("backend", "precision", "imgsz")}

    @staticmethod
    def _method(request: Any, want: str) -> None:
        if request.method != want:
            raise _HTTPError(405, "method_not_allowed", f"{request.method} {request.url.path}: use {want}")

    async def _read_body(self, request: Any) -> bytes:
        ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        if not ctype:
            raise _HTTPError(415, "unsupported_media_type", "Content-Type is missing; send image/jpeg or image/png")
        if ctype not in _CONTENT_TYPES:
            raise _HTTPError(415, "unsupported_media_type",
                             f"Content-Type {ctype!r} is not accepted; send image/jpeg, image/png or application/octet-stream")  # fmt: skip
        length = request.headers.get("content-length")
        limit = self.config.max_bytes
        if length is not None and length.isdigit() and int(length) > limit:
            raise _HTTPError(413, "body_too_large", f"body is {int(length)} bytes; this server accepts at most {limit} (max_bytes)")
        data = await request.body()
        if len(data) > limit:
            raise _HTTPError(413, "body_too_large", f"body is {len(data)} bytes; this server accepts at most {limit} (max_bytes)")
        if not data:
            raise _HTTPError(400, "empty_body", f"empty body; POST the bytes of a JPEG or PNG image with Content-Type {ctype}")
        return data

    def __del__(self) -> None:
        tmp = getattr(self, "_tmp", None)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


# ============================================================================== app / run
def build_app(
    model: str | os.PathLike,
    *,
    replicas: int = 1,
    max_batch: int = 8,
    batch_wait_ms: float = 5.0,
    batcher: str = "serve",
    threads: int | None = None,
    num_cpus: float | None = None,
    backend: str = "auto",
    device: str | None = None,
    precision: str | None = None,
    conf: float = 0.25,
    iou: float = 0.45,
    max_det: int = 300,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_ongoing_requests: int | None = None,
    ship_model: bool = False,
    check: bool = True,
    name: str = DEPLOYMENT_NAME,
    **detector_options: Any,
) -> Any:
    """The Serve application (``Deployment.bind(...)``) for ``model``; pass it to ``serve.run``.

    Args:
        model: ``.xml`` (or its folder), ``.onnx`` or ``.pt``; loaded by every replica.
        replicas: number of replicas (Ray actors), each with its own ``Detector``.
        max_batch, batch_wait_ms: ``@serve.batch`` limits: a batch runs when ``max_batch`` requests
            wait or the first has waited ``batch_wait_ms``. Batches pay off with dynamic-batch models
            (``export(..., dynamic=True)``); a fixed batch-1 model runs a batch image by image.
        batcher: ``"serve"`` (``@serve.batch``) or ``"greedy"`` (:class:`GreedyBatcher`: a batch is
            formed when the replica is free, so it fills up under load).
        threads: runtime threads per replica (default: this machine's cores / replicas).
        num_cpus: CPUs Ray reserves per replica (default: ``threads``).
        backend, device, precision, conf, iou, max_det, **detector_options: as for ``Detector``.
        max_pixels, max_bytes: upload limits (checked from the header, before decoding).
        ship_model: send the model file(s) to the replicas through Ray instead of reading
            ``model`` on each node (for clusters without shared storage).
        check: load the model once here first, so a bad file fails now with a clear error.

    Example:
        >>> from ray import serve                                           # doctest: +SKIP
        >>> app = build_app("best.xml", replicas=2, max_batch=4, threads=1)  # doctest: +SKIP
        >>> serve.run(app, name="edge_mlla")                               # doctest: +SKIP
    """
    _, serve = _import_ray()
    if not isinstance(model, (str, os.PathLike)):
        raise InputTypeError(f"model must be a path to a .xml, .onnx or .pt file, got {type(model).__name__}")
    path = Path(model).expanduser()
    replicas = _positive_int(replicas, "replicas")
    max_batch = _positive_int(max_batch, "max_batch")
    if threads is not None:
        threads = _positive_int(threads, "threads")
    if not isinstance(batch_wait_ms, (int, float)) or isinstance(batch_wait_ms, bool) or not (0 <= batch_wait_ms <= 10_000):
        raise ConfigError(f"batch_wait_ms must be a number of milliseconds in [0, 10000], got {batch_wait_ms!r}")
    if batcher not in BATCHERS:
        raise ConfigError(f"batcher must be one of {', '.join(BATCHERS)}, got {batcher!r}")
    max_pixels = _positive_int(max_pixels, "max_pixels")
    max_bytes = _positive_int(max_bytes, "max_bytes")
    threads, num_cpus = replica_budget(replicas, threads, num_cpus)
    backend, device = replica_target(path, backend, device)
    files: dict[str, bytes] | None = None
    if check or ship_model:
        if not path.exists():
            raise MissingFileError(f"model file not found: {path} (expected .xml, .onnx or .pt)")
        path = path.resolve()
    if check:
        _probe(path, backend, device, precision, conf, iou, max_det, threads, detector_options)
    if ship_model:
        files = {p.name: p.read_bytes() for p in _model_files(path)}
        path = path if path.is_file() else _model_files(path)[0]
    config = ServeConfig(
        model=str(path), backend=backend, device=device, precision=precision, conf=float(conf), iou=float(iou),
        max_det=int(max_det), max_batch=max_batch, batch_wait_ms=float(batch_wait_ms), batcher=batcher, threads=threads,
        max_pixels=max_pixels, max_bytes=max_bytes, detector_options=dict(detector_options),
    )  # fmt: skip
    dep = serve.deployment(
        DetectorDeployment,
        name=name,
        num_replicas=replicas,
        ray_actor_options={"num_cpus": float(num_cpus)},
        max_ongoing_requests=max_ongoing_requests or max(16, 2 * max_batch),
    )
    LOGGER.info("app: %s x%d replicas, %s threads / %s CPUs each, max_batch %d, wait %.1f ms (%s batcher)",
                path.name, replicas, threads, num_cpus, max_batch, batch_wait_ms, batcher)  # fmt: skip
    return dep.bind(config, files)


def replica_budget(replicas: int, threads: int | None = None, num_cpus: float | None = None) -> tuple[int, float]:
    """``(threads, num_cpus)`` per replica: threads default to this machine's cores / replicas (or
    ``num_cpus``), Ray CPUs default to the threads.

    Example:
        >>> replica_budget(2, threads=1)
        (1, 1.0)
        >>> replica_budget(1, threads=2, num_cpus=0.5)
        (2, 0.5)
    """
    replicas = _positive_int(replicas, "replicas")
    if threads is None:
        threads = max(1, int(num_cpus) if num_cpus else (os.cpu_count() or 1) // replicas)
    threads = _positive_int(threads, "threads")
    if num_cpus is None:
        num_cpus = float(threads)
    if isinstance(num_cpus, bool) or not isinstance(num_cpus, (int, float)) or num_cpus < 0:
        raise ConfigError(f"num_cpus must be a number >= 0, got {num_cpus!r}")
    return threads, float(num_cpus)


def replica_target(path: str | os.PathLike, backend: str = "auto", device: str | None = None) -> tuple[str, str | None]:
    """``(backend, device)`` the replicas run, decided once here: replicas reserve CPUs only (Ray gives them no
    GPU and hides the machine's), so ``auto`` takes the best CPU backend for the file and a ``.pt`` runs on the
    CPU, in the probe as in every replica. ``cuda`` is a :class:`ConfigError` (not supported by serve yet).

    Example:
        >>> replica_target("best.onnx", "onnxruntime")
        ('onnxruntime', None)
    """
    from edge_mlla.runtimes import select_backend

    if backend == "cuda" or str(device or "").lower().startswith(("cuda", "gpu")):
        raise ConfigError("serve runs its replicas on CPUs (Ray reserves no GPU for them), so backend 'cuda' and CUDA "
                          "devices are not supported there yet; on a GPU machine use Detector or StreamRunner")  # fmt: skip
    if backend == "auto":
        backend = select_backend(path, "auto", exclude=("cuda",)).name
    if backend == "torch" and device is None:
        device = "cpu"
    return backend, device


def _probe(path: Path, backend: str, device: str | None, precision: str | None, conf: float, iou: float,
           max_det: int, threads: int | None, options: dict[str, Any]) -> None:  # fmt: skip
    """Load the model once in this process: a bad file or option fails here, not in N replicas."""
    from edge_mlla.detector import Detector
    from edge_mlla.runtimes import select_backend

    name = select_backend(path, backend).name
    det = Detector(path, backend=name, device=device, precision=precision, conf=conf, iou=iou, max_det=max_det,
                   **_thread_options(name, threads, options))  # fmt: skip
    det.close()


def check_port(host: str, port: int) -> None:
    """Raise :class:`ServeError` when ``host:port`` cannot be bound here (in use, or not our address).

    Example:
        >>> import socket
        >>> s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); port = s.getsockname()[1]
        >>> check_port("127.0.0.1", port)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        edge_mlla.errors.ServeError: cannot listen on 127.0.0.1:... (port in use?): [Errno 98] Address already in use; pick another --port
        >>> s.close()
    """
    port = _positive_int(port, "port")
    if port > 65535:
        raise ConfigError(f"port must be in 1..65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ConfigError(f"host {host!r} does not resolve ({e}); use an address such as 127.0.0.1 or 0.0.0.0") from e
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        if os.name == "posix":  # as uvicorn does: TIME_WAIT leftovers of a previous server do not block it
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as e:
            raise ServeError(f"cannot listen on {host}:{port} (port in use?): {e}; pick another --port") from e


def _is_local(address: str | None) -> bool:
    if not address or address in ("auto", "local"):
        return True
    host = address.split("://")[-1].rsplit(":", 1)[0]
    return host in ("127.0.0.1", "localhost", "::1", socket.gethostname())


@dataclass
class Server:
    """A running Serve app started by :func:`run` (``blocking=False``): its URL, a handle, shutdown.

    Example:
        >>> with run("best.onnx", blocking=False, port=8123) as server:   # doctest: +SKIP
        ...     print(server.url, server.detector(frame))
    """

    url: str
    app: str
    owns_ray: bool
    started_serve: bool
    _detector: RemoteDetector | None = field(default=None, repr=False)

    @property
    def detector(self) -> RemoteDetector:
        """A :class:`RemoteDetector` (handle API) for this app."""
        if self._detector is None:
            self._detector = RemoteDetector(self.app)
        return self._detector

    def wait(self) -> None:
        """Serve until Ctrl+C or SIGTERM (as ``docker stop`` and systemd send it), then :meth:`shutdown`.

        Example:
            >>> run("best.xml", blocking=False).wait()   # doctest: +SKIP
        """
        import signal

        previous = sigterm_as_interrupt()
        try:
            while True:
                time.sleep(1.0)
        except KeyboardInterrupt:
            LOGGER.info("shutting down %s", self.app)
        finally:
            try:
                self.shutdown()
            finally:
                if previous is not None:
                    signal.signal(signal.SIGTERM, previous)

    def shutdown(self) -> None:
        """Delete the app; shut Serve down if :func:`run` started it, and Ray if it started Ray."""
        ray, serve = _import_ray()
        if not ray.is_initialized():
            return
        try:
            if self.started_serve:
                serve.shutdown()
            else:
                serve.delete(self.app)
        finally:
            if self.owns_ray:
                ray.shutdown()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def sigterm_as_interrupt() -> Any:
    """Make SIGTERM raise ``KeyboardInterrupt`` in the main thread (so ``finally`` blocks shut Serve and Ray
    down) instead of Ray's handler, which dumps stacks and aborts; returns the previous handler, or None
    outside the main thread (where handlers cannot be set)."""
    import signal

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, on_term)


def run(
    model: str | os.PathLike,
    *,
    replicas: int = 1,
    port: int = DEFAULT_PORT,
    host: str = "127.0.0.1",
    max_batch: int = 8,
    batch_wait_ms: float = 5.0,
    threads: int | None = None,
    address: str | None = None,
    name: str = APP_NAME,
    route_prefix: str = "/",
    blocking: bool = True,
    ray_num_cpus: float | None = None,
    handle_sigterm: bool | None = None,
    **app_options: Any,
) -> Server:
    """Start (or join) Ray, start Serve's HTTP proxy on ``host:port``, deploy ``model`` and serve it.

    ``blocking=True`` serves until Ctrl+C or SIGTERM and then shuts down; ``blocking=False`` returns a
    :class:`Server` at once (call ``server.wait()`` or ``server.shutdown()``). ``address`` joins a running cluster
    (``ray start --head`` on one machine, ``ray start --address=HEAD:6379`` on the others); without
    it a local single-node Ray is started (no dashboard, usage stats off). Other keyword arguments go
    to :func:`build_app` (``backend``, ``precision``, ``num_cpus``, ``ship_model``, ...).
    ``handle_sigterm`` (default: ``blocking``) turns SIGTERM into ``KeyboardInterrupt`` from the moment
    Ray is up, so a stop during start-up also cleans up (see :func:`sigterm_as_interrupt`).

    Example:
        >>> server = run("best.xml", replicas=2, port=8000, max_batch=4, blocking=False)  # doctest: +SKIP
        >>> server.url                                                                     # doctest: +SKIP
        'http://127.0.0.1:8000/'
        >>> server.shutdown()                                                               # doctest: +SKIP
    """
    ray, serve = _import_ray()
    if not isinstance(route_prefix, str) or not route_prefix.startswith("/"):
        raise ConfigError(f"route_prefix must start with '/', got {route_prefix!r}")
    address = address or os.environ.get("RAY_ADDRESS") or None
    if not ray.is_initialized() and address:
        _probe_cluster(address)  # before the model probe: a wrong address fails in seconds
    if _is_local(address) and not _serve_running(ray, serve):
        check_port(host, port)
    app = build_app(model, replicas=replicas, max_batch=max_batch, batch_wait_ms=batch_wait_ms, threads=threads,
                    **app_options)  # fmt: skip
    owns_ray = _start_ray(address, ray_num_cpus)
    if blocking if handle_sigterm is None else handle_sigterm:
        sigterm_as_interrupt()
    try:
        started_serve = not _serve_running(ray, serve)
        _check_resources(ray, replicas, replica_budget(replicas, threads, app_options.get("num_cpus"))[1])
        if started_serve:
            serve.start(http_options={"host": host, "port": int(port)})
        try:
            serve.run(app, name=name, route_prefix=route_prefix)
        except Exception as e:
            raise ServeError(f"deploying {Path(model).name} failed: {type(e).__name__}: {e}") from e
    except BaseException:
        if owns_ray:
            _quiet_shutdown(ray, serve)
        raise
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    server = Server(url=f"http://{shown_host}:{int(port)}{route_prefix.rstrip('/')}/", app=name, owns_ray=owns_ray,
                    started_serve=started_serve)  # fmt: skip
    LOGGER.info("serving %s on %s (%d replicas; GET %shealth)", Path(model).name, server.url, replicas, server.url)
    if not blocking:
        return server
    server.wait()
    return server


def _serve_running(ray: Any, serve: Any) -> bool:
    """Whether a Serve controller already runs in the connected cluster (``serve.status()`` would start one)."""
    if not ray.is_initialized():
        return False
    try:
        ray.get_actor("SERVE_CONTROLLER_ACTOR", namespace="serve")  # Serve's constants SERVE_CONTROLLER_NAME/NAMESPACE
        return True
    except ValueError:
        return False


def _check_resources(ray: Any, replicas: int, need: float) -> None:
    """Fail now when the cluster cannot place the replicas (Serve would otherwise wait forever)."""
    total = float(ray.cluster_resources().get("CPU", 0))
    if replicas * need > total + 1e-9:
        raise ConfigError(
            f"{replicas} replicas x {need:g} CPUs = {replicas * need:g} CPUs, but the Ray cluster has {total:g}; "
            "lower --replicas/--threads/--num-cpus or add nodes (ray start --address=HEAD:6379)"
        )


def _quiet_shutdown(ray: Any, serve: Any) -> None:
    try:
        serve.shutdown()
    except Exception as e:  # shutting down after a failure: report the failure, not this
        LOGGER.debug("serve.shutdown failed: %s", e)
    ray.shutdown()


# ============================================================================== handle client
class RemoteDetector:
    """A ``Detector``-like client of a running app, over Ray Serve's ``DeploymentHandle``.

    Needs a Ray connection (``address=`` joins a cluster; in the process that ran :func:`run` it is
    already there). Arrays travel through Ray's object store; paths and bytes are sent encoded.

    Example:
        >>> rd = RemoteDetector("edge_mlla")          # doctest: +SKIP
        >>> d = rd(frame)                             # doctest: +SKIP
        >>> d.xyxy, d.class_name, d.timing            # doctest: +SKIP
        >>> rd([frame1, frame2])    # sent concurrently, batched by Serve   # doctest: +SKIP
    """

    def __init__(self, app: str = APP_NAME, address: str | None = None, timeout_s: float = 60.0) -> None:
        ray, serve = _import_ray()
        if not ray.is_initialized():
            if not address:
                raise ServeError("Ray is not initialized; pass address='auto' (or HEAD:6379) to join the cluster running the app")
            _start_ray(address)
        try:
            self._handle = serve.get_app_handle(app)
        except Exception as e:
            raise ServeError(f"no Serve app named {app!r} on this Ray cluster ({e}); start it with edge-mlla serve") from e
        self.app, self.timeout_s = app, float(timeout_s)

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

    def submit(self, image: Any) -> Any:
        """Send one image; returns a ``DeploymentResponse`` (``.result()`` -> Detections)."""
        return self._handle.detect.remote(self._payload(image))

    def predict(self, images: Any) -> Detections | list[Detections]:
        """Detections for an image (array, path, bytes) or a list of them (sent concurrently)."""
        if isinstance(images, (list, tuple)):
            responses = [self.submit(im) for im in images]
            return [r.result(timeout_s=self.timeout_s) for r in responses]
        return self.submit(images).result(timeout_s=self.timeout_s)

    __call__ = predict

    def info(self) -> dict[str, Any]:
        """Model and serving settings (of the replica that answers)."""
        return self._handle.info.remote().result(timeout_s=self.timeout_s)


# ============================================================================== many cameras
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


class HTTPClient:
    """A small keep-alive HTTP client for one thread: ``post(image) -> dict`` (raises on non-2xx).

    Example:
        >>> c = HTTPClient("http://127.0.0.1:8000/")              # doctest: +SKIP
        >>> c.post_bytes(open("a.jpg", "rb").read(), "image/jpeg")["class_names"]   # doctest: +SKIP
    """

    def __init__(self, url: str, timeout_s: float = 60.0) -> None:
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ConfigError(f"url must look like http://HOST:PORT/, got {url!r}")
        self.host, self.port, self.path = u.hostname, u.port or (443 if u.scheme == "https" else 80), u.path or "/"
        self._cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
        self.timeout_s = timeout_s
        self._conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """One request on the kept-alive connection (reconnects once if the server closed it)."""
        for attempt in (0, 1):
            if self._conn is None:
                self._conn = self._cls(self.host, self.port, timeout=self.timeout_s)
            try:
                self._conn.request(method, path, body=body, headers=headers or {})
                resp = self._conn.getresponse()
                return resp.status, resp.read()
            except (ConnectionError, http.client.HTTPException, OSError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def post_bytes(self, data: bytes, content_type: str = "image/jpeg") -> dict[str, Any]:
        status, body = self.request("POST", self.path, data, {"Content-Type": content_type})
        if status != 200:
            raise _RemoteError(status, body.decode("utf-8", "replace")[:500])
        return json.loads(body)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class _RemoteError(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}: {text}")
        self.status = status


def _retryable(e: BaseException) -> bool:
    if isinstance(e, _RemoteError):
        return e.status >= 500
    if isinstance(e, (ConnectionError, http.client.HTTPException, OSError, TimeoutError)):
        return True
    return type(e).__module__.startswith("ray")  # actor died / replica unavailable while Serve restarts it


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
    retries: int = 5,
    timeout_s: float = 60.0,
    keep_results: bool = False,
    on_result: Callable[[FrameResult], None] | None = None,
) -> StreamsReport:
    """Send frames of K sources to a served Detector, one sender thread per source, and measure.

    Files are read frame by frame (every frame, back-pressured by the server); cameras and URLs
    through a capture thread that keeps only the latest frame (stale frames are dropped and counted).
    With ``url`` frames go over HTTP (encoded as ``encoding``: ``jpeg`` or lossless ``png``);
    without it through :class:`RemoteDetector` (``app``, ``address``) as raw arrays. A failed
    request is retried up to ``retries`` times (5xx, connection errors, a replica being restarted);
    retries and final failures are counted per source. Stops at ``duration_s``, after ``max_frames``
    per source, or when every source ends.

    Example:
        >>> rep = serve_streams(["cam1.mp4", "cam2.mp4", 0], url="http://127.0.0.1:8000/", duration_s=30)  # doctest: +SKIP
        >>> print(rep.table())                                                                          # doctest: +SKIP
    """
    if isinstance(sources, (str, int, os.PathLike)) or not sources:
        raise InputTypeError("sources must be a non-empty list of camera indexes, video paths, image folders or URLs")
    if encoding not in ("jpeg", "png"):
        raise ConfigError(f"encoding must be 'jpeg' or 'png', got {encoding!r}")
    if max_frames is not None:
        max_frames = _positive_int(max_frames, "max_frames")
    if duration_s is not None and (not isinstance(duration_s, (int, float)) or duration_s <= 0):
        raise ConfigError(f"duration_s must be a positive number of seconds, got {duration_s!r}")
    if url:
        HTTPClient(url)  # validates the URL
        transport, remote = "http", None
    else:
        transport, remote = "handle", RemoteDetector(app, address=address, timeout_s=timeout_s)
    opened: list[tuple[Any, bool, str]] = []
    try:
        for s in sources:
            opened.append(open_capture(s))
    except BaseException:
        for cap, _, _ in opened:
            cap.release()
        raise
    stats = [SourceStats(label, live) for _, live, label in opened]
    stop = threading.Event()
    lock = threading.Lock()
    ext, params = (".jpg", [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]) if encoding == "jpeg" else (".png", [cv2.IMWRITE_PNG_COMPRESSION, 1])
    ctype = "image/jpeg" if encoding == "jpeg" else "image/png"

    def send_one(client: HTTPClient | None, img: np.ndarray) -> Detections:
        if client is not None:
            ok, buf = cv2.imencode(ext, img, params)
            if not ok:
                raise ImageReadError(f"could not encode a {img.shape} frame as {encoding}")
            return detections_from_json(client.post_bytes(buf.tobytes(), ctype))
        return remote.submit(img).result(timeout_s=timeout_s)

    def worker(i: int) -> None:
        cap, live, _ = opened[i]
        st = stats[i]
        client = HTTPClient(url, timeout_s) if url else None
        latest = _LatestFrame(cap, st, stop) if live else None
        t_start = time.perf_counter()
        try:
            while not stop.is_set():
                if max_frames is not None and st.sent >= max_frames:
                    break
                if latest is not None:
                    item = latest.next()
                    if item is None:
                        break
                    idx, img = item
                else:
                    ok, img = cap.read()
                    if not ok or img is None:
                        break
                    idx = st.read
                    st.read += 1
                st.sent += 1
                t0 = time.perf_counter()
                for attempt in range(retries + 1):
                    try:
                        d = send_one(client, img)
                        break
                    except Exception as e:  # counted, retried if transient, else recorded and skipped
                        if attempt < retries and _retryable(e) and not stop.is_set():
                            st.retries += 1
                            time.sleep(min(2.0, 0.05 * 2**attempt))
                            continue
                        st.errors += 1
                        st.last_error = f"{type(e).__name__}: {e}"[:300]
                        LOGGER.warning("source %s frame %d failed: %s", st.source, idx, st.last_error)
                        d = None
                        break
                if d is None:
                    continue
                lat = time.perf_counter() - t0
                st.processed += 1
                st.boxes += len(d)
                st.latencies_ms.append(1000 * lat)
                res = FrameResult(i, idx, d, lat)
                if keep_results:
                    st.results.append(res)
                if on_result is not None:
                    with lock:
                        on_result(res)
        finally:
            st.elapsed_s = time.perf_counter() - t_start
            if latest is not None:
                latest.halt.set()  # this sender is done (max_frames, end, stop): stop its capture thread
                latest.thread.join(timeout=5.0)
                with latest.cond:
                    if latest.frame is not None:  # read but never sent
                        st.dropped += 1
                        latest.frame = None
            if client is not None:
                client.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,), daemon=True, name=f"edge_mlla-stream{i}") for i in range(len(opened))]
    for t in threads:
        t.start()
    try:
        deadline = None if duration_s is None else t0 + duration_s
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
    finally:
        stop.set()
        for cap, _, _ in opened:
            cap.release()
    report = StreamsReport(stats, time.perf_counter() - t0, transport)
    LOGGER.info("streams: %d sources, %.1f FPS total over %.1f s (%s)", len(stats), report.fps, report.elapsed_s, transport)
    return report


__all__ = [
    "APP_NAME",
    "BATCHERS",
    "DetectorDeployment",
    "FrameResult",
    "GreedyBatcher",
    "HTTPClient",
    "RemoteDetector",
    "ServeConfig",
    "Server",
    "SourceStats",
    "StreamsReport",
    "build_app",
    "check_port",
    "decode_image",
    "detections_from_json",
    "detections_to_json",
    "image_header",
    "open_capture",
    "replica_budget",
    "run",
    "sigterm_as_interrupt",
    "serve_streams",
]
