"""INT8 post-training quantization of exported YOLO11(-MLLA) detectors that pays on the CPU at hand, with a report.

``quantize(model, calib=...)`` takes an exported ``.onnx`` or OpenVINO ``.xml`` (FP32), calibration data
(:mod:`.calibration`), and writes an INT8 model:

* ``backend="openvino"``: NNCF ``quantize`` -> IR with FakeQuantize; with ``max_drop`` (and ``val``) NNCF's
  accuracy control, driven by our mAP50-95 (:func:`edge_mlla.eval.score_model`);
* ``backend="onnxruntime"``: ``quant_pre_process`` + ``quantize_static`` -> QDQ ONNX (per-channel weights,
  ``method`` minmax/entropy/percentile, ``reduce_range`` only on CPUs without VNNI).

``preset="auto"`` (the default) decides by measurement on this machine, in one run: it quantizes the candidates
(OpenVINO: PERFORMANCE and MIXED with the default scope, plus MIXED with every MLLA group in float when there is
validation data), measures each one's throughput next to the float model's in the device's native precision
(bf16 on AMX CPUs, f32 on AVX2-only ones) and its mAP50-95 drop on the validation split, and keeps the fastest
variant within ``budget`` (default 0.5 points). The report says which, why, and -- where INT8 is not faster than
the float model on this CPU -- says so plainly and recommends the float model.

The work is three steps: :func:`~edge_mlla.quantize.plan.make_plan` (validate everything, list candidates),
:func:`run_plan` (quantize and measure each), :func:`choose` (pick, write the output atomically, report).
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
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_mlla.errors import ConfigError, QuantizationError
from edge_mlla.quantize._model import atomic_write, file_size
from edge_mlla.quantize.calibration import CalibrationSet, load_calibration
from edge_mlla.quantize.measure import measure_interleaved, measure_latency, measure_throughput, runtime_options
from edge_mlla.quantize.plan import BACKENDS, DEFAULT_BUDGET, Candidate, QuantizePlan, make_plan, sample_batch
from edge_mlla.quantize.report import ModelStats, QuantizeReport
from edge_mlla.quantize.scope import DEFAULT_GROUPS, GROUPS, ScopePolicy

LOGGER = logging.getLogger("edge_mlla")

__all__ = ["quantize", "QuantizeReport", "ModelStats", "ScopePolicy", "load_calibration", "CalibrationSet",
           "BACKENDS", "GROUPS", "DEFAULT_GROUPS", "DEFAULT_BUDGET", "measure_latency", "measure_throughput", "measure_interleaved",
           "make_plan", "run_plan", "choose"]  # fmt: skip


def quantize(
    model: str | os.PathLike,
    calib: str | os.PathLike | np.ndarray | Sequence[np.ndarray] | CalibrationSet = "bccd",
    backend: str = "openvino",
    subset_size: int = 300,
    preset: str = "auto",
    max_drop: float | None = None,
    val: str | os.PathLike | None = "auto",
    output: str | os.PathLike | None = None,
    imgsz: int | tuple[int, int] | None = None,
    *,
    scope: str | Sequence[str] | ScopePolicy | None = None,
    budget: float = DEFAULT_BUDGET,
    method: str = "minmax",
    activations: str = "auto",
    bias_correction: str = "full",
    every: int | None = None,
    val_split: str = "val",
    val_limit: int | None = None,
    latency_runs: int = 30,
    threads: int | None = None,
    report_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> QuantizeReport:
    """Quantize an exported FP32 model to INT8, choosing the variant that pays here, and report what it cost.

    Args:
        model: exported ``.onnx`` or OpenVINO ``.xml`` (or its folder), FP32 or FP16, not already INT8.
        calib: calibration source: image folder, video file, data.yaml / bundled name (train split), or
            BGR uint8 arrays (see :func:`~edge_mlla.quantize.calibration.load_calibration`).
        backend: ``"openvino"`` (NNCF, -> ``.xml``) or ``"onnxruntime"`` (QDQ, -> ``.onnx``; needs an ``.onnx``).
        subset_size: at most this many calibration images (fewer available: a CalibrationWarning, all used).
        preset: ``"auto"`` (default: measure the candidates here and keep the fastest within ``budget``),
            ``"mixed"`` or ``"performance"`` (NNCF presets; OpenVINO only).
        max_drop: NNCF accuracy control: largest allowed absolute mAP50-95 drop (0.01 = 1 point); needs ``val``.
        val: data.yaml / bundled name to measure FP32 and INT8 mAP on (its ``val_split``); None: no accuracy.
            ``"auto"`` (default): ``calib``'s own dataset when it is a data.yaml or bundled name, else None.
        output: output model file (``.xml``/``.onnx``) or folder; default beside the source
            (``best_int8.onnx``, ``best_int8_openvino_model/best_int8.xml``).
        imgsz: input size; must equal the model's static input size (required for dynamic-size models
            without imgsz metadata).
        scope: ignored-scope groups kept in float (``"all"``, ``"none"``, or a list from :data:`GROUPS`; see
            :mod:`edge_mlla.quantize.scope`); default ``"head,kv_matmul,z"``, plus ``box`` for a head without DFL
            (YOLO26) on OpenVINO; given, ``auto`` varies the preset only.
        budget: largest mAP50-95 drop ``auto`` accepts (absolute; default 0.005 = 0.5 points).
        method: ONNX Runtime calibration method: ``minmax``, ``entropy`` or ``percentile``.
        activations: ONNX Runtime activation type: ``uint8`` (U8S8), ``int8`` (S8S8) or ``auto`` (uint8 on x86).
        bias_correction: NNCF bias correction: ``"full"`` (default: most accurate, slowest), ``"fast"``, or
            ``"none"`` (quickest; for a handful of calibration images, where correction has little to go on).
        every: video sources: take every ``every``-th frame.
        val_split, val_limit: split and number of images for the accuracy measurements.
        latency_runs: timed runs per model (0: no timing, and ``auto`` falls back to ``mixed``); batch 1, median.
        threads: inference threads for timing and validation (runtime default if None).
        report_dir: where ``<output stem>_report.json`` / ``.png`` go (default: beside the output).
        progress: progress bars (checking calibration images; NNCF's statistics collection and bias
            correction); ``False`` hides them.

    Returns:
        :class:`QuantizeReport` (``.table()``, ``.map_drop``, ``.candidates``, ``.recommendation``, ``.json_path``).

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
    if not isinstance(progress, bool):
        raise ConfigError(f"progress must be True or False, got {progress!r}")
    if isinstance(val, str) and val == "auto":
        val = calib if _is_dataset(calib) else None
    plan = make_plan(model, calib, backend, subset_size, preset, max_drop, val, output, imgsz, scope, budget, every,
                     val_split, val_limit, latency_runs,
                     {"method": method, "activations": activations, "bias_correction": bias_correction,
                      "threads": threads, "progress": progress})  # fmt: skip
    float_stats, results = run_plan(plan)
    return choose(plan, float_stats, results, report_dir)


