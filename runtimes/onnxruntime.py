"""ONNX Runtime backend on the CPU execution provider.

The model runs in the precision it was exported in (f32, f16 or INT8 QDQ); ``precision`` is checked
against the file, never silently changed. Async requests go through a small thread pool
(``InferenceSession.run`` is thread-safe and releases the GIL).

Example:
    >>> from edge_mlla.runtimes.onnxruntime import OnnxRuntimeBackend
    >>> be = OnnxRuntimeBackend("model.onnx", threads=2, graph_optimization="all")  # doctest: +SKIP
    >>> outputs = be.infer(batch)                                                     # doctest: +SKIP

Imports inside functions: ONNX Runtime and onnx load when a backend is made, so that listing backends and
``import edge_mlla`` stay light.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from edge_mlla.errors import BackendUnavailableError, ClosedError, ConfigError, ModelFileError
from edge_mlla.modelfile import file_precision, has_quant_ops, normalize_precision, resolve_model_file
from edge_mlla.runtimes.base import AsyncBackend, TensorSpec, check_threads, register

_OPT_LEVELS = ("disable", "basic", "extended", "all")
_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
}


def _import_ort() -> Any:
    import onnxruntime as ort

    return ort


def _spec(arg: Any) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) and d > 0 else None for d in arg.shape)
    return TensorSpec(arg.name, shape, np.dtype(_ORT_DTYPES.get(arg.type, np.float32)))


def session_options(ort: Any, threads: int | None, inter_threads: int | None, graph_optimization: str) -> Any:
    """``SessionOptions`` with thread counts and graph optimization level, validated."""
    level = str(graph_optimization).lower()
    if level not in _OPT_LEVELS:
        raise ConfigError(f"graph_optimization {graph_optimization!r} is not one of {', '.join(_OPT_LEVELS)}")
    so = ort.SessionOptions()
    so.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    for attr, value in (("intra_op_num_threads", check_threads(threads)), ("inter_op_num_threads", inter_threads)):
        if value is not None:
            if int(value) < 0:
                raise ConfigError(f"{attr} must be >= 0 (0 = runtime default), got {value}")
            setattr(so, attr, int(value))
    so.log_severity_level = 3
    return so


class _OrtSession(AsyncBackend):
    """Shared ONNX Runtime session handling; subclasses choose the providers."""

    def _open(self, path: str | Path, providers: list, so: Any, workers: int) -> None:
        ort = _import_ort()
        path = resolve_model_file(path, (".onnx",))
        try:
            self._session = ort.InferenceSession(str(path), sess_options=so, providers=providers)
        except Exception as e:
            raise ModelFileError(f"onnxruntime could not load {path}: {e}") from e
        self.path = path
        self._inputs = [_spec(a) for a in self._session.get_inputs()]
        self._outputs = [_spec(a) for a in self._session.get_outputs()]
        if len(self._inputs) != 1:
            raise ModelFileError(f"{path} has {len(self._inputs)} inputs; a detector has one image input")
        self._output_names = [o.name for o in self._outputs]
        self._metadata = dict(self._session.get_modelmeta().custom_metadata_map)
        self._workers = max(1, int(workers))
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    @property
    def optimal_requests(self) -> int:
        """``workers``: concurrent ``run`` calls (each already uses every intra-op thread)."""
        return self._workers

    @property
    def providers(self) -> list[str]:
        """Execution providers the session actually uses, in priority order."""
        return list(self._session.get_providers())

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        if self._session is None:
            raise ClosedError(f"this {self.name} backend is closed")
        batch = self._check_batch(batch)
        return self._session.run(self._output_names, {self._inputs[0].name: batch})

    def submit(self, batch: np.ndarray) -> Future:
        if self._session is None:
            raise ClosedError(f"this {self.name} backend is closed")
        batch = self._check_batch(batch)
        with self._pool_lock:  # created on first use, once, even when several threads submit at the same time
            if self._session is None:
                raise ConfigError(f"this {self.name} backend is closed")
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix=f"edge_mlla-{self.name}")
            return self._pool.submit(self.infer, batch)

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        self._session = None


def _qdq_precision(path: Path) -> str | None:
    """``int8`` when the graph holds QuantizeLinear/DequantizeLinear (read with ``onnx`` when installed), else None."""
    try:
        import onnx
    except ImportError:  # the runtime-only install may lack onnx: trust the metadata
        return None
    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception:
        return None
    return "int8" if has_quant_ops(n.op_type for n in graph.node) else None


@register
class OnnxRuntimeBackend(_OrtSession):
    """ONNX Runtime, CPU execution provider. ``threads``/``inter_threads``: intra-/inter-op thread counts
    (default: runtime's); ``graph_optimization``: disable, basic, extended or all (default);
    ``workers``: async requests in flight (default 1: one ``run`` already uses every core; the caller's thread
    preprocesses the next frame meanwhile)."""

    name = "onnxruntime"
    suffixes = (".onnx",)
    priority = 10

    @classmethod
    def check(cls) -> str | None:
        try:
            ort = _import_ort()
        except ImportError as e:
            return f"onnxruntime is not installed ({e}); pip install onnxruntime"
        if "CPUExecutionProvider" not in ort.get_available_providers():
            return f"onnxruntime has no CPUExecutionProvider (has {', '.join(ort.get_available_providers())})"
        return None

    def __init__(
        self,
        path: str | Path,
        device: str | None = None,
        precision: str | None = None,
        threads: int | None = None,
        inter_threads: int | None = None,
        graph_optimization: str = "all",
        workers: int = 1,
        **options: Any,
    ) -> None:
        if options:
            raise ConfigError(
                f"onnxruntime backend got unknown options {sorted(options)}; expected threads, inter_threads, "
                "graph_optimization, workers"
            )
        if device not in (None, "cpu", "CPU"):
            raise ConfigError(f"onnxruntime backend runs on 'cpu' only, got device={device!r}; use backend='cuda' for GPUs")
        try:
            ort = _import_ort()
        except ImportError as e:
            raise BackendUnavailableError(f"onnxruntime is not installed ({e}); pip install onnxruntime") from e
        so = session_options(ort, threads, inter_threads, graph_optimization)
        self._open(path, ["CPUExecutionProvider"], so, workers)
        self.device = "cpu"
        self.precision = file_precision(self._metadata, self._inputs[0].dtype)
        if self.precision != "int8" and "precision" not in self._metadata.get("edge_mlla", ""):
            self.precision = _qdq_precision(self.path) or self.precision  # a QDQ file from another tool
        want = normalize_precision(precision)
        if want is not None and want != self.precision:
            raise ConfigError(
                f"onnxruntime runs {self.path.name} in the precision it was exported in ({self.precision}), not {want}; "
                "export/quantize the model in that precision, or use backend='openvino' for a bf16/f16 hint"
            )
