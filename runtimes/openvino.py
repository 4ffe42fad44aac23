"""OpenVINO backend: ``.xml`` IR (and ``.onnx``) on CPU, GPU, NPU or AUTO, with an explicit precision hint.

``precision=None`` (the default) runs the fastest precision the device computes natively
(:func:`native_precision`): bf16 on CPUs with AMX or AVX-512 BF16, f32 on other CPUs, f16 on GPUs and NPUs. The
hint is always set explicitly and the compiled model is asked what it really uses, which ``backend.precision``
reports (``precision="f32"`` gives exact parity on any CPU). An INT8 IR reports ``int8``; its float ops run in
``backend.float_precision``.

Example:
    >>> from edge_mlla.runtimes.openvino import OpenVINOBackend
    >>> be = OpenVINOBackend("model.xml", device="CPU", precision="f32", hint="latency")  # doctest: +SKIP
    >>> outputs = be.infer(batch)                                                          # doctest: +SKIP
    >>> future = be.submit(batch); outputs = future.result()                               # doctest: +SKIP

Imports inside functions: OpenVINO loads when a backend is made, so that listing backends and ``import edge_mlla``
stay light.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from edge_mlla.errors import BackendUnavailableError, ClosedError, ConfigError, ModelFileError
from edge_mlla.modelfile import has_quant_ops, normalize_precision, read_openvino_metadata, resolve_model_file
from edge_mlla.ovread import one_line, read_model
from edge_mlla.runtimes.base import AsyncBackend, TensorSpec, check_threads, register
from edge_mlla.runtimes.capabilities import device_capabilities, is_simulated, native_precision  # noqa: F401  (re-exported)

LOGGER = logging.getLogger("edge_mlla.runtimes")
_DEVICES = ("CPU", "GPU", "NPU", "AUTO", "HETERO", "MULTI")
_HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT", "cumulative_throughput": "CUMULATIVE_THROUGHPUT"}
_PRECISION_CAPS = {"bf16": "BF16", "f16": "FP16"}  # OPTIMIZATION_CAPABILITIES a device needs for the hint


def _import_ov() -> Any:
    from edge_mlla._env import _opt_out_telemetry

    _opt_out_telemetry()
    import openvino as ov

    return ov


def is_image_input(port: Any) -> bool:
    """An f32 (B, 3, H, W) model input: the export layout's image (RGB scaled to [0, 1])."""
    shape = port.get_partial_shape()
    return (port.get_element_type().get_type_name() == "f32" and shape.rank.is_static and shape.rank.get_length() == 4
            and shape[1].is_static and shape[1].get_length() == 3)  # fmt: skip


def _fusable(model: Any) -> bool:
    """One image input (:func:`is_image_input`): the export layout whose preprocessing can move into the graph."""
    return len(model.inputs) == 1 and is_image_input(model.inputs[0])


def _fuse_preprocess(ov: Any, model: Any) -> Any:
    """Preprocessing inside the compiled model (OpenVINO ``PrePostProcessor``): the input becomes the letterboxed
    BGR uint8 NHWC image as OpenCV holds it; the u8 -> f32 conversion, BGR -> RGB swap, 1/255 scale and NHWC -> NCHW
    layout change run in the graph, fused into the first convolution's input, instead of ~1.5 ms of numpy per
    640x640 frame (measured: ``benchmarks/bench_detector.py``)."""
    from openvino.preprocess import ColorFormat, PrePostProcessor

    ppp = PrePostProcessor(model)
    inp = ppp.input(0)
    inp.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(ColorFormat.BGR)
    inp.model().set_layout(ov.Layout("NCHW"))
    inp.preprocess().convert_element_type(ov.Type.f32).convert_color(ColorFormat.RGB).scale(255.0)
    return ppp.build()


def _spec(port: Any) -> TensorSpec:
    shape = tuple(None if d.is_dynamic else d.get_length() for d in port.get_partial_shape())
    name = next(iter(port.get_names()), "") if port.get_names() else ""
    return TensorSpec(name, shape, np.dtype(port.get_element_type().to_dtype()))


def _device_precision(core: Any, device: str, asked: str | None) -> str:
    """The inference precision hint for ``device``: the policy's (None, or ``int8`` for an INT8 model's float ops)
    or the one asked for, refused where the device cannot run it; the device must be present."""
    base = device.split(".")[0].split(":")[0]
    caps: list[str] = []
    if base in ("CPU", "GPU", "NPU"):
        have = core.available_devices
        if not any(d.split(".")[0] == base for d in have) or ("." in device and device not in have):
            raise BackendUnavailableError(f"openvino device {device} is not present; available: {', '.join(have)}")
        caps = device_capabilities(core, device)
    prec = native_precision(device, caps) if asked in (None, "int8") else asked
    need = _PRECISION_CAPS.get(prec)
    if base in ("CPU", "GPU", "NPU") and need and need not in caps:
        raise ConfigError(f"openvino device {device} cannot run {prec} (its capabilities: {', '.join(caps)}); use precision='f32'")
    return prec