def _is_dataset(calib: Any) -> bool:
    from edge_mlla.data import BUNDLED

    if not isinstance(calib, (str, os.PathLike)):
        return False
    return str(calib) in BUNDLED or Path(calib).suffix.lower() in (".yaml", ".yml")


@dataclass
class Measured:
    """A quantized candidate: where it was written, what the quantizer reported, and its measured numbers."""

    candidate: Candidate
    path: Path
    details: dict[str, Any]
    stats: ModelStats = field(default_factory=ModelStats)
    drop: float | None = None


def _score(plan: QuantizePlan, path: Path, stats: ModelStats) -> None:
    if plan.val is not None:
        from edge_mlla.eval import evaluate

        r = evaluate(path, data=plan.val, split=plan.val_split, backend=plan.backend, limit=plan.val_limit,
                     progress=False, **runtime_options(plan.backend, plan.options.get("threads")))  # fmt: skip
        stats.map50_95, stats.map50 = r["mAP50-95"], r["mAP50"]


def _time(plan: QuantizePlan, entries: list[tuple[Path, ModelStats]], x: np.ndarray) -> None:
    """Latency and throughput of the float model and every candidate, in interleaved rounds (one comparison)."""
    runs = plan.options.get("latency_runs", 30)
    if not runs:
        return
    timed = measure_interleaved([p for p, _ in entries], plan.backend, x, runs=runs,
                                seconds=3.0 if runs >= 10 else 0.5, threads=plan.options.get("threads"))  # fmt: skip
    for (_, stats), (ms, fps) in zip(entries, timed):
        stats.latency_ms, stats.fps = ms, fps


