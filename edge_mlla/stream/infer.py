"""The detector protocol of the stream layer: anything that detects on a frame, driven without blocking."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from edge_mlla.errors import InputTypeError
from edge_mlla.results import Detections


class Inference:
    """Runs a detector-like object on a list of frames without blocking: ``submit(frames) -> Future[list]``.

    One frame and a ``submit`` method: the detector's own async path; otherwise ``predict(list)`` (or the
    object called on each frame) in a pool of ``workers`` threads. Safe to call ``close`` twice."""

    def __init__(self, detector: Any, workers: int) -> None:
        self.detector, self.workers = detector, int(workers)
        self._submit = getattr(detector, "submit", None) if callable(getattr(detector, "submit", None)) else None
        self._predict = getattr(detector, "predict", None)
        if not callable(self._predict):
            self._predict = None
        if self._submit is None and self._predict is None and not callable(detector):
            raise InputTypeError(
                "detector must be a Detector or detector-like: submit(frame) -> Future[Detections], predict(frames) "
                f"-> list[Detections] or detector(frame) -> Detections; got {type(detector).__name__}"
            )
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def submit(self, frames: list[np.ndarray]) -> Future:
        if len(frames) == 1 and self._submit is not None:
            inner = self._submit(frames[0])
            out: Future = Future()

            def one(f: Future) -> None:
                try:
                    out.set_result([f.result()])
                except BaseException as e:  # noqa: BLE001 (handed to the consumer)
                    out.set_exception(e)

            inner.add_done_callback(one)
            return out
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="edge_mlla-stream-infer")
            pool = self._pool
        return pool.submit(self._run, frames)

    def _run(self, frames: list[np.ndarray]) -> list[Detections]:
        if self._predict is not None:
            out = self._predict(list(frames))
            return list(out) if isinstance(out, (list, tuple)) else [out]
        return [self.detector(f) for f in frames]

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