@register
class OpenVINOBackend(AsyncBackend):
    """OpenVINO Runtime. ``device``: CPU (default), GPU, NPU, AUTO (or ``GPU.1``, ``AUTO:GPU,CPU``);
    ``precision``: None (default: the device's native fastest, see :func:`native_precision`), f32, bf16 or f16 —
    the inference precision hint, always set explicitly (``int8`` is accepted for an INT8 IR: its float ops then
    run in the native precision);
    ``hint``: ``latency`` (default) or ``throughput``; ``jobs``: async requests in flight (default: the
    device's optimal number, plus one whose thread can postprocess while the others infer); ``threads``: CPU threads for inference (default: all cores); ``config``: extra
    OpenVINO properties; ``cache_dir``: compiled-model cache;
    ``fused_preprocess`` (default True): the compiled model takes letterboxed BGR uint8 NHWC images and converts
    them itself (``input_layout == "nhwc_u8"``); ``infer`` still accepts the float NCHW RGB batch too."""

    name = "openvino"
    suffixes = (".xml", ".onnx")
    priority = 20

    @classmethod
    def check(cls) -> str | None:
        try:
            ov = _import_ov()
        except ImportError as e:
            return f"openvino is not installed ({e}); pip install openvino"
        try:
            devices = ov.Core().available_devices
        except Exception as e:
            return f"openvino could not list devices: {e}"
        return None if devices else "openvino sees no device"

    def __init__(
        self,
        path: str | Path,
        device: str | None = None,
        precision: str | None = None,
        hint: str = "latency",
        jobs: int | None = None,
        config: dict[str, Any] | None = None,
        cache_dir: str | Path | None = None,
        fused_preprocess: bool = True,
        threads: int | None = None,
        **options: Any,
    ) -> None:
        if options:
            raise ConfigError(
                f"openvino backend got unknown options {sorted(options)}; expected hint, jobs, threads, config, "
                "cache_dir, fused_preprocess"
            )
        try:
            ov = _import_ov()
        except ImportError as e:
            raise BackendUnavailableError(f"openvino is not installed ({e}); pip install openvino") from e
        self._ov = ov
        path = resolve_model_file(path, (".xml", ".onnx"))
        device = (device or "CPU").upper()
        if device.split(".")[0].split(":")[0] not in _DEVICES:
            raise ConfigError(f"openvino device {device!r} is not one of {', '.join(_DEVICES[:4])} (optionally GPU.1, AUTO:GPU,CPU)")
        hint_key = str(hint).lower()
        if hint_key not in _HINTS:
            raise ConfigError(f"openvino hint {hint!r} is not one of {', '.join(_HINTS)}")
        asked = normalize_precision(precision)
        core = ov.Core()
        policy = asked in (None, "int8")  # the precision is ours to choose (and to report as it really runs)
        prec = _device_precision(core, device, asked)
        if cache_dir is not None:
            core.set_property({"CACHE_DIR": str(cache_dir)})
        model = self._read(ov, core, path, fused_preprocess)
        self.int8 = has_quant_ops(op.get_type_name() for op in model.get_ops())
        if asked == "int8" and not self.int8:
            raise ConfigError(
                f"precision='int8' but {path.name} is not quantized; quantize it (edge-mlla quantize) or leave precision=None"
            )
        threads = check_threads(threads)
        props = {"PERFORMANCE_HINT": _HINTS[hint_key], **({"INFERENCE_NUM_THREADS": threads} if threads else {}), **(config or {})}
        if not device.startswith("NPU"):  # NPU has no precision hint; it runs f16
            props["INFERENCE_PRECISION_HINT"] = prec
        try:
            self._compiled = core.compile_model(model, device, props)
        except Exception as e:
            raise ModelFileError(f"openvino could not compile {path} for {device} with {props}: {one_line(e)}") from e
        self.path = path
        self.device = device
        self.hint = hint_key
        self.float_precision = self._compiled_precision(prec, policy)
        self.precision = "int8" if self.int8 else self.float_precision
        self._inputs = [_spec(p) for p in self._compiled.inputs]
        self._outputs = [_spec(p) for p in self._compiled.outputs]
        if len(self._inputs) != 1:
            raise ModelFileError(f"{path} has {len(self._inputs)} inputs; a detector has one image input")
        self._local = threading.local()
        self._jobs = jobs
        self._queue: Any = None
        self._queue_lock = threading.Lock()

    def _read(self, ov: Any, core: Any, path: Path, fused_preprocess: bool) -> Any:
        """Read the model file and its metadata; preprocessing moves into the graph where it can."""
        model = read_model(path, core)
        self._metadata = read_openvino_metadata(model, path)
        self.input_layout = "nchw"
        if fused_preprocess and _fusable(model):
            model = _fuse_preprocess(ov, model)
            self.input_layout = "nhwc_u8"
        return model

    def _compiled_precision(self, asked: str, policy: bool) -> str:
        """The precision the compiled model reports. A device that quietly ignored a hint the *user* gave is an
        error; where the policy chose the hint (e.g. bf16 from ``EDGE_MLLA_CAPS`` on a CPU without BF16, which
        OpenVINO then runs in f32), what really runs is reported."""
        try:
            got = self._compiled.get_property("INFERENCE_PRECISION_HINT")
            got = normalize_precision(got.get_type_name() if hasattr(got, "get_type_name") else str(got))
        except Exception:  # AUTO/MULTI/NPU do not expose it: report what was asked
            return asked
        if got != asked and policy:
            LOGGER.info("openvino: the %s hint runs as %s on %s%s", asked, got, self.device,
                        " (capabilities simulated by EDGE_MLLA_CAPS)" if is_simulated(self.device) else "")
            return got
        if got != asked:
            raise ConfigError(f"openvino compiled the model in {got} on {self.device}, not the requested {asked}; use precision={got!r}")
        return got

    def _request(self) -> Any:
        if self._compiled is None:
            raise ClosedError("this openvino backend is closed")
        req = getattr(self._local, "request", None)
        if req is None:  # one infer request per thread: requests are not thread-safe, the compiled model is
            req = self._local.request = self._compiled.create_infer_request()
        return req

    def _check_batch(self, batch: np.ndarray) -> np.ndarray:
        if self.input_layout == "nhwc_u8" and isinstance(batch, np.ndarray) and batch.dtype != np.uint8 and batch.ndim == 4 \
                and batch.shape[1] == 3:  # the canonical float NCHW RGB batch: back to the u8 NHWC BGR the graph takes
            batch = np.ascontiguousarray((batch[:, ::-1].transpose(0, 2, 3, 1) * 255.0).round().clip(0, 255).astype(np.uint8))
        return super()._check_batch(batch)

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        batch = self._check_batch(batch)
        req = self._request()
        # the runtime reads our batch in place, and returns its outputs without the copy we would discard: the one
        # copy below is what the caller keeps (the request's buffers are reused by its next call)
        req.infer({0: batch}, share_inputs=True, share_outputs=True)
        return [req.get_output_tensor(i).data.copy() for i in range(len(self._outputs))]

    def submit(self, batch: np.ndarray) -> Future:
        # Async = a pool of threads, each with its own infer request (sync ``infer`` releases the GIL, so
        # ``jobs`` requests really run in parallel). Not ``AsyncInferQueue`` with a Python callback: tearing
        # that down hangs (main thread in ~CompiledModel -> ~CPUStreamsExecutor -> join while an OpenVINO
        # thread waits for the GIL), seen here with OpenVINO 2026.4.1 and reported in
        # https://github.com/ultralytics/ultralytics/issues/25923 (see also openvinotoolkit/openvino#37073).
        batch = self._check_batch(batch)
        with self._queue_lock:
            if self._compiled is None:
                raise ClosedError("this openvino backend is closed")
            if self._queue is None:
                # one thread more than the runtime's requests unless ``jobs`` says: a thread that finished inference
                # runs the caller's postprocessing (Future callbacks) before it takes the next batch, and the extra
                # request keeps every stream busy meanwhile (StreamRunner, INT8, throughput hint, 2-core EPYC:
                # 0.88x -> 0.92x of benchmark_app's FPS)
                workers = self.optimal_requests + (0 if self._jobs else 1)
                self._queue = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="edge_mlla_ov")
            return self._queue.submit(self.infer, batch)

    @property
    def optimal_requests(self) -> int:
        """``jobs`` when given, else the compiled model's OPTIMAL_NUMBER_OF_INFER_REQUESTS (depends on the hint)."""
        if self._jobs:
            return int(self._jobs)
        try:
            return max(1, int(self._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        except Exception:  # devices that do not report it
            return 2

    def close(self) -> None:
        with self._queue_lock:
            if self._queue is not None:
                self._queue.shutdown(wait=True)  # pool threads exit and drop their infer requests
                self._queue = None
        self._local = threading.local()
        self._compiled = None