def _native_float(plan: QuantizePlan) -> str:
    if plan.backend != "openvino":
        return plan.src.precision
    from edge_mlla.runtimes.capabilities import default_precision

    return default_precision("CPU")


def run_plan(plan: QuantizePlan) -> tuple[ModelStats, list[Measured]]:
    """Quantize every candidate into a temporary folder beside the output and measure it (and the float model)."""
    x = sample_batch(plan)
    native = _native_float(plan)
    float_stats = ModelStats(size_mb=file_size(plan.src.path) / 1e6, precision=native)
    _score(plan, plan.src.path, float_stats)
    tmp = Path(tempfile.mkdtemp(prefix=".edge_mlla_int8_", dir=plan.output.parent))
    results: list[Measured] = []
    try:
        for i, cand in enumerate(plan.candidates):
            target = tmp / f"c{i}" / plan.output.name
            target.parent.mkdir(parents=True)
            LOGGER.info("INT8 candidate %d/%d: %s", i + 1, len(plan.candidates), cand.label)
            details = _quantize_one(plan, cand, target)
            m = Measured(cand, target, details, ModelStats(size_mb=file_size(target) / 1e6, precision="int8"))
            _score(plan, target, m.stats)
            if m.stats.map50_95 is not None and float_stats.map50_95 is not None:
                m.drop = float_stats.map50_95 - m.stats.map50_95
            results.append(m)
        _time(plan, [(plan.src.path, float_stats)] + [(m.path, m.stats) for m in results], x)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return float_stats, results


def _quantize_one(plan: QuantizePlan, cand: Candidate, target: Path) -> dict[str, Any]:
    o = plan.options
    t0 = time.perf_counter()
    with _quiet_nncf(progress=o.get("progress", True)):
        if plan.backend == "openvino":
            from edge_mlla.quantize.openvino_int8 import quantize_openvino

            vitems = vfn = None
            if plan.max_drop is not None:
                vitems, vfn = _accuracy_control_data(plan.val, plan.val_split, plan.val_limit, plan.hw, plan.info,
                                                     plan.src.batch)  # fmt: skip
            details = quantize_openvino(plan.src, plan.calib, target, cand.policy, preset=cand.preset,
                                        bias_correction=o["bias_correction"], max_drop=plan.max_drop,
                                        validation_items=vitems, validation_fn=vfn)  # fmt: skip
        else:
            from edge_mlla.quantize.onnxruntime_int8 import quantize_onnxruntime

            details = quantize_onnxruntime(plan.src, plan.calib, target, cand.policy, method=o["method"],
                                           activations=o["activations"])  # fmt: skip
    details["seconds"] = round(time.perf_counter() - t0, 1)
    return details


def _pick(plan: QuantizePlan, float_stats: ModelStats, results: list[Measured]) -> tuple[Measured, str]:
    if len(results) == 1:
        return results[0], "the only candidate" + (f" (preset {results[0].candidate.preset} asked)" if plan.backend == "openvino" else "")
    timed = all(r.stats.fps for r in results)
    within = [r for r in results if r.drop is None or r.drop <= plan.budget]
    if within:
        best = max(within, key=lambda r: r.stats.fps or 0.0) if timed else within[0]
        n_out = len(results) - len(within)
        why = (f"fastest of {len(within)} candidate(s) within the {plan.budget * 100:.2f}-point budget"
               + (f" ({n_out} over it)" if n_out else ""))  # fmt: skip
        if best.drop is None:
            why += "; accuracy not measured (no validation data)"
        return best, why
    best = min(results, key=lambda r: r.drop if r.drop is not None else 1.0)
    return best, f"no candidate within the {plan.budget * 100:.2f}-point budget: the most accurate one"


