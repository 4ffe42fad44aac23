"""The Backend protocol, the backend registry and ``available()``.

A backend runs one model file: numpy in, numpy out. It is narrow on purpose:

* ``__init__(path, device=None, precision=None, **options)`` loads the file for a device and precision;
* ``inputs`` / ``outputs`` describe the tensors (:class:`TensorSpec`), ``metadata`` is the file's own
  ``str -> str`` metadata (see :mod:`edge_mlla.modelfile`);
* ``infer(batch) -> list[np.ndarray]`` runs it, and is safe to call from several threads;
* ``close()`` releases it (backends are also context managers).

Async is an optional capability, not a stub: a backend that can overlap requests also derives from
:class:`AsyncBackend` and implements ``submit(batch) -> Future[list[np.ndarray]]`` (wait with
``future.result()``). Check with ``isinstance(backend, AsyncBackend)``.

A new backend is one file in this package: a :class:`Backend` subclass decorated with
:func:`register`. Each imports its runtime library lazily (inside ``check()`` and ``__init__``), so
importing ``edge_mlla.runtimes`` stays cheap.
"""

from __future__ import annotations

import importlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edge_mlla.errors import BackendUnavailableError, ConfigError, ModelFileError, ShapeError
from edge_mlla.modelfile import (  # noqa: F401  (re-exported: the precision vocabulary and file resolution live there)
    PRECISIONS,
    model_suffix,
    normalize_precision,
    resolve_model_file,
)

LOGGER = logging.getLogger("edge_mlla.runtimes")

@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and numpy dtype of a model input or output; a dynamic dimension is ``None``."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype

    @property
    def static(self) -> bool:
        """True when every dimension is fixed."""
        return all(d is not None for d in self.shape)


class Backend(ABC):
    """One loaded model on one runtime/device. Subclasses set ``name`` and ``suffixes`` and implement the rest."""

    #: registry key, e.g. ``"openvino"``
    name: ClassVar[str] = ""
    #: model file suffixes it loads, in ``auto`` preference order of the registry (lower ``priority`` first)
    suffixes: ClassVar[tuple[str, ...]] = ()
    #: order among backends that load the same suffix when ``backend="auto"`` (lower wins)
    priority: ClassVar[int] = 100

    device: str
    #: what ``infer`` takes: ``"nchw"`` (float32 RGB in [0, 1], (B, 3, H, W), the export layout) or ``"nhwc_u8"``
    #: (letterboxed BGR uint8 images as OpenCV holds them, (B, H, W, 3); the backend converts them in its graph)
    input_layout: str = "nchw"
    #: what the model computes in: ``f32``, ``bf16``, ``f16``, or ``int8`` for a quantized model
    precision: str

    @property
    def float_precision(self) -> str:
        """The precision of the ops that are not INT8 (for a float model, ``precision`` itself)."""
        return getattr(self, "_float_precision", None) or ("f32" if self.precision == "int8" else self.precision)

    @float_precision.setter
    def float_precision(self, value: str) -> None:
        self._float_precision = value

    @classmethod
    @abstractmethod
    def check(cls) -> str | None:
        """None when this backend can run here, else why not (package missing, no device, ...)."""

    @abstractmethod
    def __init__(self, path: str | Path, device: str | None = None, precision: str | None = None, **options: Any) -> None:
        ...

    # Subclasses fill these in __init__; the properties below expose them read-only.
    _inputs: list[TensorSpec]
    _outputs: list[TensorSpec]
    _metadata: dict[str, str]

    @property
    def inputs(self) -> list[TensorSpec]:
        """The model's inputs."""
        return list(self._inputs)

    @property
    def outputs(self) -> list[TensorSpec]:
        """The model's outputs."""
        return list(self._outputs)

    @property
    def metadata(self) -> dict[str, str]:
        """The model file's own metadata (names, stride, imgsz, ...); empty if it has none."""
        return dict(getattr(self, "_metadata", {}) or {})

    @abstractmethod
    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run the model on one input batch; returns the outputs in ``outputs`` order. Thread-safe."""

    def close(self) -> None:
        """Release the runtime's resources; the backend is unusable afterwards."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device={getattr(self, 'device', '?')!r}, precision={getattr(self, 'precision', '?')!r})"

    # helpers for implementations -------------------------------------------------------------
    def _check_batch(self, batch: np.ndarray) -> np.ndarray:
        spec = self.inputs[0]
        if not isinstance(batch, np.ndarray):
            raise ShapeError(f"{self.name}: infer() needs a numpy array, got {type(batch).__name__}")
        if batch.ndim != len(spec.shape) or any(
            want is not None and want != got for want, got in zip(spec.shape, batch.shape)
        ):
            raise ShapeError(f"{self.name}: input {spec.name!r} expects shape {_fmt_shape(spec.shape)}, got {batch.shape}")
        if batch.dtype != spec.dtype:
            batch = batch.astype(spec.dtype)
        return np.ascontiguousarray(batch)


class AsyncBackend(Backend):
    """A backend that can keep several requests in flight."""

    @property
    def optimal_requests(self) -> int:
        """How many requests to keep in flight for full throughput (what ``submit`` runs in parallel)."""
        return 1

    @abstractmethod
    def submit(self, batch: np.ndarray) -> Future:
        """Start inference on ``batch``; the future resolves to what ``infer(batch)`` returns."""


