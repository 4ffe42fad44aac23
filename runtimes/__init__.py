"""Runtime backends: numpy in, numpy out, one file per runtime, each importing its library lazily.

Example:
    >>> from edge_mlla.runtimes import available
    >>> status = available()
    >>> sorted(status) == sorted(["openvino", "onnxruntime", "cuda", "torch"])  # the built-in backends
    True
    >>> print(status["cuda"])  # doctest: +SKIP
    cuda: unavailable (onnxruntime has no CUDAExecutionProvider ...)
"""

from __future__ import annotations

from edge_mlla.runtimes.base import (
    PRECISIONS,
    AsyncBackend,
    Backend,
    BackendStatus,
    TensorSpec,
    available,
    backends,
    get_backend,
    normalize_precision,
    register,
    select_backend,
    unregister,
)

__all__ = [
    "PRECISIONS",
    "AsyncBackend",
    "Backend",
    "BackendStatus",
    "TensorSpec",
    "available",
    "backends",
    "get_backend",
    "normalize_precision",
    "register",
    "select_backend",
    "unregister",
]