def _recommend(float_stats: ModelStats, int8: ModelStats) -> str:
    f, q = float_stats.fps, int8.fps
    if not f or not q:
        return "throughput not measured (latency_runs=0)"
    ratio = q / f
    if ratio < 1.05:
        return (f"INT8 is not faster than {float_stats.precision} on this CPU ({ratio:.2f}x throughput): "
                f"use the {float_stats.precision} model")  # fmt: skip
    return f"INT8 runs {ratio:.2f}x the throughput of {float_stats.precision} on this CPU"


def choose(plan: QuantizePlan, float_stats: ModelStats, results: list[Measured],
           report_dir: str | os.PathLike | None = None) -> QuantizeReport:  # fmt: skip
    """Keep the best candidate (see ``quantize``), write it to ``plan.output`` atomically and report."""
    tmp = results[0].path.parents[1] if results else None
    try:
        best, why = _pick(plan, float_stats, results)
        _install(best.path, plan.output)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    LOGGER.info("INT8 model written: %s (%s: %s)", plan.output, best.candidate.label, why)
    details = {**best.details, "selection": why}
    report = QuantizeReport(
        source=str(plan.src.path), output=str(plan.output), backend=plan.backend, float_ops=details.get("float_ops", {}),
        calibration=plan.calib.summary(), details=details, val=None if plan.val is None else str(plan.val),
        imgsz=plan.hw, threads=plan.options.get("threads"), fp32=float_stats, int8=best.stats,
        candidates=[{"preset": r.candidate.preset, "scope": list(r.candidate.policy.groups), "chosen": r is best,
                     "map50_95": r.stats.map50_95, "drop": r.drop, "latency_ms": r.stats.latency_ms,
                     "fps": r.stats.fps, "seconds": r.details.get("seconds")} for r in results],
        reason=why, recommendation=_recommend(float_stats, best.stats),
    )  # fmt: skip
    report.save(report_dir)
    return report


def _install(src: Path, target: Path) -> None:
    """Copy a finished candidate (with its ``.bin`` and ``metadata.yaml``) to ``target``, atomically."""
    from edge_mlla.modelfile import sibling_models

    others = sibling_models(target) if target.suffix == ".xml" else []

    def write(tmp: Path) -> None:
        shutil.copyfile(src, tmp)
        if src.with_suffix(".bin").is_file():
            shutil.copyfile(src.with_suffix(".bin"), tmp.with_suffix(".bin"))
        if not others and (src.parent / "metadata.yaml").is_file():  # never overwrite another model's metadata.yaml
            shutil.copyfile(src.parent / "metadata.yaml", tmp.parent / "metadata.yaml")

    try:
        atomic_write(target, write, companions=(".bin",), extras=("metadata.yaml",))
    except OSError as e:
        raise QuantizationError(f"could not write {target}: {e}") from e


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
    edge_mlla is at DEBUG. ``progress=False`` also hides NNCF's rich progress bars: NNCF has no switch for them,
    so every ``track`` built inside the block is built with ``disable=True`` (restored on exit). That patch is
    process-wide: two quantizations in parallel threads would share it (quantize() is not meant to run so)."""

    def __init__(self, progress: bool = True) -> None:
        self._progress = progress
        self._track = self._init = None

    def __enter__(self) -> None:
        try:  # importing NNCF sets its logger to INFO: import first, then quiet it
            import nncf  # noqa: F401
        except ImportError:  # ONNX Runtime quantization without NNCF installed
            pass
        self._lg = logging.getLogger("nncf")
        self._old = self._lg.level
        self._filter = _QuietFilter()
        if not LOGGER.isEnabledFor(logging.DEBUG):
            self._lg.setLevel(logging.WARNING)
            logging.getLogger().addFilter(self._filter)
        if not self._progress:
            try:
                from nncf.common.logging.track_progress import track
            except ImportError:  # ONNX Runtime quantization without NNCF installed
                pass
            else:
                init = self._init = track.__init__

                def quiet_init(obj: Any, *args: Any, **kwargs: Any) -> None:
                    kwargs["disable"] = True
                    init(obj, *args, **kwargs)

                self._track, track.__init__ = track, quiet_init

    def __exit__(self, *exc: object) -> None:
        self._lg.setLevel(self._old)
        logging.getLogger().removeFilter(self._filter)
        if self._track is not None:
            self._track.__init__ = self._init

