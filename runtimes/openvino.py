"""OpenVINO backend: ``.xml`` IR (and ``.onnx``) on CPU, GPU, NPU or AUTO, with an explicit precision hint.

OpenVINO runs an FP32 model in bf16 on CPUs that support it unless told
``INFERENCE_PRECISION_HINT=f32``; this backend always sets the hint (default ``f32``) and reports the
precision the compiled model actually uses in ``backend.precision``.

Example:
    >>> from edge_mlla.runtimes.openvino import OpenVINOBackend
    >>> be = OpenVINOBackend("model.xml", device="CPU", precision="f32", hint="latency")  # doctest: +SKIP
    >>> outputs = be.infer(batch)                                                          # doctest: +SKIP
    >>> future = be.submit(batch); outputs = future.result()                               # doctest: +SKIP
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from edge_mlla.errors import BackendUnavailableError, ConfigError, ModelFileError
from edge_mlla.metadata import read_openvino_metadata
from edge_mlla.runtimes.base import AsyncBackend, TensorSpec, normalize_precision, register, resolve_model_file

_DEVICES = ("CPU", "GPU", "NPU", "AUTO", "HETERO", "MULTI")
_HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT", "cumulative_throughput": "CUMULATIVE_THROUGHPUT"}
_PRECISION_CAPS = {"bf16": "BF16", "f16": "FP16"}  # OPTIMIZATION_CAPABILITIES a device needs for the hint


def _import_ov() -> Any:
    from edge_mlla._env import _opt_out_telemetry

    _opt_out_telemetry()
    import openvino as ov

    return ov


def _spec(port: Any) -> TensorSpec:
    shape = tuple(None if d.is_dynamic else d.get_length() for d in port.get_partial_shape())
    name = next(iter(port.get_names()), "") if port.get_names() else ""
    return TensorSpec(name, shape, np.dtype(port.get_element_type().to_dtype()))


@register
class OpenVINOBackend(AsyncBackend):
    """OpenVINO Runtime. ``device``: CPU (default), GPU, NPU, AUTO (or ``GPU.1``, ``AUTO:GPU,CPU``);
    ``precision``: f32 (default), bf16 or f16 — the inference precision hint, always set explicitly;
    ``hint``: ``latency`` (default) or ``throughput``; ``jobs``: async requests in flight (default: the
    device's optimal number); ``config``: extra OpenVINO properties; ``cache_dir``: compiled-model cache."""

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
        **options: Any,
    ) -> None:
        if options:
            raise ConfigError(f"openvino backend got unknown options {sorted(options)}; expected hint, jobs, config, cache_dir")
        try:
            ov = _import_ov()
        except ImportError as e:
            raise BackendUnavailableError(f"openvino is not installed ({e}); pip install openvino") from e
        self._ov = ov
        path = resolve_model_file(path)
        device = (device or "CPU").upper()
        if device.split(".")[0].split(":")[0] not in _DEVICES:
            raise ConfigError(f"openvino device {device!r} is not one of {', '.join(_DEVICES[:4])} (optionally GPU.1, AUTO:GPU,CPU)")
        hint_key = str(hint).lower()
        if hint_key not in _HINTS:
            raise ConfigError(f"openvino hint {hint!r} is not one of {', '.join(_HINTS)}")
        prec = normalize_precision(precision) or "f32"
        if prec == "int8":
            raise ConfigError(
                "openvino precision 'int8' is a property of the model file (quantize it with edge_mlla.quantize); "
                "pass precision='f32' (or None) to run an INT8 IR"
            )
        core = ov.Core()
        base = device.split(".")[0].split(":")[0]
        if base in ("CPU", "GPU", "NPU"):
            have = core.available_devices
            if not any(d.split(".")[0] == base for d in have) or ("." in device and device not in have):
                raise BackendUnavailableError(f"openvino device {device} is not present; available: {', '.join(have)}")
            caps = core.get_property(device, "OPTIMIZATION_CAPABILITIES")
            need = _PRECISION_CAPS.get(prec)
            if need and need not in caps:
                raise ConfigError(
                    f"openvino device {device} cannot run {prec} (its capabilities: {', '.join(caps)}); use precision='f32'"
                )
        if cache_dir is not None:
            core.set_property({"CACHE_DIR": str(cache_dir)})
        try:
            model = core.read_model(str(path))
        except Exception as e:
            raise ModelFileError(f"openvino could not read {path}: {e}") from e
        self._metadata = read_openvino_metadata(model, path)
        props = {"PERFORMANCE_HINT": _HINTS[hint_key], **(config or {})}
        if base != "NPU":  # NPU has no precision hint; it runs f16
            props["INFERENCE_PRECISION_HINT"] = prec
        try:
            self._compiled = core.compile_model(model, device, props)
        except Exception as e:
            raise ModelFileError(f"openvino could not compile {path} for {device} with {props}: {e}") from e
        self.path = path
        self.device = device
        self.hint = hint_key
        self.precision = self._compiled_precision(prec)
        self._inputs = [_spec(p) for p in self._compiled.inputs]
        self._outputs = [_spec(p) for p in self._compiled.outputs]
        if len(self._inputs) != 1:
            raise ModelFileError(f"{path} has {len(self._inputs)} inputs; a detector has one image input")
        self._local = threading.local()
        self._jobs = jobs
        self._queue: Any = None
        self._queue_lock = threading.Lock()

    def _compiled_precision(self, asked: str) -> str:
        """The precision the compiled model reports; a device that quietly ignored the hint is an error."""
        try:
            got = self._compiled.get_property("INFERENCE_PRECISION_HINT")
            got = normalize_precision(got.get_type_name() if hasattr(got, "get_type_name") else str(got))
        except Exception:  # AUTO/MULTI/NPU do not expose it: report what was asked
            return asked
        if got != asked:
            raise ConfigError(f"openvino compiled the model in {got} on {self.device}, not the requested {asked}; use precision={got!r}")
        return got

    def _request(self) -> Any:
        req = getattr(self._local, "request", None)
        if req is None:  # one infer request per thread: requests are not thread-safe, the compiled model is
            req = self._local.request = self._compiled.create_infer_request()
        return req

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        batch = self._check_batch(batch)
        req = self._request()
        req.infer({0: batch})
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
                raise ConfigError("this openvino backend is closed")
            if self._queue is None:
                workers = self._jobs or self._optimal_requests()
                self._queue = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="edge_mlla_ov")
            return self._queue.submit(self.infer, batch)

    def _optimal_requests(self) -> int:
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
