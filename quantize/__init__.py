"""INT8 post-training quantization of exported YOLO11(-MLLA) detectors that pays on the CPU at hand, with a report.

``quantize(model, calib=...)`` takes an exported ``.onnx`` or OpenVINO ``.xml`` (FP32), calibration data
(:mod:`.calibration`), and writes an INT8 model:

* ``backend="openvino"``: NNCF ``quantize`` -> IR with FakeQuantize; with ``max_drop`` (and ``val``) NNCF's
  accuracy control, driven by our mAP50-95 (:func:`edge_mlla.eval.score_model`);
* ``backend="onnxruntime"``: ``quant_pre_process`` + ``quantize_static`` -> QDQ ONNX (per-channel weights,
  ``method`` minmax/entropy/percentile, ``reduce_range`` only on CPUs without VNNI).

``preset="auto"`` (the default) decides by measurement on this machine, in one run: it quantizes the candidates,
measures each one's throughput next to the float model's in the device's native precision (bf16 on CPUs with
BF16, f32 on AVX2-only ones) and its mAP50-95 drop on the validation split, and keeps the fastest variant within
``budget`` (default 0.5 points absolute; ``"1%"`` for a budget relative to the float model's score). Two modes:

* ``mode="fast"`` (default): 64 calibration images, NNCF fast bias correction, one candidate (MIXED, default
  scope); the accurate fallback (every MLLA group in float) only when the first is over the budget. About a
  minute or less for a nano model on 2 cores.
* ``mode="thorough"``: 300 images, full bias correction, every candidate (PERFORMANCE, MIXED, the accurate one),
  ranked by speed, scored on a subset of the validation images, the winner on all of them.

The report says which candidate, why, which budget applied, what each part of the run took, and -- where INT8 is
not faster than the float model on this CPU -- says so plainly and recommends the float model.

The work is three steps: :func:`~edge_mlla.quantize.plan.make_plan` (validate everything, list candidates),
:func:`run_plan` (quantize, time and score, :mod:`.select`), :func:`choose` (write the output atomically, report).
Options are grouped (:mod:`.options`): :class:`CalibrationOptions`, :class:`SelectionOptions`,
:class:`TimingOptions`; each field can also be passed by name.
Both backends keep the same graph-derived nodes in float (:mod:`.scope`), keep the source metadata
(``precision: int8`` + quantization details in the ``edge_mlla`` entry), and write to a temporary name first,
so a failure never leaves a broken model file.

Runnable as ``python -m edge_mlla.quantize MODEL --calib SRC`` (same options as ``edge-mlla quantize``).

Example:
    >>> from edge_mlla.quantize import quantize
    >>> report = quantize("best.xml", calib="bccd", backend="openvino")  # doctest: +SKIP
    >>> print(report.table())  # doctest: +SKIP
    | model | precision | mAP50-95 | mAP50 | latency ms | FPS | size MB |
    ...
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_mlla.errors import ConfigError
from edge_mlla.quantize._quiet import quiet_nncf as _quiet_nncf  # noqa: F401  (kept importable for callers and tests)
from edge_mlla.quantize.calibration import CalibrationSet, load_calibration
from edge_mlla.quantize.measure import measure_interleaved, measure_latency, measure_throughput
from edge_mlla.quantize.options import (
    DEFAULT_BUDGET,
    MODES,
    Budget,
    CalibrationOptions,
    SelectionOptions,
    TimingOptions,
    build_options,
)
from edge_mlla.quantize.plan import BACKENDS, Candidate, QuantizePlan, make_plan
from edge_mlla.quantize.report import ModelStats, QuantizeReport
from edge_mlla.quantize.scope import DEFAULT_GROUPS, GROUPS, ScopePolicy
from edge_mlla.quantize.select import Measured, accuracy_control_data, choose, pick, recommend, run_plan

LOGGER = logging.getLogger("edge_mlla")

__all__ = ["quantize", "QuantizeReport", "ModelStats", "ScopePolicy", "load_calibration", "CalibrationSet",
           "BACKENDS", "GROUPS", "DEFAULT_GROUPS", "DEFAULT_BUDGET", "MODES", "Budget", "CalibrationOptions",
           "SelectionOptions", "TimingOptions", "measure_latency", "measure_throughput", "measure_interleaved",
           "make_plan", "run_plan", "choose", "pick", "recommend", "Measured", "Candidate", "QuantizePlan"]  # fmt: skip

_accuracy_control_data = accuracy_control_data  # the name tests and older callers use


def quantize(
    model: str | os.PathLike,
    calib: str | os.PathLike | np.ndarray | Sequence[np.ndarray] | CalibrationSet = "bccd",
    backend: str = "openvino",
    output: str | os.PathLike | None = None,
    imgsz: int | tuple[int, int] | None = None,
    *,
    mode: str = "fast",
    calibration: CalibrationOptions | None = None,
    selection: SelectionOptions | None = None,
    timing: TimingOptions | None = None,
    report_dir: str | os.PathLike | None = None,
    progress: bool = True,
    **options: Any,
) -> QuantizeReport:
    """Quantize an exported FP32 model to INT8, choosing the variant that pays here, and report what it cost.

    Args:
        model: exported ``.onnx`` or OpenVINO ``.xml`` (or its folder), FP32 or FP16, not already INT8.
        calib: calibration source: image folder, video file, data.yaml / bundled name (train split), or
            BGR uint8 arrays (see :func:`~edge_mlla.quantize.calibration.load_calibration`).
        backend: ``"openvino"`` (NNCF, -> ``.xml``) or ``"onnxruntime"`` (QDQ, -> ``.onnx``; needs an ``.onnx``).
        output: output model file (``.xml``/``.onnx``) or folder; default beside the source
            (``best_int8.onnx``, ``best_int8_openvino_model/best_int8.xml``).
        imgsz: input size; must equal the model's static input size (required for dynamic-size models
            without imgsz metadata).
        mode: ``"fast"`` (default) or ``"thorough"`` (see the module docstring).
        calibration: :class:`~edge_mlla.quantize.options.CalibrationOptions` (``subset_size``, ``every``,
            ``bias_correction``, ``method``, ``activations``).
        selection: :class:`~edge_mlla.quantize.options.SelectionOptions` (``preset``, ``scope``, ``budget``,
            ``max_drop``, ``val``, ``val_split``, ``val_limit``). ``val="auto"`` (default): ``calib``'s own dataset
            when it is a data.yaml or bundled name, else None (no accuracy). ``budget``: 0.005 (absolute points)
            or ``"1%"`` (relative to the float model's mAP50-95).
        timing: :class:`~edge_mlla.quantize.options.TimingOptions` (``latency_runs``: 0 for no timing,
            ``threads``).
        report_dir: where ``<output stem>_report.json`` / ``.png`` go (default: beside the output).
        progress: progress bars (checking calibration images; NNCF's statistics collection and bias
            correction); ``False`` hides them.
        **options: any field of the three option groups by name (``subset_size=100``, ``budget="1%"``, ...).

    Returns:
        :class:`QuantizeReport` (``.table()``, ``.map_drop``, ``.candidates``, ``.recommendation``, ``.timings``,
        ``.budget``, ``.json_path``).

    Raises:
        MissingFileError, ModelFileError (not an exported detector, already INT8, wrong format for the
        backend), ShapeError (imgsz differs from the model's input), ConfigError (bad or unknown option,
        ``max_drop`` without ``val``), DatasetError (calibration source empty / without images / unreadable),
        OutputNotWritableError, QuantizationError (the quantizer failed; no file is left at ``output``).

    Example:
        >>> r = quantize("best.onnx", calib="images/", backend="onnxruntime", method="entropy")  # doctest: +SKIP
        >>> r.output  # doctest: +SKIP
        'best_int8.onnx'
        >>> quantize("best.xml", calib="bccd", budget="1%", mode="thorough").budget  # doctest: +SKIP
        "1% of the float model's mAP50-95 (0.5517) = 0.55 points (relative budget)"
    """
    if not isinstance(progress, bool):
        raise ConfigError(f"progress must be True or False, got {progress!r}")
    t0 = time.perf_counter()
    cal, sel, tim = build_options(calibration, selection, timing, options)
    if isinstance(sel.val, str) and sel.val == "auto":
        sel = replace(sel, val=calib if _is_dataset(calib) else None)
    plan = make_plan(model, calib, backend, output, imgsz, mode, cal, sel, tim, progress)
    plan.timings["check and load calibration images"] = round(time.perf_counter() - t0, 1)
    float_stats, results = run_plan(plan)
    return choose(plan, float_stats, results, report_dir)


def _is_dataset(calib: Any) -> bool:
    from edge_mlla.data import BUNDLED

    if not isinstance(calib, (str, os.PathLike)):
        return False
    return str(calib) in BUNDLED or Path(calib).suffix.lower() in (".yaml", ".yml")
