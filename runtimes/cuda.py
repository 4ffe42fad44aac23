"""CUDA backend: onnxruntime-gpu with the CUDA execution provider, and TensorRT's when present.

Provider choice is made and validated in one function, :func:`select_providers`, whose errors list
what is installed. "TensorRT installed" means its runtime libraries load (:func:`tensorrt_missing`), not that
ONNX Runtime lists the TensorRT provider: every onnxruntime-gpu wheel lists it, with or without TensorRT, and a
session asked for it without the libraries fails. CUDA and cuDNN from NVIDIA's pip packages (``nvidia-*``, as
torch installs them) are loaded with ``onnxruntime.preload_dlls`` before the first session, ONNX Runtime's way
to find them when torch has not loaded them already and they are not on ``LD_LIBRARY_PATH``.

There is no silent fallback: ONNX Runtime drops a GPU provider that fails to
initialise and carries on on the CPU (https://github.com/microsoft/onnxruntime/issues/23372), so
after creating the session we check the providers it really uses and raise if they are not the ones
asked for.

Precision: ``f32`` runs the file as exported; ``f16`` runs TensorRT with fp16 kernels (or, on the CUDA
EP alone, needs an fp16 export); ``int8`` needs an INT8 QDQ export and the TensorRT EP. TensorRT
engines are cached in ``engine_cache`` (default ``~/.cache/edge_mlla/trt``). Inputs and outputs go
through IO binding (one binding per thread).

CUDA graphs (``cuda_graph``, CUDA provider only): a nano detector at batch 1 is bound by kernel launches, not
math, so replaying the whole model as one captured CUDA graph is faster (measured on an H200, batch 1: 3.0 ->
1.8 ms at 640, 2.3 -> 1.2 ms at 320, outputs bit-identical; batch 8: 6.1 -> 5.6 ms). A graph needs fixed
shapes and fixed device buffers, so it is the default for fixed-shape models only, and calls on one backend
are serialized (the captured buffers are shared); ``cuda_graph=False`` turns it off.

Example:
    >>> from edge_mlla.runtimes.cuda import select_providers
    >>> [name for name, _ in select_providers(["CUDAExecutionProvider", "CPUExecutionProvider"], device="cuda:0")]
    ['CUDAExecutionProvider']
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Sequence
from io import StringIO
from pathlib import Path
from typing import Any

import numpy as np
from edge_mlla.runtimes.base import register
from edge_mlla.runtimes.onnxruntime import _import_ort, _OrtSession, session_options

from edge_mlla.errors import BackendUnavailableError, ConfigError, ModelFileError
from edge_mlla.modelfile import normalize_precision, resolve_model_file

CUDA_EP = "CUDAExecutionProvider"
TRT_EP = "TensorrtExecutionProvider"
# the libraries the TensorRT provider links: TensorRT 10, TensorRT 8, TensorRT 10 on Windows
_TRT_LIBS = (
    ("libnvinfer.so.10", "libnvinfer_plugin.so.10", "libnvonnxparser.so.10"),
    ("libnvinfer.so.8", "libnvinfer_plugin.so.8", "libnvonnxparser.so.8"),
    ("nvinfer_10.dll", "nvinfer_plugin_10.dll", "nvonnxparser_10.dll"),
)
_preloaded = False


def tensorrt_missing() -> str | None:
    """``None`` when TensorRT's runtime libraries load, else why not.

    Looked up on the system search path and in the ``tensorrt_libs`` folder that ``pip install tensorrt``
    creates (loaded globally there, so ONNX Runtime's TensorRT provider finds them by name).

    Example:
        >>> from edge_mlla.runtimes.cuda import tensorrt_missing
        >>> tensorrt_missing()  # doctest: +SKIP
        "TensorRT's libraries (libnvinfer.so.10, ...) do not load: pip install tensorrt, or add TensorRT's lib folder to LD_LIBRARY_PATH"
    """
    folders = [""]
    with contextlib.suppress(Exception):
        import tensorrt_libs  # type: ignore[import-not-found]  # pip's TensorRT

        folders.insert(0, os.path.dirname(tensorrt_libs.__file__))
    for folder in folders:
        for names in _TRT_LIBS:
            try:
                for name in names:
                    ctypes.CDLL(os.path.join(folder, name) if folder else name, mode=ctypes.RTLD_GLOBAL)
            except OSError:
                continue
            return None
    return (
        f"TensorRT's libraries ({', '.join(_TRT_LIBS[0])}) do not load: pip install tensorrt, or add TensorRT's lib "
        "folder to LD_LIBRARY_PATH"
    )


def _preload_cuda_libraries(ort: Any) -> None:
    """Load CUDA/cuDNN from NVIDIA's pip packages once (``onnxruntime.preload_dlls``, onnxruntime-gpu >= 1.21).

    Its messages are printed, not raised, so they are kept off stdout; a library it cannot load shows up as
    the provider failing to start, which :class:`CudaBackend` reports.
    """
    global _preloaded
    if _preloaded or not hasattr(ort, "preload_dlls"):
        return
    _preloaded = True
    with contextlib.redirect_stdout(StringIO()), contextlib.suppress(Exception):
        ort.preload_dlls()


def parse_device(device: str | int | None) -> int:
    """CUDA device index from ``None``, ``0``, ``"cuda"``, ``"cuda:1"`` or ``"1"``.

    Example:
        >>> parse_device("cuda:1"), parse_device(None)
        (1, 0)
    """
    if device is None:
        return 0
    if isinstance(device, int):
        idx = device
    else:
        text = str(device).strip().lower()
        if text in ("cuda", "gpu"):
            return 0
        for prefix in ("cuda:", "gpu:"):
            text = text.removeprefix(prefix)
        try:
            idx = int(text)
        except ValueError:
            raise ConfigError(f"cuda device {device!r} is not understood; expected 'cuda', 'cuda:N' or N") from None
    if idx < 0:
        raise ConfigError(f"cuda device index must be >= 0, got {idx}")
    return idx


def select_providers(
    available: Sequence[str],
    device: str | int | None = None,
    precision: str | None = None,
    file_precision: str = "f32",
    tensorrt: bool | None = None,
    engine_cache: str | Path | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """Ordered ``(provider, options)`` for an ONNX Runtime session on a CUDA device, or a typed error.

    ``available`` is ``onnxruntime.get_available_providers()``. ``tensorrt=None`` uses TensorRT when
    installed, ``True`` requires it, ``False`` never uses it. The CPU provider is never listed: a node
    that no GPU provider takes is a configuration error, not something to run on the CPU unannounced.

    Example:
        >>> provs = select_providers([TRT_EP, CUDA_EP, "CPUExecutionProvider"], "cuda:1", "f16", engine_cache="/tmp/trt")
        >>> [(name, opts.get("trt_fp16_enable")) for name, opts in provs]
        [('TensorrtExecutionProvider', True), ('CUDAExecutionProvider', None)]
    """
    have = list(available)
    listed = ", ".join(have) or "none"
    dev = parse_device(device)
    prec = normalize_precision(precision) or file_precision
    if CUDA_EP not in have:
        raise BackendUnavailableError(
            f"onnxruntime has no {CUDA_EP} (installed providers: {listed}); pip install onnxruntime-gpu "
            "(and uninstall the CPU-only onnxruntime package)"
        )
    use_trt = TRT_EP in have if tensorrt is None else bool(tensorrt)
    if use_trt and TRT_EP not in have:
        raise BackendUnavailableError(f"tensorrt=True but onnxruntime has no {TRT_EP} (installed providers: {listed})")
    if prec == "bf16":
        raise ConfigError("cuda backend precisions are f32, f16 and int8; bf16 is not offered (use f16)")
    if prec == "int8":
        if file_precision != "int8":
            raise ConfigError(
                f"precision='int8' needs an INT8 QDQ model (quantize it with edge_mlla.quantize); this file is {file_precision}"
            )
        if not use_trt:
            raise ConfigError(
                f"INT8 on CUDA needs the {TRT_EP} (the CUDA EP would dequantize to float); installed providers: {listed}"
            )
    if prec == "f16" and not use_trt and file_precision != "f16":
        raise ConfigError(
            f"precision='f16' on the CUDA EP alone needs an fp16 export (export(..., half=True)); this file is "
            f"{file_precision}. Install TensorRT for fp16 kernels from an f32 file (installed providers: {listed})"
        )
    if prec == "f32" and file_precision not in ("f32",):
        raise ConfigError(f"precision='f32' but this file is {file_precision}; pass precision={file_precision!r} or None")
    out: list[tuple[str, dict[str, Any]]] = []
    if use_trt:
        cache = Path(engine_cache) if engine_cache else Path.home() / ".cache" / "edge_mlla" / "trt"
        out.append(
            (
                TRT_EP,
                {
                    "device_id": dev,
                    "trt_fp16_enable": prec in ("f16", "int8"),
                    "trt_int8_enable": prec == "int8",
                    "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": str(cache),
                    "trt_timing_cache_enable": True,
                    "trt_timing_cache_path": str(cache),
                },
            )
        )
    out.append((CUDA_EP, {"device_id": dev, "cudnn_conv_algo_search": "HEURISTIC"}))
    return out


def use_cuda_graph(requested: bool | None, fixed_shapes: bool, first_provider: str) -> bool:
    """Whether a session captures a CUDA graph: ``requested`` None decides (fixed shapes on the CUDA provider).

    Example:
        >>> use_cuda_graph(None, True, "CUDAExecutionProvider"), use_cuda_graph(None, False, "CUDAExecutionProvider")
        (True, False)
    """
    if requested is None:
        return fixed_shapes and first_provider == CUDA_EP
    if requested and first_provider != CUDA_EP:
        raise ConfigError("cuda_graph=True applies to the CUDA provider; pass tensorrt=False with it")
    if requested and not fixed_shapes:
        raise ConfigError("cuda_graph=True needs a fixed-shape model (export without dynamic=True)")
    return bool(requested)


def cuda_device_count() -> int:
    """Number of CUDA devices the driver reports (0 without a driver); needs neither torch nor onnxruntime."""
    for lib in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            cuda = ctypes.CDLL(lib)
        except OSError:
            continue
        count = ctypes.c_int(0)
        if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
        return count.value
    return 0


@register
class CudaBackend(_OrtSession):
    """onnxruntime-gpu on an NVIDIA GPU. ``device``: ``cuda`` / ``cuda:N``; ``precision``: f32, f16, int8
    (see module doc); ``tensorrt``: None (use if installed), True, False; ``engine_cache``: TensorRT
    engine folder; ``cuda_graph``: None (on for fixed-shape models on the CUDA provider), True, False;
    ``threads``/``graph_optimization``/``workers`` as the onnxruntime backend."""

    name = "cuda"
    suffixes = (".onnx",)
    priority = 0  # first for .onnx when a GPU is present

    @classmethod
    def check(cls) -> str | None:
        try:
            ort = _import_ort()
        except ImportError as e:
            return f"onnxruntime-gpu is not installed ({e}); pip install onnxruntime-gpu"
        have = ort.get_available_providers()
        if CUDA_EP not in have:
            return f"onnxruntime has no {CUDA_EP} (installed providers: {', '.join(have)}); pip install onnxruntime-gpu"
        if cuda_device_count() == 0:
            return "no CUDA device (the NVIDIA driver reports none)"
        return None

    def __init__(
        self,
        path: str | Path,
        device: str | int | None = None,
        precision: str | None = None,
        tensorrt: bool | None = None,
        engine_cache: str | Path | None = None,
        cuda_graph: bool | None = None,
        threads: int | None = None,
        graph_optimization: str = "all",
        workers: int = 2,
        **options: Any,
    ) -> None:
        if options:
            raise ConfigError(
                f"cuda backend got unknown options {sorted(options)}; expected tensorrt, engine_cache, cuda_graph, "
                "threads, graph_optimization, workers"
            )
        try:
            ort = _import_ort()
        except ImportError as e:
            raise BackendUnavailableError(f"onnxruntime-gpu is not installed ({e}); pip install onnxruntime-gpu") from e
        self._device_id = parse_device(device)
        fprec = _peek_file_precision(path)
        have = list(ort.get_available_providers())
        if TRT_EP in have and tensorrt is not False:
            missing = tensorrt_missing()
            if missing and tensorrt:
                raise BackendUnavailableError(f"tensorrt=True but {missing}")
            if missing:  # listed by every onnxruntime-gpu wheel; without the libraries it cannot start
                have.remove(TRT_EP)
        providers = select_providers(have, self._device_id, precision, fprec, tensorrt, engine_cache)
        if cuda_graph is not None and not isinstance(cuda_graph, bool):
            raise ConfigError(f"cuda_graph must be True, False or None, got {cuda_graph!r}")
        graph = use_cuda_graph(cuda_graph, _fixed_shapes(path), providers[0][0])
        if graph:
            providers[-1][1]["enable_cuda_graph"] = "1"
        _preload_cuda_libraries(ort)
        if providers[0][0] == TRT_EP:
            Path(providers[0][1]["trt_engine_cache_path"]).mkdir(parents=True, exist_ok=True)
        try:
            self._open(path, providers, session_options(ort, threads, None, graph_optimization), workers)
        except ModelFileError:
            if not graph or cuda_graph:  # asked for explicitly, or not the graph's fault: the error stands
                raise
            # a node the CUDA provider does not take makes a graph impossible; the session runs without one
            graph = False
            providers[-1][1].pop("enable_cuda_graph")
            self._open(path, providers, session_options(ort, threads, None, graph_optimization), workers)
        wanted = [name for name, _ in providers]
        got = self.providers
        if got[: len(wanted)] != wanted:  # https://github.com/microsoft/onnxruntime/issues/23372
            self._session = None
            raise BackendUnavailableError(
                f"onnxruntime did not start {', '.join(wanted)} (session runs on {', '.join(got)}); check the CUDA/cuDNN"
                f"{'/TensorRT' if TRT_EP in wanted else ''} libraries and that cuda:{self._device_id} exists"
            )
        self.device = f"cuda:{self._device_id}"
        self.precision = normalize_precision(precision) or fprec
        self.cuda_graph = graph
        self._ort = ort
        self._local = threading.local()
        self._graph_lock = threading.Lock()
        self._graph_io: Any = None  # (binding, input OrtValue, output OrtValues), made on the first call

    def _binding(self) -> Any:
        io = getattr(self._local, "io", None)
        if io is None:
            io = self._local.io = self._session.io_binding()
        return io

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        batch = self._check_batch(batch)
        if self.cuda_graph:
            return self._infer_graph(batch)
        io = self._binding()
        x = self._ort.OrtValue.ortvalue_from_numpy(batch, "cuda", self._device_id)
        io.bind_ortvalue_input(self._inputs[0].name, x)
        for name in self._output_names:
            io.bind_output(name, "cuda", self._device_id)
        self._session.run_with_iobinding(io)
        out = io.copy_outputs_to_cpu()
        io.clear_binding_inputs()
        io.clear_binding_outputs()
        return out

    def _infer_graph(self, batch: np.ndarray) -> list[np.ndarray]:
        """Copy into the captured input buffer, replay, copy the outputs out (one call at a time)."""
        ort, dev = self._ort, self._device_id
        with self._graph_lock:
            if self._session is None:
                raise ConfigError("this cuda backend is closed")
            if self._graph_io is None:  # the first run is a normal run; ONNX Runtime captures the graph on it
                x = ort.OrtValue.ortvalue_from_numpy(batch, "cuda", dev)
                ys = [ort.OrtValue.ortvalue_from_shape_and_type(list(o.shape), o.dtype, "cuda", dev) for o in self._outputs]
                io = self._session.io_binding()
                io.bind_ortvalue_input(self._inputs[0].name, x)
                for o, y in zip(self._outputs, ys):
                    io.bind_ortvalue_output(o.name, y)
                self._graph_io = (io, x, ys)
            else:
                self._graph_io[1].update_inplace(batch)
            io, _, ys = self._graph_io
            self._session.run_with_iobinding(io)
            return [y.numpy() for y in ys]

    def close(self) -> None:
        super().close()
        with self._graph_lock:
            self._graph_io = None


def _fixed_shapes(path: str | Path) -> bool:
    """Whether the ONNX file's input and every output have only fixed, positive dimensions."""
    import onnx

    graph = onnx.load(str(resolve_model_file(path, (".onnx",))), load_external_data=False).graph
    values = list(graph.input[:1]) + list(graph.output)
    return bool(values) and all(
        v.type.tensor_type.HasField("shape")
        and all(d.HasField("dim_value") and d.dim_value > 0 for d in v.type.tensor_type.shape.dim)
        for v in values
    )


def _peek_file_precision(path: str | Path) -> str:
    """The precision of an ONNX file (``int8`` for QDQ, else the recorded or input float type), without a GPU session."""
    from edge_mlla.modelfile import file_precision as recorded_precision
    from edge_mlla.modelfile import inspect_model

    mf = inspect_model(path)
    if mf.quantized:
        return "int8"
    return recorded_precision(mf.metadata, _input_dtype(mf.path))


def _input_dtype(path: Path) -> np.dtype:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    elem = model.graph.input[0].type.tensor_type.elem_type if model.graph.input else 1
    return np.dtype(np.float16) if elem == onnx.TensorProto.FLOAT16 else np.dtype(np.float32)
