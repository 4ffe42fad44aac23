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
are serialized (the captured buffers are shared); ``cuda_graph=False`` turns it off. The graph is captured when
the backend is made, while every other CUDA run of this process's backends waits (ONNX Runtime captures in
CUDA's global mode, where another thread's CUDA call would break the capture); CUDA work outside edge_mlla
(torch on the same GPU in another thread) is not held off, so make the backends before starting it.

Example:
    >>> from edge_mlla.runtimes.cuda import select_providers
    >>> [name for name, _ in select_providers(["CUDAExecutionProvider", "CPUExecutionProvider"], device="cuda:0")]
    ['CUDAExecutionProvider']

Imports inside functions: onnx and pip's TensorRT libraries (optional) load only when used.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import threading
from collections.abc import Sequence
from io import StringIO
from pathlib import Path
from typing import Any

import numpy as np
from edge_mlla.runtimes.base import register
from edge_mlla.runtimes.onnxruntime import _import_ort, _OrtSession, session_options

from edge_mlla.errors import BackendUnavailableError, ClosedError, ConfigError, ModelFileError
from edge_mlla.modelfile import ModelFile, file_precision, inspect_model, normalize_precision

LOGGER = logging.getLogger("edge_mlla.runtimes")
CUDA_EP = "CUDAExecutionProvider"
TRT_EP = "TensorrtExecutionProvider"
# the libraries the TensorRT provider links: TensorRT 10, TensorRT 8, TensorRT 10 on Windows
_TRT_LIBS = (
    ("libnvinfer.so.10", "libnvinfer_plugin.so.10", "libnvonnxparser.so.10"),
    ("libnvinfer.so.8", "libnvinfer_plugin.so.8", "libnvonnxparser.so.8"),
    ("nvinfer_10.dll", "nvinfer_plugin_10.dll", "nvonnxparser_10.dll"),
    ("nvinfer.dll", "nvinfer_plugin.dll", "nvonnxparser.dll"),
)
_preload_lock = threading.Lock()
_preload_note: str | None = None  # what onnxruntime.preload_dlls printed; None until it ran


def _load_library(path: str) -> None:
    if os.name == "nt":  # winmode=0: the classic search order, PATH included (where TensorRT's zip install goes)
        ctypes.CDLL(path, winmode=0)
    else:
        ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)  # global: the provider finds them by name


def tensorrt_missing() -> str | None:
    """``None`` when TensorRT's runtime libraries load, else why not.

    Looked up on the system search path (``PATH`` on Windows) and in the ``tensorrt_libs`` folder that
    ``pip install tensorrt`` creates. Loading is necessary, not sufficient (a TensorRT built for another
    CUDA major loads but cannot start): :class:`CudaBackend` falls back to the CUDA provider when TensorRT
    was not asked for explicitly and does not start.

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
                    _load_library(os.path.join(folder, name) if folder else name)
            except OSError:
                continue
            return None
    where = "PATH" if os.name == "nt" else "LD_LIBRARY_PATH"
    first = _TRT_LIBS[2] if os.name == "nt" else _TRT_LIBS[0]
    return f"TensorRT's libraries ({', '.join(first)}) do not load: pip install tensorrt, or add TensorRT's lib folder to {where}"


def _preload_cuda_libraries(ort: Any) -> None:
    """Load CUDA/cuDNN from NVIDIA's pip packages once per process (``onnxruntime.preload_dlls``, onnxruntime-gpu
    >= 1.21); what it printed (the libraries it could not load) is kept in ``_preload_note`` for error messages."""
    global _preload_note
    with _preload_lock:
        if _preload_note is None:
            text = StringIO()
            if hasattr(ort, "preload_dlls"):
                with contextlib.redirect_stdout(text):
                    try:
                        ort.preload_dlls()
                    except Exception as e:  # a broken install: the provider check below reports it
                        print(f"preload_dlls failed: {e}")
            _preload_note = text.getvalue().strip()
            if _preload_note:
                LOGGER.debug("onnxruntime.preload_dlls: %s", _preload_note)


class _CaptureGate:
    """Graph captures run alone, other CUDA runs of this process's backends run together.

    ONNX Runtime captures in CUDA's global capture mode: another thread's CUDA call during a capture (a
    copy, an allocation) fails and spoils the capture. Captures happen once, when a backend is made.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._runs = 0
        self._pending = 0
        self._capturing = False

    @contextlib.contextmanager
    def run(self) -> Any:
        with self._cond:
            while self._capturing or self._pending:  # a waiting capture goes first: a busy stream cannot starve it
                self._cond.wait()
            self._runs += 1
        try:
            yield
        finally:
            with self._cond:
                self._runs -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def capture(self) -> Any:
        with self._cond:
            self._pending += 1
            while self._capturing or self._runs:
                self._cond.wait()
            self._pending -= 1
            self._capturing = True
        try:
            yield
        finally:
            with self._cond:
                self._capturing = False
                self._cond.notify_all()