def call_times_ms(fn: Callable[[], object], runs: int, warmup: int = 5) -> list[float]:
    """Milliseconds of ``runs`` calls of ``fn()`` after ``warmup`` untimed ones, in call order.

    Shared by ``edge-mlla bench``'s conv peak, ``quantize``'s latency ranking and the benchmark scripts that time a
    bare call; take the median, not the mean, on shared machines.

    Example:
        >>> import statistics
        >>> statistics.median(call_times_ms(lambda: be.infer(x), runs=30))  # doctest: +SKIP
        12.7
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000.0)
    return times


def check_threads(threads: object) -> int | None:
    """The ``threads`` option every backend takes (CPU threads for inference; None: the runtime's default).

    Example:
        >>> check_threads(2), check_threads(None)
        (2, None)
    """
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads must be a positive int or None, got {threads!r}")
    return threads


def _fmt_shape(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


_REGISTRY: dict[str, type[Backend]] = {}
_DISCOVERED = False


def register(cls: type[Backend]) -> type[Backend]:
    """Class decorator: make a backend known to :func:`get_backend`, :func:`available` and ``Detector``.

    Example:
        >>> @register
        ... class Echo(Backend):
        ...     name, suffixes = "echo-doc", (".echo",)
        ...     @classmethod
        ...     def check(cls): return None
        ...     def __init__(self, path, device=None, precision=None, **options):
        ...         self.device, self.precision = "cpu", "f32"
        ...     inputs = property(lambda self: [TensorSpec("x", (1, 3, 8, 8), np.dtype(np.float32))])
        ...     outputs = inputs
        ...     def infer(self, batch): return [batch]
        >>> "echo-doc" in backends()
        True
        >>> unregister("echo-doc")
    """
    if not cls.name:
        raise ConfigError(f"backend class {cls.__name__} has no name")
    _REGISTRY[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    """Forget a registered backend (tests, plugins)."""
    _REGISTRY.pop(name, None)


# The built-in backends, one module each; a module registers its class when imported. Listed here rather than found
# by importing this package back (base is imported by that package's __init__): a third-party backend calls
# :func:`register` itself.
BUILTIN_BACKENDS = ("openvino", "onnxruntime", "cuda", "torch")


def _discover() -> None:
    """Import the built-in backend modules once, so each registers itself."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    for name in BUILTIN_BACKENDS:
        try:
            importlib.import_module(f"{__package__}.{name}")
        except Exception as e:  # a broken backend file must not break the others
            LOGGER.warning("could not import backend module %s: %s", name, e)


def backends() -> dict[str, type[Backend]]:
    """Every registered backend class by name (available here or not)."""
    _discover()
    return dict(_REGISTRY)


@dataclass(frozen=True)
class BackendStatus:
    """Whether a backend can run on this machine, and why not."""

    name: str
    available: bool
    reason: str
    suffixes: tuple[str, ...]

    def __bool__(self) -> bool:
        return self.available

    def __str__(self) -> str:
        return f"{self.name}: " + ("available" if self.available else f"unavailable ({self.reason})")


_STATUS_CACHE: dict[str, BackendStatus] = {}


def available(refresh: bool = False) -> dict[str, BackendStatus]:
    """Which backends work on this machine and, for the others, why not.

    Example:
        >>> from edge_mlla.runtimes import available
        >>> status = available()
        >>> sorted(status)  # doctest: +SKIP
        ['cuda', 'onnxruntime', 'openvino', 'torch']
        >>> bool(status["onnxruntime"]), status["onnxruntime"].reason  # doctest: +SKIP
        (True, '')
        >>> print(status["cuda"])  # doctest: +SKIP
        cuda: unavailable (onnxruntime has no CUDAExecutionProvider (installed providers: CPUExecutionProvider); pip install onnxruntime-gpu)
    """
    if refresh:
        _STATUS_CACHE.clear()
    out = {}
    for name, cls in sorted(backends().items(), key=lambda kv: (kv[1].priority, kv[0])):
        if name not in _STATUS_CACHE:
            try:
                reason = cls.check()
            except Exception as e:  # a check must not raise, but a broken install might
                reason = f"check failed: {type(e).__name__}: {e}"
            _STATUS_CACHE[name] = BackendStatus(name, reason is None, reason or "", tuple(cls.suffixes))
        out[name] = _STATUS_CACHE[name]
    return out


def get_backend(name: str) -> type[Backend]:
    """The backend class called ``name``; raises with the list of known names."""
    known = backends()
    if name not in known:
        raise ConfigError(f"unknown backend {name!r}; known backends: {', '.join(sorted(known))}")
    return known[name]


def select_backend(path: str | Path, backend: str = "auto", exclude: Sequence[str] = ()) -> type[Backend]:
    """The backend class for a model file: ``backend`` by name, or for ``"auto"`` the highest-priority
    available backend that loads the file's suffix, leaving out ``exclude`` (serve's CPU-only replicas leave out
    ``cuda``). Errors list what was tried and why it is unavailable."""
    suffix = model_suffix(path)
    if backend != "auto":
        cls = get_backend(backend)
        if suffix not in cls.suffixes:
            raise ModelFileError(
                f"backend {backend!r} loads {', '.join(cls.suffixes)} files, not {suffix or 'a file without suffix'} ({path})"
            )
        status = available()[cls.name]
        if not status.available:
            raise BackendUnavailableError(f"backend {backend!r} is not available here: {status.reason}")
        return cls
    candidates = [s for s in available().values() if suffix in s.suffixes and s.name not in exclude]
    if not candidates:
        loadable = sorted({sfx for s in available().values() for sfx in s.suffixes})
        raise ModelFileError(f"no backend loads {suffix or 'files without suffix'} ({path}); supported: {', '.join(loadable)}")
    for s in candidates:
        if s.available:
            return get_backend(s.name)
    raise BackendUnavailableError(
        f"no available backend for {suffix} files; " + "; ".join(f"{s.name}: {s.reason}" for s in candidates)
    )
