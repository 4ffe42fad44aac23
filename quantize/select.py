"""Steps 2 and 3 of :func:`edge_mlla.quantize.quantize`: quantize the candidates, time them, score them, keep one.

How the choice is made (both modes): every candidate is compiled once and kept for timing and scoring; the
candidates are timed against the float model in interleaved rounds; then, fastest first, each is scored on a
subset of the validation images (a quarter, at least 16, when there are 64 or more) and only one that can still be
within the budget is scored on all of them: the first that is, is the fastest within the budget, so slower ones
cannot win and are not scored. Fast mode quantizes one candidate (MIXED, default scope) and quantizes the accurate
fallback (every MLLA group in float) only when the first is over the budget; thorough mode quantizes all of
:func:`~edge_mlla.quantize.plan._candidates` with full bias correction.

Example:
    >>> best, why = pick([Measured(None, Path("a"), {}, ModelStats(fps=90.0), drop=0.009),
    ...                   Measured(None, Path("b"), {}, ModelStats(fps=80.0), drop=0.004)], allowed=0.005)
    >>> str(best.path), why
    ('b', 'fastest of 1 candidate(s) within the budget (1 over it)')

Imports inside functions: openvino is optional or slow to import; our modules eval, modelfile,
quantize.onnxruntime_int8, quantize.openvino_int8 ... pull in more than importing this module needs, so they load
when the function that uses them runs.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_mlla.errors import QuantizationError
from edge_mlla.quantize._model import atomic_write, file_size
from edge_mlla.quantize._quiet import quiet_nncf
from edge_mlla.quantize.measure import CompiledModels
from edge_mlla.quantize.plan import Candidate, QuantizePlan, sample_batch
from edge_mlla.quantize.report import ModelStats, QuantizeReport

LOGGER = logging.getLogger("edge_mlla")
_SUBSET_MIN_IMAGES = 64  # below this, candidates are scored on every image directly


@dataclass
class Measured:
    """A quantized candidate: where it was written, what the quantizer reported, its measured numbers, and what
    became of it (``status``: chosen, over the budget, not scored because a faster one met the budget, ...)."""

    candidate: Candidate | None
    path: Path
    details: dict[str, Any]
    stats: ModelStats = field(default_factory=ModelStats)
    drop: float | None = None
    subset_drop: float | None = None
    status: str = ""


@contextmanager
def _timed(plan: QuantizePlan, part: str) -> Iterator[None]:
    """Add the seconds of the block to ``plan.timings[part]`` (the report prints what each part took)."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        plan.timings[part] = round(plan.timings.get(part, 0.0) + time.perf_counter() - t0, 1)


