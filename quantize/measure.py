"""Latency and throughput of a model file on one backend, model only (no pre/postprocessing), for the quantizer's
choice and its report. Float ops run in the device's native precision unless ``precision`` says otherwise.

The timing loops themselves are :mod:`edge_mlla.bench.measure`'s (one measuring module for bench, quantize and
serve); this module opens the backends the quantizer compares and keeps them compiled across rounds."""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from edge_mlla.bench import measure as _m


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


def _latency_ms(be: Any, x: np.ndarray, runs: int, warmup: int = 5) -> float:
    return _m.latency_ms(lambda: be.infer(x), runs, warmup)


def _throughput(be: Any, x: np.ndarray, seconds: float) -> float:
    k = _m.requests_in_flight(be)
    return _m.throughput(lambda: be.submit(x), inflight=k, seconds=seconds, images_per_call=x.shape[0])


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
        return _latency_ms(be, x, runs, warmup)
    finally:
        be.close()


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
    be = _open(model, backend, threads, precision, **({"hint": "throughput"} if backend == "openvino" else {}))
    try:
        return _throughput(be, x, seconds)
    finally:
        be.close()


def measure_interleaved(
    models: list[str | os.PathLike],
    backend: str,
    x: np.ndarray,
    runs: int = 30,
    seconds: float = 3.0,
    rounds: int = 3,
    threads: int | None = None,
) -> list[tuple[float, float]]:
    """``(latency ms, images/s)`` of each model, measured in ``rounds`` interleaved rounds (model 1, 2, ..., then
    again) of ``runs / rounds`` timed runs and ``seconds / rounds`` of throughput each; medians over the rounds.

    Models are compared against each other from one run: interleaving spreads whatever else the machine does
    (another process, clock changes) over all of them instead of charging it to whichever was timed then. All
    models stay compiled meanwhile (two each: latency and throughput settings), so compile time stays out of
    the rounds; for large models on a small device that is the memory of 2 x len(models) compiled models.
    """
    rounds = max(1, min(rounds, runs))
    thr_kw = {"hint": "throughput"} if backend == "openvino" else {}
    opened: list[Any] = []  # [latency backend, throughput backend] per model, all compiled before any timing
    try:
        for m in models:
            opened.append(_open(m, backend, threads, None))
            opened.append(_open(m, backend, threads, None, **thr_kw))
        lat: list[list[float]] = [[] for _ in models]
        fps: list[list[float]] = [[] for _ in models]
        for r in range(rounds):
            for i in range(len(models)):
                lat[i].append(_latency_ms(opened[2 * i], x, max(1, runs // rounds), warmup=5 if r == 0 else 1))
                fps[i].append(_throughput(opened[2 * i + 1], x, seconds / rounds))
    finally:
        for be in opened:
            be.close()
    return [(statistics.median(a), statistics.median(b)) for a, b in zip(lat, fps)]
