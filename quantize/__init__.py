"""INT8 post-training quantization of exported YOLO11(-MLLA) detectors, with an accuracy report.

``quantize(model, calib=...)`` takes an exported ``.onnx`` or OpenVINO ``.xml`` (FP32), calibration data
(:mod:`.calibration`), and writes an INT8 model:

* ``backend="openvino"``: NNCF ``quantize`` (preset MIXED, fast bias correction off) -> IR with FakeQuantize;
  with ``max_drop`` (and ``val``) NNCF's accuracy control, driven by our mAP50-95 (:mod:`edge_mlla.eval`);
* ``backend="onnxruntime"``: ``quant_pre_process`` + ``quantize_static`` -> QDQ ONNX (per-channel weights,
  ``method`` minmax/entropy/percentile, ``reduce_range`` only on CPUs without VNNI).

Both keep the same graph-derived nodes in float (:mod:`.scope`: the head's box decoding and the sensitive
MLLA ops), keep the source metadata (``precision: int8`` + quantization details in the ``edge_mlla`` entry),
and write to a temporary name first, so a failure never leaves a broken model file.

Runnable as ``python -m edge_mlla.quantize MODEL --calib SRC`` (same options as ``edge-mlla quantize``).

Example:
    >>> from edge_mlla.quantize import quantize
    >>> report = quantize("best.onnx", calib="bccd", backend="openvino", val="bccd")  # doctest: +SKIP
    >>> print(report.table())  # doctest: +SKIP
    | model | precision | mAP50-95 | mAP50 | latency ms | size MB |
    ...
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_mlla.errors import ConfigError, ModelFileError, ShapeError
from edge_mlla.quantize._model import file_size, resolve_output, resolve_source
from edge_mlla.quantize.calibration import CalibrationSet, load_calibration
from edge_mlla.quantize.report import ModelStats, QuantizeReport
from edge_mlla.quantize.scope import DEFAULT_GROUPS, GROUPS, ScopePolicy

LOGGER = logging.getLogger("edge_mlla")

__all__ = ["quantize", "QuantizeReport", "ModelStats", "ScopePolicy", "load_calibration", "CalibrationSet",
           "BACKENDS", "GROUPS", "DEFAULT_GROUPS", "measure_latency"]  # fmt: skip

BACKENDS = ("openvino", "onnxruntime")


def _hw(imgsz: Any) -> tuple[int, int] | None:
    if imgsz is None:
        return None
    if isinstance(imgsz, (int, np.integer)) and not isinstance(imgsz, bool):
        return int(imgsz), int(imgsz)
    try:
        h, w = (int(v) for v in imgsz)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"imgsz must be an int or (height, width), got {imgsz!r}") from e
    return h, w


def quantize(
    model: str | os.PathLike,
    calib: str | os.PathLike | np.ndarray | Sequence[np.ndarray] | CalibrationSet = "bccd",
    backend: str = "openvino",
    subset_size: int = 300,
    preset: str = "mixed",
    max_drop: float | None = None,
    val: str | os.PathLike | None = None,
    output: str | os.PathLike | None = None,
    imgsz: int | tuple[int, int] | None = None,
    *,
    scope: str | Sequence[str] | ScopePolicy | None = None,
    method: str = "minmax",
    activations: str = "auto",
    fast_bias_correction: bool = False,
    every: int | None = None,
    val_split: str = "val",
    val_limit: int | None = None,
    latency_runs: int = 30,
    threads: int | None = None,
    report_dir: str | os.PathLike | None = None,
) -> QuantizeReport:
    """Quantize an exported FP32 model to INT8 and report what it cost.

    Args:
        model: exported ``.onnx`` or OpenVINO ``.xml`` (or its folder), FP32 or FP16, not already INT8.
        calib: calibration source: image folder, video file, data.yaml / bundled name (train split), or
            BGR uint8 arrays (see :func:`~edge_mlla.quantize.calibration.load_calibration`).
        backend: ``"openvino"`` (NNCF, -> ``.xml``) or ``"onnxruntime"`` (QDQ, -> ``.onnx``; needs an ``.onnx``).
        subset_size: at most this many calibration images (fewer available: a CalibrationWarning, all used).
        preset: NNCF preset, ``"mixed"`` (default) or ``"performance"``; OpenVINO only.
        max_drop: NNCF accuracy control: largest allowed absolute mAP50-95 drop (0.01 = 1 point); needs ``val``.
        val: data.yaml / bundled name to measure FP32 and INT8 mAP on (its ``val_split``); None: no accuracy.
        output: output model file (``.xml``/``.onnx``) or folder; default beside the source
            (``best_int8.onnx``, ``best_int8_openvino_model/best_int8.xml``).
        imgsz: input size; must equal the model's static input size (required for dynamic-size models
            without imgsz metadata).
        scope: ignored-scope groups kept in float (``"head,z"`` default, ``"all"``, ``"none"``,
            or a list from :data:`GROUPS`; see :mod:`edge_mlla.quantize.scope`).
        method: ONNX Runtime calibration method: ``minmax``, ``entropy`` or ``percentile``.
        activations: ONNX Runtime activation type: ``uint8`` (U8S8), ``int8`` (S8S8) or ``auto`` (uint8 on x86).
        fast_bias_correction: NNCF's fast bias correction (off by default: more accurate, slower).
        every: video sources: take every ``every``-th frame.
        val_split, val_limit: split and number of images for the accuracy report.
        latency_runs: timed runs per model for the report (0: skip timing); batch 1, median.
        threads: inference threads for timing and validation (runtime default if None).
        report_dir: where ``<output stem>_report.json`` / ``.png`` go (default: beside the output).

    Returns:
        :class:`QuantizeReport` (``.table()``, ``.map_drop``, ``.json_path``, ``.png_path``).

    Raises:
        MissingFileError, ModelFileError (not an exported detector, already INT8, wrong format for the
        backend), ShapeError (imgsz differs from the model's input), ConfigError (bad option, ``max_drop``
        without ``val``), DatasetError (calibration source empty / without images / unreadable),
        OutputNotWritableError, QuantizationError (the quantizer failed; no file is left at ``output``).

    Example:
        >>> r = quantize("best.onnx", calib="images/", backend="onnxruntime", method="entropy")  # doctest: +SKIP
        >>> r.output  # doctest: +SKIP
        'best_int8.onnx'
    """
    # ---- validate everything before any slow work
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {BACKENDS}, got {backend!r}")
    from edge_mlla.modelfile import parse_metadata

    policy = ScopePolicy.parse(scope)
    src = resolve_source(model)
    src_path = src.path
    if src.quantized:
        raise ModelFileError(f"{src_path.name} is already quantized (INT8 ops or precision 'int8' in its metadata); "
                             "quantize the FP32 export instead")  # fmt: skip
    if backend == "onnxruntime" and src.format != "onnx":
        raise ModelFileError(f"backend 'onnxruntime' needs an .onnx model, got {src_path.name!r}; "
                             "quantize the .onnx export, or use backend='openvino'")  # fmt: skip
    if backend == "onnxruntime" and src.precision == "f16":
        raise ModelFileError(f"{src_path.name} is an fp16 export; ONNX Runtime quantizes float32 graphs: "
                             "quantize the FP32 export (export without --half)")  # fmt: skip
    if max_drop is not None:
        if isinstance(max_drop, bool) or not isinstance(max_drop, (int, float)) or not 0 < float(max_drop) < 1:
            raise ConfigError(f"max_drop is an absolute mAP50-95 drop in (0, 1), e.g. 0.01; got {max_drop!r}")
        if backend != "openvino":
            raise ConfigError("max_drop (accuracy control) is available with backend='openvino' only")
        if val is None:
            raise ConfigError("max_drop needs validation data: pass val= (a data.yaml or bundled dataset name)")
    if val is not None:  # MissingFileError / DatasetError now, not after calibration
        from edge_mlla.data import validate_dataset

        validate_dataset(val, splits=(val_split,))
    if latency_runs < 0:
        raise ConfigError(f"latency_runs must be >= 0, got {latency_runs}")
    info = parse_metadata(src.metadata)
    want = _hw(imgsz)
    if src.static_hw is not None:
        if want is not None and want != src.static_hw:
            raise ShapeError(f"imgsz {want} does not match {src_path.name}'s input size {src.static_hw} "
                             "(re-export the model at that size, or leave imgsz unset)")  # fmt: skip
        hw = src.static_hw
    else:
        hw = want or info.imgsz
        if hw is None:
            raise ConfigError(f"{src_path.name} has a dynamic input size and no imgsz metadata: pass imgsz")
    if any(s % info.stride for s in hw):
        raise ShapeError(f"imgsz {hw} must be a multiple of the model stride {info.stride}")
    out = resolve_output(output, src_path, backend)

    # ---- calibrate + quantize
    cal = load_calibration(calib, hw, subset_size, stride=info.stride, batch=src.batch, every=every)
    if isinstance(calib, CalibrationSet) and (cal.imgsz != hw or cal.batch != src.batch):
        raise ShapeError(f"calibration set is for imgsz {cal.imgsz}, batch {cal.batch}; the model needs {hw}, batch {src.batch}")
    t0 = time.perf_counter()
    with _quiet_nncf():
        if backend == "openvino":
            from edge_mlla.quantize.openvino_int8 import quantize_openvino

            vitems = vfn = None
            if max_drop is not None:
                vitems, vfn = _accuracy_control_data(val, val_split, val_limit, hw, info, src.batch)
            details = quantize_openvino(src, cal, out, policy, preset=preset, fast_bias_correction=fast_bias_correction,
                                        max_drop=max_drop, validation_items=vitems, validation_fn=vfn)  # fmt: skip
        else:
            from edge_mlla.quantize.onnxruntime_int8 import quantize_onnxruntime

            details = quantize_onnxruntime(src, cal, out, policy, method=method, activations=activations)
    details["seconds"] = round(time.perf_counter() - t0, 1)
    LOGGER.info("INT8 model written: %s (%.1f s)", out, details["seconds"])

    # ---- report
    report = QuantizeReport(
        source=str(src_path), output=str(out), backend=backend, float_ops=details.get("float_ops", {}),
        calibration=cal.summary(), details=details, val=None if val is None else str(val), imgsz=hw, threads=threads,
        fp32=ModelStats(size_mb=file_size(src_path) / 1e6, precision="f32"),
        int8=ModelStats(size_mb=file_size(out) / 1e6, precision="int8"),
    )  # fmt: skip
    rt = _runtime_options(backend, threads)
    if val is not None:
        from edge_mlla.eval import evaluate

        for stats, path in ((report.fp32, src_path), (report.int8, out)):
            r = evaluate(path, data=val, split=val_split, backend=backend, precision=_prec(backend), limit=val_limit,
                         **rt)  # fmt: skip
            stats.map50_95, stats.map50 = r["mAP50-95"], r["mAP50"]
    if latency_runs:
        x = next(iter(cal))
        report.fp32.latency_ms = measure_latency(src_path, backend, x, latency_runs, threads)
        report.int8.latency_ms = measure_latency(out, backend, x, latency_runs, threads)
    report.save(report_dir)
    return report


def _prec(backend: str) -> str | None:
    return "f32" if backend == "openvino" else None  # ORT runs the file's own precision


def _runtime_options(backend: str, threads: int | None) -> dict[str, Any]:
    if threads is None:
        return {}
    if backend == "openvino":
        return {"config": {"INFERENCE_NUM_THREADS": int(threads)}}
    return {"threads": int(threads)}


def measure_latency(
    model: str | os.PathLike,
    backend: str,
    x: np.ndarray,
    runs: int = 30,
    threads: int | None = None,
    precision: str | None = None,
    warmup: int = 5,
) -> float:
    """Median milliseconds of ``backend.infer(x)`` (model only: no pre/postprocessing).

    ``precision``: OpenVINO inference precision hint (default ``f32``; ``bf16`` where the CPU has it).

    Example:
        >>> import numpy as np
        >>> measure_latency("best_int8.onnx", "onnxruntime", np.zeros((1, 3, 640, 640), np.float32))  # doctest: +SKIP
        31.2
    """
    from edge_mlla.runtimes import get_backend

    cls = get_backend(backend)
    be = cls(Path(model), precision=precision or _prec(backend), **_runtime_options(backend, threads))
    try:
        for _ in range(warmup):
            be.infer(x)
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            be.infer(x)
            times.append(time.perf_counter() - t)
    finally:
        be.close()
    return statistics.median(times) * 1000.0


def _accuracy_control_data(val: Any, split: str, limit: int | None, hw: tuple[int, int], info: Any, batch: int):
    """Validation items + ``fn(run, items) -> mAP50-95`` for NNCF accuracy control: :func:`edge_mlla.eval.score_model`,
    the same scoring :func:`edge_mlla.eval.evaluate` reports with, so the budget and the report agree."""
    from edge_mlla.eval import load_samples, score_model

    samples, names = load_samples(val, split, limit)
    names = info.names or names

    def fn(run: Any, items: list) -> float:
        return score_model(run, items, hw, info.stride, names, batch=batch)["mAP50-95"]

    return samples, fn


_ORT_CHATTER = ("Increased scale[", "Created a copy of bias input")


class _QuietFilter(logging.Filter):
    """Drops ONNX Runtime's per-channel/per-bias quantizer INFO lines (logged on the root logger)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno <= logging.INFO and str(record.msg).startswith(_ORT_CHATTER))


class _quiet_nncf:
    """NNCF logs every skipped quantizer at INFO and ORT one line per weight channel; keep both quiet unless
    edge_mlla is at DEBUG."""

    def __enter__(self) -> None:
        self._lg = logging.getLogger("nncf")
        self._old = self._lg.level
        self._filter = _QuietFilter()
        if not LOGGER.isEnabledFor(logging.DEBUG):
            self._lg.setLevel(logging.WARNING)
            logging.getLogger().addFilter(self._filter)

    def __exit__(self, *exc: object) -> None:
        self._lg.setLevel(self._old)
        logging.getLogger().removeFilter(self._filter)

