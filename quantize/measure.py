"""Latency and throughput of a model file on one backend, model only (no pre/postprocessing), for the quantizer's
choice and its report. Float ops run in the device's native precision unless ``precision`` says otherwise."""

from __future__ import annotations

import os
import statistics
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np


def runtime_options(backend: str, threads: int | None) -> dict[str, Any]:
    """Backend keyword arguments that cap the inference threads (None: the runtime's default)."""
    if threads is None:
        return {}
    if backend == "openvino":
        return {"config": {"INFERENCE_NUM_THREADS": int(threads)}}
    return {"threads": int(threads)}


def _open(model: str | os.PathLike, backend: str, threads: int | None, precision: str | None, **kw: Any) -> Any:
    from edge_mlla.runtimes import get_backend

    opts = runtime_options(backend, threads)
    if backend == "openvino":
        opts["fused_preprocess"] = False  # the calibration batch is float NCHW; model time only
    return get_backend(backend)(Path(model), precision=precision, **opts, **kw)


def measure_latency(
    model: str | os.PathLike,
    backend: str,
    x: np.ndarray,
    runs: int = 30,
    threads: int | None = None,
    precision: str | None = None,
    warmup: int = 5,
) -> float:
    """Median milliseconds of ``backend.infer(x)`` (batch as given, one request at a time).

    ``precision``: OpenVINO inference precision hint (None: the device's native, e.g. bf16 on AMX CPUs).

    Example:
        >>> import numpy as np
        >>> measure_latency("best_int8.onnx", "onnxruntime", np.zeros((1, 3, 640, 640), np.float32))  # doctest: +SKIP
        31.2
    """
    be = _open(model, backend, threads, precision)
    try:
        for _ in range(warmup):
            be.infer(x)
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            be.infer(x)
            times.append(time.perf_counter() - t)
    finally:
        be.close()
    return statistics.median(times) * 1000.0


def measure_throughput(
    model: str | os.PathLike,
    backend: str,
    x: np.ndarray,
    seconds: float = 3.0,
    threads: int | None = None,
    precision: str | None = None,
) -> float:
    """Images per second with the backend's optimal number of requests in flight (OpenVINO ``throughput`` hint);
    ONNX Runtime runs one request at a time over all its threads, so there it is 1 / latency."""
    kw = {"hint": "throughput"} if backend == "openvino" else {}
    be = _open(model, backend, threads, precision, **kw)
    try:
        inflight = be.optimal_requests
        for _ in range(2 * inflight):
            be.infer(x)
        done = 0
        pending: list[Future] = []
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds or pending:
            while len(pending) < inflight and time.perf_counter() - t0 < seconds:
                pending.append(be.submit(x))
            pending.pop(0).result()
            done += 1
        elapsed = time.perf_counter() - t0
    finally:
        be.close()
    return done * x.shape[0] / elapsed