_GATE = _CaptureGate()  # one per process: CUDA's global capture mode is process-wide


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
        raise ConfigError("cuda_graph=True needs a model whose input and output shapes are fixed in the file "
                          "(export without dynamic=True)")
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
        if cuda_graph is not None and not isinstance(cuda_graph, bool):
            raise ConfigError(f"cuda_graph must be True, False or None, got {cuda_graph!r}")
        mf = inspect_model(path)
        fprec = "int8" if mf.quantized else file_precision(mf.metadata, _input_dtype(mf.path))
        _preload_cuda_libraries(ort)  # before TensorRT's check: its CUDA libraries may come from nvidia-* too
        have = list(ort.get_available_providers())
        trt_note = ""
        if TRT_EP in have and tensorrt is not False:
            missing = tensorrt_missing()
            if missing and tensorrt:
                raise BackendUnavailableError(f"tensorrt=True but {missing}")
            if missing:  # listed by every onnxruntime-gpu wheel; without the libraries it cannot start
                have.remove(TRT_EP)
                trt_note = f" ({missing})"
        try:
            providers = select_providers(have, self._device_id, precision, fprec, tensorrt, engine_cache)
        except ConfigError as e:
            raise ConfigError(f"{e}{trt_note}") from None
        so = session_options(ort, threads, None, graph_optimization)
        try:
            graph = self._start(ort, mf, providers, so, workers, cuda_graph)
        except BackendUnavailableError:
            if providers[0][0] != TRT_EP or tensorrt:  # asked for, or not TensorRT's doing: the error stands
                raise
            # TensorRT's libraries load but its provider did not start (another TensorRT major, another CUDA major)
            LOGGER.warning("cuda: the TensorRT provider did not start; running on the CUDA provider (tensorrt=False "
                           "skips this try)")  # fmt: skip
            providers = select_providers([h for h in have if h != TRT_EP], self._device_id, precision, fprec, False)
            graph = self._start(ort, mf, providers, so, workers, cuda_graph)
        self.device = f"cuda:{self._device_id}"
        self.precision = normalize_precision(precision) or fprec
        self.cuda_graph = graph

    def _start(self, ort: Any, mf: ModelFile, providers: list, so: Any, workers: int, cuda_graph: bool | None) -> bool:
        """Open the session (with a captured CUDA graph where :func:`use_cuda_graph` says so); returns whether the
        graph is in use. Raises :class:`BackendUnavailableError` when the providers asked for did not start."""
        first = providers[0][0]
        graph = use_cuda_graph(cuda_graph, mf.fixed_shapes, first)
        if first == TRT_EP:
            Path(providers[0][1]["trt_engine_cache_path"]).mkdir(parents=True, exist_ok=True)
        providers[-1][1].pop("enable_cuda_graph", None)
        if graph:
            providers[-1][1]["enable_cuda_graph"] = "1"
        self._ort = ort
        self._local = threading.local()
        self._graph_lock = threading.Lock()
        self._graph_io: Any = None  # (binding, input OrtValue, output OrtValues)
        try:
            self._open(mf.path, providers, so, workers)
        except ModelFileError as e:
            if not graph or cuda_graph:  # asked for explicitly, or not the graph's fault: the error stands
                raise
            LOGGER.warning("cuda: no CUDA graph for %s (%s); running without one", mf.path.name, e)
            return self._start(ort, mf, providers, so, workers, False)
        wanted = [name for name, _ in providers]
        got = self.providers
        if got[: len(wanted)] != wanted:  # https://github.com/microsoft/onnxruntime/issues/23372
            self._session = None
            hint = f"; onnxruntime.preload_dlls said: {_preload_note}" if _preload_note else ""
            raise BackendUnavailableError(
                f"onnxruntime did not start {', '.join(wanted)} (session runs on {', '.join(got)}); check the CUDA/cuDNN"
                f"{'/TensorRT' if TRT_EP in wanted else ''} libraries and that cuda:{self._device_id} exists{hint}"
            )
        if graph:
            try:
                self._capture_graph()
            except Exception as e:
                self._session = None
                if cuda_graph:
                    raise BackendUnavailableError(f"cuda_graph=True but the CUDA graph could not be captured: {e}") from e
                LOGGER.warning("cuda: CUDA graph capture failed for %s (%s); running without one", mf.path.name, e)
                return self._start(ort, mf, providers, so, workers, False)
        return graph

    def _capture_graph(self) -> None:
        """Bind fixed device buffers and run twice on zeros: ONNX Runtime runs the first normally and captures the
        graph on the second. Done here, once, with every other CUDA run of this process's backends held off."""
        ort, dev, sess = self._ort, self._device_id, self._session
        spec = self._inputs[0]
        x = ort.OrtValue.ortvalue_from_numpy(np.zeros(spec.shape, spec.dtype), "cuda", dev)
        ys = [ort.OrtValue.ortvalue_from_shape_and_type(list(o.shape), o.dtype, "cuda", dev) for o in self._outputs]
        io = sess.io_binding()
        io.bind_ortvalue_input(spec.name, x)
        for o, y in zip(self._outputs, ys):
            io.bind_ortvalue_output(o.name, y)
        with _GATE.capture():
            sess.run_with_iobinding(io)
            sess.run_with_iobinding(io)
        self._graph_io = (io, x, ys)

    def _binding(self, sess: Any) -> Any:
        io = getattr(self._local, "io", None)
        if io is None:
            io = self._local.io = sess.io_binding()
        return io

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        batch = self._check_batch(batch)
        sess = self._session
        if sess is None:
            raise ClosedError("this cuda backend is closed")
        if self.cuda_graph:
            return self._replay(batch)
        io = self._binding(sess)
        with _GATE.run():  # the copies too: no CUDA call of ours may overlap another backend's graph capture
            x = self._ort.OrtValue.ortvalue_from_numpy(batch, "cuda", self._device_id)
            io.bind_ortvalue_input(self._inputs[0].name, x)
            for name in self._output_names:
                io.bind_output(name, "cuda", self._device_id)
            sess.run_with_iobinding(io)
            out = io.copy_outputs_to_cpu()
        io.clear_binding_inputs()
        io.clear_binding_outputs()
        return out

    def _replay(self, batch: np.ndarray) -> list[np.ndarray]:
        """Copy into the captured input buffer, replay the graph, copy the outputs out (one call at a time)."""
        with self._graph_lock:
            sess, bound = self._session, self._graph_io
            if sess is None or bound is None:
                raise ClosedError("this cuda backend is closed")
            io, x, ys = bound
            with _GATE.run():
                x.update_inplace(batch)
                sess.run_with_iobinding(io)
                return [y.numpy() for y in ys]

    def close(self) -> None:
        super().close()
        with self._graph_lock:
            self._graph_io = None


def _input_dtype(path: Path) -> np.dtype:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    elem = model.graph.input[0].type.tensor_type.elem_type if model.graph.input else 1
    return np.dtype(np.float16) if elem == onnx.TensorProto.FLOAT16 else np.dtype(np.float32)
