"""The replica: one ``Detector`` per Ray Serve replica, its handle API and its HTTP entry point.

:func:`~edge_mlla.serve.build_app` wraps :class:`DetectorDeployment` with ``serve.deployment``; Ray is
imported only when a replica starts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_mlla.errors import EdgeMLLAError, ImageReadError, InputTypeError, ServeError, ShapeError
from edge_mlla.results import Detections, Timing
from edge_mlla.serve.batching import GreedyBatcher
from edge_mlla.serve.codec import (
    HEALTH_ROUTES,
    PREDICT_ROUTES,
    HTTPError,
    check_content_type,
    check_token,
    decode_image,
    detections_to_json,
    error_body,
    read_body,
    route,
)
from edge_mlla.serve.config import ServeConfig, thread_options

LOGGER = logging.getLogger("edge_mlla.serve")


@dataclass
class _Item:
    image: np.ndarray
    enqueued: float


class DetectorDeployment:
    """The Ray Serve replica: one ``Detector`` per replica, requests batched by ``@serve.batch`` (or greedily).

    Not used directly: :func:`~edge_mlla.serve.build_app` wraps it with ``serve.deployment``. Its methods are
    the handle API (``detect``, ``detect_json``, ``info``) and ``__call__`` is the HTTP entry point. Every
    answer names the precision that ran (``model.precision``).

    Example:
        >>> app = build_app("best.onnx", replicas=2, max_batch=4)     # doctest: +SKIP
        >>> handle = serve.run(app, name="edge_mlla")                 # doctest: +SKIP
        >>> handle.detect.remote(frame).result().class_name           # doctest: +SKIP
    """

    def __init__(self, config: ServeConfig, model_files: dict[str, bytes] | None = None) -> None:
        from ray import serve

        from edge_mlla.detector import Detector
        from edge_mlla.serve.raystart import keep_replica_grpc_local

        keep_replica_grpc_local()  # before Serve starts this replica's gRPC server, which binds every interface
        self.config = config
        self._tmp: str | None = None
        path = Path(config.model)
        if model_files:  # shipped from the driver: this node need not have the file
            self._tmp = tempfile.mkdtemp(prefix="edge_mlla_serve_")
            for fname, blob in model_files.items():
                Path(self._tmp, fname).write_bytes(blob)
            path = Path(self._tmp, path.name)
        opts = thread_options(config.backend, config.threads, config.detector_options)
        self.det = Detector(path, backend=config.backend, device=config.device, precision=config.precision,
                            conf=config.conf, iou=config.iou, max_det=config.max_det, **opts)  # fmt: skip
        if config.backend == "torch" and config.threads:
            import torch  # only for .pt models, whose backend has imported it already

            torch.set_num_threads(int(config.threads))
        self._pool = ThreadPoolExecutor(max(2, config.threads or 1), thread_name_prefix="edge_mlla-serve")
        self._uploads = 0  # bodies being read now (one event loop: no lock needed)
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
            "precision": self.det.precision,  # what runs (bf16 on CPUs with BF16 unless precision="f32")
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

    async def _image(self, image: Any) -> np.ndarray:
        if isinstance(image, (bytes, bytearray, memoryview)):
            return await self._decode(bytes(image))
        if isinstance(image, np.ndarray):
            from edge_mlla.ops import as_bgr

            img = as_bgr(image)
            if img.shape[0] * img.shape[1] > self.config.max_pixels:
                raise ShapeError(f"image is {img.shape[1]}x{img.shape[0]}; this server accepts at most "
                                 f"{self.config.max_pixels} pixels (max_pixels)")  # fmt: skip
            return img
        raise InputTypeError(f"image has type {type(image).__name__}; expected a BGR uint8 numpy array or JPEG/PNG bytes")

    # ------------------------------------------------------------------ handle API
    async def detect(self, image: np.ndarray | bytes) -> Detections:
        """Detections for one image: a BGR uint8 array or JPEG/PNG bytes (timing = its batch's Timing)."""
        d, _, _ = await self._detect(await self._image(image))
        return d

    async def detect_json(self, image: np.ndarray | bytes) -> dict[str, Any]:
        """The HTTP answer's JSON for one image (array or JPEG/PNG bytes)."""
        t0 = time.perf_counter()
        img = await self._image(image)
        return await self._answer(img, t0, time.perf_counter() - t0)

    def info(self) -> dict[str, Any]:
        """Model (with the precision that runs) and serving settings of this replica."""
        return {"model": self._model_info, "serve": self.config.limits(), "replica": self.replica_id, "pid": os.getpid()}

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

        path = route(request.scope.get("path", "/"), request.scope.get("root_path", "") or "")
        try:
            if path in HEALTH_ROUTES:
                _method(request, "GET")
                return JSONResponse({"status": "ok", "replica": self.replica_id, **self._model_info_short()})
            check_token(request.headers, self.config.token)
            if path == "/info":
                _method(request, "GET")
                return JSONResponse(self.info())
            if path not in PREDICT_ROUTES:
                raise HTTPError(404, "not_found", f"no route {path}; use POST / (or /predict) with an image, GET /health, GET /info")
            _method(request, "POST")
            return JSONResponse(await self._predict_http(request))
        except HTTPError as e:
            return JSONResponse(e.body(), status_code=e.status, headers=e.headers)
        except EdgeMLLAError as e:
            return JSONResponse(error_body(400, type(e).__name__, str(e)), status_code=400)
        except Exception as e:  # a failure of ours: still a JSON answer, with the traceback in the replica's log
            LOGGER.exception("request failed on replica %s", self.replica_id)
            return JSONResponse(error_body(500, "internal_error", f"{type(e).__name__}: {e}"), status_code=500)

    async def _predict_http(self, request: Any) -> dict[str, Any]:
        t0 = time.perf_counter()
        ctype = check_content_type(request.headers)
        if self._uploads >= self.config.max_uploads:
            raise HTTPError(503, "too_many_uploads", f"{self._uploads} uploads are being read on this replica "
                                                     f"(max_uploads); retry shortly", {"Retry-After": "1"})  # fmt: skip
        self._uploads += 1
        try:
            data = await read_body(request.receive, request.headers, self.config.max_bytes, self.config.body_timeout_s)
        finally:
            self._uploads -= 1
        if not data:
            raise HTTPError(400, "empty_body", f"empty body; POST the bytes of a JPEG or PNG image with Content-Type {ctype}")
        try:
            img = await self._decode(data)
        except ShapeError as e:
            raise HTTPError(413, "image_too_large", str(e)) from None
        except ImageReadError as e:
            raise HTTPError(400, "bad_image", str(e)) from None
        del data
        return await self._answer(img, t0, time.perf_counter() - t0)

    def _model_info_short(self) -> dict[str, Any]:
        return {k: self._model_info[k] for k in ("backend", "precision", "imgsz")}

    def __del__(self) -> None:
        tmp = getattr(self, "_tmp", None)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def _method(request: Any, want: str) -> None:
    if request.method != want:
        raise HTTPError(405, "method_not_allowed", f"{request.method} {request.url.path}: use {want}")


__all__ = ["DetectorDeployment"]