class _Scorer:
    """mAP50-95 of model files on the validation samples (all, or the ranking subset), through the compiled
    latency backends; cached per (file, subset)."""

    def __init__(self, plan: QuantizePlan, models: CompiledModels) -> None:
        from edge_mlla.eval import load_samples

        self.plan, self.models = plan, models
        self.samples, names = load_samples(plan.val, plan.val_split, plan.val_limit) if plan.val is not None else ([], {})
        self.names = plan.info.names or names
        n = len(self.samples)
        self.k = max(16, n // 4) if n >= _SUBSET_MIN_IMAGES else n
        self._cache: dict[tuple[str, bool], tuple[float, float]] = {}

    @property
    def has_subset(self) -> bool:
        return self.k < len(self.samples)

    def score(self, path: Path, subset: bool = False) -> tuple[float, float]:
        """(mAP50-95, mAP50) of ``path`` on the subset or on every sample."""
        from edge_mlla.eval import score_model

        key = (str(path), subset and self.has_subset)
        if key not in self._cache:
            be = self.models.latency(path)
            items = self.samples[: self.k] if key[1] else self.samples
            r = score_model(be.infer, items, self.plan.hw, self.plan.info.stride, self.names, batch=self.plan.src.batch,
                            layout=getattr(be, "input_layout", "nchw"))  # fmt: skip
            self._cache[key] = (r["mAP50-95"], r["mAP50"])
        return self._cache[key]


def _native_float(plan: QuantizePlan) -> str:
    if plan.backend != "openvino":
        return plan.src.precision
    import openvino as ov

    from edge_mlla.runtimes.openvino import native_precision

    return native_precision("CPU", list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")))


def run_plan(plan: QuantizePlan) -> tuple[ModelStats, list[Measured]]:
    """Quantize the candidates into a temporary folder beside the output, time and score them (and the float
    model), and mark the one to keep (``status == "chosen"``); see the module docstring."""
    x = sample_batch(plan)
    float_stats = ModelStats(size_mb=file_size(plan.src.path) / 1e6, precision=_native_float(plan))
    tmp = Path(tempfile.mkdtemp(prefix=".edge_mlla_int8_", dir=plan.output.parent))
    results: list[Measured] = []
    models = CompiledModels(plan.backend, plan.options.get("threads"))
    try:
        scorer = _Scorer(plan, models)
        for cand in plan.candidates:
            results.append(_quantize_candidate(plan, cand, tmp, len(results)))
        _time(plan, models, float_stats, results, x)
        _select(plan, scorer, float_stats, results)
        if plan.fallbacks and _over_budget(plan, float_stats, results):
            for cand in plan.fallbacks:  # fast mode: the first was over the budget
                results.append(_quantize_candidate(plan, cand, tmp, len(results)))
            _time(plan, models, float_stats, results, x)
            _select(plan, scorer, float_stats, results)
    except BaseException:
        models.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    models.close()
    return float_stats, results


def _over_budget(plan: QuantizePlan, float_stats: ModelStats, results: list[Measured]) -> bool:
    allowed = plan.budget.allowed(float_stats.map50_95)
    best = next((r for r in results if r.status == "chosen"), None)
    return best is not None and best.drop is not None and allowed is not None and best.drop > allowed


def _quantize_candidate(plan: QuantizePlan, cand: Candidate, tmp: Path, i: int) -> Measured:
    target = tmp / f"c{i}" / plan.output.name
    target.parent.mkdir(parents=True)
    LOGGER.info("INT8 candidate %d: %s", i + 1, cand.label)
    with _timed(plan, f"quantize ({cand.label})"):
        details = _quantize_one(plan, cand, target)
    return Measured(cand, target, details, ModelStats(size_mb=file_size(target) / 1e6, precision="int8"))


def _time(plan: QuantizePlan, models: CompiledModels, float_stats: ModelStats, results: list[Measured], x: Any) -> None:
    """Latency and throughput of the float model and every candidate, in interleaved rounds (one comparison)."""
    runs = plan.options.get("latency_runs", 30)
    if not runs:
        return
    seconds = (1.0 if plan.mode == "fast" else 3.0) if runs >= 10 else 0.5
    if plan.mode == "fast":  # a comparison of two or three models: a third of the thorough mode's timing is enough
        runs = min(runs, 15)
    entries = [(plan.src.path, float_stats)] + [(r.path, r.stats) for r in results]
    with _timed(plan, "timing"):
        timed = models.time([p for p, _ in entries], x, runs=runs, seconds=seconds)
    for (_, stats), (ms, fps) in zip(entries, timed):
        stats.latency_ms, stats.fps = ms, fps


def pick(results: list[Measured], allowed: float | None, timed: bool = True) -> tuple[Measured, str]:
    """The fastest candidate whose drop is within ``allowed`` (None: no limit), else the most accurate one."""
    if len(results) == 1:
        return results[0], "the only candidate"
    within = [r for r in results if r.drop is None or allowed is None or r.drop <= allowed]
    if within:
        best = max(within, key=lambda r: r.stats.fps or 0.0) if timed else within[0]
        n_out = len(results) - len(within)
        why = f"fastest of {len(within)} candidate(s) within the budget" + (f" ({n_out} over it)" if n_out else "")
        if best.drop is None:
            why += "; accuracy not measured (no validation data)"
        return best, why
    best = min(results, key=lambda r: r.drop if r.drop is not None else 1.0)
    return best, "no candidate within the budget: the most accurate one"


def _select(plan: QuantizePlan, scorer: _Scorer, float_stats: ModelStats, results: list[Measured]) -> None:
    """Mark the candidate to keep (``status="chosen"``, the reason in ``plan.reason``) and what became of the rest."""
    for r in results:
        r.status = "" if r.status == "chosen" else r.status
    timed = all(r.stats.fps for r in results)
    if plan.val is None or plan.max_drop is not None and len(results) == 1:
        if plan.val is not None:
            _score_full(plan, scorer, float_stats, results[0])
        best, plan.reason = pick(results, None, timed)
        best.status = "chosen"
        return
    with _timed(plan, "scoring"):
        _score_ranked(plan, scorer, float_stats, results, timed)


def _score_full(plan: QuantizePlan, scorer: _Scorer, float_stats: ModelStats, r: Measured) -> None:
    with _timed(plan, "scoring"):
        float_stats.map50_95, float_stats.map50 = scorer.score(plan.src.path)
        r.stats.map50_95, r.stats.map50 = scorer.score(r.path)
        r.drop = float_stats.map50_95 - r.stats.map50_95


def _score_ranked(plan: QuantizePlan, scorer: _Scorer, float_stats: ModelStats, results: list[Measured],
                  timed: bool) -> None:  # fmt: skip
    float_stats.map50_95, float_stats.map50 = scorer.score(plan.src.path)
    allowed = plan.budget.allowed(float_stats.map50_95)
    order = sorted(results, key=lambda r: -(r.stats.fps or 0.0)) if timed else list(results)
    ranked = len(results) > 1 and scorer.has_subset
    float_sub = scorer.score(plan.src.path, subset=True)[0] if ranked else None
    chosen = None
    for r in order:
        if chosen is not None:
            r.status = r.status or "not scored: a faster candidate is within the budget"
            continue
        if ranked and r.subset_drop is None:
            r.subset_drop = float_sub - scorer.score(r.path, subset=True)[0]  # type: ignore[operator]
            if r.subset_drop > allowed + max(allowed, 0.005):  # cannot be within the budget on every image
                r.status = f"over the budget on the {scorer.k}-image subset"
                continue
        if r.drop is None:
            r.stats.map50_95, r.stats.map50 = scorer.score(r.path)
            r.drop = float_stats.map50_95 - r.stats.map50_95
        if r.drop <= allowed:
            chosen = r
        else:
            r.status = "over the budget"
    n = len(results)
    if chosen is not None:
        chosen.status = "chosen"
        plan.reason = ("the only candidate, within the budget" if n == 1 else
                       f"fastest of {n} candidates within the budget" if timed else "first candidate within the budget")
        return
    pool = [r for r in results if r.drop is not None] or results
    best = min(pool, key=lambda r: r.drop if r.drop is not None else (r.subset_drop or 1.0))
    if best.drop is None:
        best.stats.map50_95, best.stats.map50 = scorer.score(best.path)
        best.drop = float_stats.map50_95 - best.stats.map50_95
    best.status = "chosen"
    plan.reason = "no candidate within the budget: the most accurate one" if n > 1 else "the only candidate (over the budget)"


def _quantize_one(plan: QuantizePlan, cand: Candidate, target: Path) -> dict[str, Any]:
    o = plan.options
    t0 = time.perf_counter()
    with quiet_nncf(progress=o.get("progress", True)):
        if plan.backend == "openvino":
            from edge_mlla.quantize.openvino_int8 import quantize_openvino

            vitems = vfn = None
            if plan.max_drop is not None:
                vitems, vfn = accuracy_control_data(plan.val, plan.val_split, plan.val_limit, plan.hw, plan.info,
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


def recommend(float_stats: ModelStats, int8: ModelStats) -> str:
    """Whether INT8 pays here, by measured throughput."""
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
    """Write the chosen candidate to ``plan.output`` atomically and report what was done and what each part took."""
    tmp = results[0].path.parents[1] if results else None
    try:
        best = next((r for r in results if r.status == "chosen"), None)
        if best is None:  # run_plan always marks one; a caller that built results by hand
            best, plan.reason = pick(results, plan.budget.allowed(float_stats.map50_95))
        with _timed(plan, "write"):
            install(best.path, plan.output)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    why = plan.reason
    LOGGER.info("INT8 model written: %s (%s: %s)", plan.output, best.candidate.label if best.candidate else "-", why)
    details = {**best.details, "selection": why, "mode": plan.mode}
    report = QuantizeReport(
        source=str(plan.src.path), output=str(plan.output), backend=plan.backend, float_ops=details.get("float_ops", {}),
        calibration=plan.calib.summary(), details=details, val=None if plan.val is None else str(plan.val),
        imgsz=plan.hw, threads=plan.options.get("threads"), fp32=float_stats, int8=best.stats,
        candidates=[_row(r, r is best) for r in results], reason=why, recommendation=recommend(float_stats, best.stats),
        mode=plan.mode, budget=plan.budget.describe(float_stats.map50_95) if plan.val is not None else "",
        timings=dict(plan.timings), notes=list(plan.notes),
    )  # fmt: skip
    report.save(report_dir)
    return report


def _row(r: Measured, chosen: bool) -> dict[str, Any]:
    c = r.candidate
    return {"preset": c.preset if c else "-", "scope": list(c.policy.groups) if c else [], "chosen": chosen,
            "map50_95": r.stats.map50_95, "drop": r.drop, "subset_drop": r.subset_drop, "latency_ms": r.stats.latency_ms,
            "fps": r.stats.fps, "seconds": r.details.get("seconds"), "status": r.status}  # fmt: skip


def install(src: Path, target: Path) -> None:
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


def accuracy_control_data(val: Any, split: str, limit: int | None, hw: tuple[int, int], info: Any, batch: int):
    """Validation items + ``fn(run, items) -> mAP50-95`` for NNCF accuracy control: :func:`edge_mlla.eval.score_model`,
    the same scoring :func:`edge_mlla.eval.evaluate` reports with, so the budget and the report agree."""
    from edge_mlla.eval import load_samples, score_model

    samples, names = load_samples(val, split, limit)
    names = info.names or names

    def fn(run: Any, items: list) -> float:
        return score_model(run, items, hw, info.stride, names, batch=batch)["mAP50-95"]

    return samples, fn
