"""Latency and throughput of a model file on one backend, model only (no pre/postprocessing), for the quantizer's
choice and its report. Float ops run in the device's native precision unless ``precision`` says otherwise.

The timing loops themselves are :mod:`edge_mlla.bench.measure`'s (one measuring module for bench, quantize and
serve); this module opens the backends the quantizer compares and keeps them compiled across rounds.

Imports inside functions: our module runtimes pulls in more than importing this module needs, so it loads when the
function that uses them runs.
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from edge_mlla.bench import measure as _m


def runtime_options(backend: str, threads: int | None) -> dict[str, Any]:
    """Backend keyword arguments that cap the inference threads (None: the runtime's default); every backend takes
    the same ``threads`` option."""
    return {} if threads is None else {"threads": int(threads)}


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


def as_layout(be: Any, x: np.ndarray) -> np.ndarray:
    """The float NCHW RGB calibration batch in the layout ``be`` takes (OpenVINO's fused preprocessing: BGR uint8
    NHWC), converted once instead of on every timed call."""
    if getattr(be, "input_layout", "nchw") == "nhwc_u8":
        return np.ascontiguousarray((x[:, ::-1].transpose(0, 2, 3, 1) * 255.0).round().clip(0, 255).astype(np.uint8))
    return x


class CompiledModels:
    """Each model file compiled once per use and kept: a latency backend (scoring and latency) and, for timing, a
    throughput one (OpenVINO's ``throughput`` hint). The quantizer scores and times a candidate with the same
    compiled models, so compile time is paid once.

    Example:
        >>> with CompiledModels("onnxruntime") as cm:                                  # doctest: +SKIP
        ...     [(ms, fps)] = cm.time(["m.onnx"], x, runs=10, seconds=1.0)
    """

    def __init__(self, backend: str, threads: int | None = None) -> None:
        self.backend, self.threads = backend, threads
        self._lat: dict[str, Any] = {}
        self._thr: dict[str, Any] = {}

    def latency(self, model: str | os.PathLike) -> Any:
        """The latency-hint backend of ``model`` (opened on first use)."""
        key = str(model)
        if key not in self._lat:
            self._lat[key] = _open_fused(model, self.backend, self.threads)
        return self._lat[key]

    def throughput(self, model: str | os.PathLike) -> Any:
        """The throughput-hint backend of ``model`` (opened on first use)."""
        key = str(model)
        if key not in self._thr:
            self._thr[key] = _open_fused(model, self.backend, self.threads,
                                         **({"hint": "throughput"} if self.backend == "openvino" else {}))  # fmt: skip
        return self._thr[key]

    def time(self, models: list[str | os.PathLike], x: np.ndarray, runs: int = 30, seconds: float = 3.0,
             rounds: int = 3) -> list[tuple[float, float]]:  # fmt: skip
        """``(latency ms, images/s)`` of each model in ``rounds`` interleaved rounds (:func:`edge_mlla.bench.measure
        .interleaved`), medians over rounds; every backend compiled before the first round."""
        rounds = max(1, min(rounds, runs))
        pairs = [(self.latency(m), self.throughput(m)) for m in models]
        xs = [(as_layout(a, x), as_layout(b, x)) for a, b in pairs]
        lat = _m.interleaved([lambda r, p=p, v=v: _latency_ms(p[0], v[0], max(1, runs // rounds), 5 if r == 0 else 1)
                              for p, v in zip(pairs, xs)], rounds)  # fmt: skip
        fps = _m.interleaved([lambda r, p=p, v=v: _throughput(p[1], v[1], seconds / rounds) for p, v in zip(pairs, xs)],
                             rounds)  # fmt: skip
        return list(zip(lat, fps))

    def drop(self, model: str | os.PathLike) -> None:
        """Close and forget ``model``'s backends (a candidate that lost)."""
        for cache in (self._lat, self._thr):
            be = cache.pop(str(model), None)
            if be is not None:
                be.close()

    def close(self) -> None:
        for key in list(self._lat) + list(self._thr):
            self.drop(key)

    def __enter__(self) -> CompiledModels:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open_fused(model: str | os.PathLike, backend: str, threads: int | None, **kw: Any) -> Any:
    from edge_mlla.runtimes import get_backend

    return get_backend(backend)(Path(model), **runtime_options(backend, threads), **kw)
