"""Step 1 of :func:`edge_mlla.quantize.quantize`: validate everything and decide what to try, before any slow work.

A :class:`QuantizePlan` holds the inspected source model, the input size, the output path, the calibration set,
the validation data and the list of :class:`Candidate` variants (preset x ignored scope) to quantize and measure.

Imports inside functions: our modules data, ops pull in more than importing this module needs, so they load when the
function that uses them runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import logging

from edge_mlla.errors import ConfigError, ModelFileError, ShapeError
from edge_mlla.modelfile import ModelFile, ModelInfo
from edge_mlla.quantize._model import resolve_output, resolve_source
from edge_mlla.quantize.calibration import CalibrationSet, load_calibration
from edge_mlla.quantize.openvino_int8 import BIAS_CORRECTION
from edge_mlla.quantize.options import (
    BIAS_CORRECTION as MODE_BIAS,
    DEFAULT_BUDGET,
    MODES,
    SUBSET_SIZE,
    Budget,
    CalibrationOptions,
    SelectionOptions,
    TimingOptions,
)
from edge_mlla.quantize.scope import DEFAULT_GROUPS, ScopePolicy, default_groups, read_graph

LOGGER = logging.getLogger("edge_mlla")
BACKENDS = ("openvino", "onnxruntime")
PRESETS = ("auto", "mixed", "performance")
__all__ = ["BACKENDS", "PRESETS", "DEFAULT_BUDGET", "Candidate", "QuantizePlan", "make_plan", "sample_batch"]


@dataclass(frozen=True)
class Candidate:
    """One INT8 variant to try: NNCF preset (``mixed``/``performance``; ``-`` for ONNX Runtime) and scope."""

    preset: str
    policy: ScopePolicy

    @property
    def label(self) -> str:
        return f"{self.preset}, float: {','.join(self.policy.groups) or 'none'}"


@dataclass
class QuantizePlan:
    """Everything :func:`~edge_mlla.quantize.quantize` decided before quantizing. ``candidates`` are quantized and
    compared; ``fallbacks`` only when none of them stays within the budget (fast mode)."""

    src: ModelFile
    backend: str
    hw: tuple[int, int]
    output: Path
    calib: CalibrationSet
    candidates: list[Candidate]
    val: str | os.PathLike | None = None
    val_split: str = "val"
    val_limit: int | None = None
    budget: Budget = field(default_factory=Budget)
    max_drop: float | None = None
    auto: bool = False
    mode: str = "fast"
    fallbacks: list[Candidate] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)  # method, activations, bias_correction, threads, ...
    timings: dict[str, float] = field(default_factory=dict)  # seconds per part of the run, filled as it goes
    reason: str = ""  # why the chosen candidate, filled by the selection

    @property
    def info(self) -> ModelInfo:
        return self.src.info


def _hw(imgsz: Any) -> tuple[int, int] | None:
    from edge_mlla.ops import parse_imgsz

    return None if imgsz is None else parse_imgsz(imgsz)


def _candidates(backend: str, preset: str, policy: ScopePolicy | None, has_val: bool, default: ScopePolicy,
                mode: str = "thorough") -> list[Candidate]:  # fmt: skip
    """What to try. ``auto`` on OpenVINO, thorough: PERFORMANCE (fastest, symmetric activations) and MIXED with
    the default scope (``default``: this graph's, see :func:`~edge_mlla.quantize.scope.default_groups`), and, when
    there is data to score them, MIXED with every MLLA group in float as the accurate fallback and, where the
    default added the box branch (heads without DFL), MIXED without it as the faster option. Fast: MIXED with the
    default scope only (PERFORMANCE measured no faster here: benchmarks/results/bench_quantize.md); the accurate
    one is a fallback (:func:`_fallbacks`)."""
    scope = policy or default
    if backend == "onnxruntime":
        return [Candidate("-", scope)]
    if preset != "auto":
        return [Candidate(preset, scope)]
    if mode == "fast":
        return [Candidate("mixed", scope)]
    if policy is not None:  # the user fixed the scope: choose the preset only
        return [Candidate("performance", scope), Candidate("mixed", scope)]
    out = [Candidate("performance", scope), Candidate("mixed", scope)]
    if has_val:
        if scope.groups != DEFAULT_GROUPS:
            out.append(Candidate("mixed", ScopePolicy(DEFAULT_GROUPS)))
        out.append(_accurate(scope))
    return out


def _accurate(scope: ScopePolicy) -> Candidate:
    return Candidate("mixed", ScopePolicy(tuple(dict.fromkeys(scope.groups + ("rope", "residual")))))


def _fallbacks(backend: str, preset: str, policy: ScopePolicy | None, has_val: bool, default: ScopePolicy,
               mode: str) -> list[Candidate]:  # fmt: skip
    """Fast mode's second try, quantized only when the first is over the budget: every MLLA group in float."""
    if mode != "fast" or backend != "openvino" or preset != "auto" or policy is not None or not has_val:
        return []
    return [_accurate(default)]


def make_plan(model: str | os.PathLike, calib: Any, backend: str, output: str | os.PathLike | None, imgsz: Any,
              mode: str, cal: CalibrationOptions, sel: SelectionOptions, tim: TimingOptions,
              progress: bool = True) -> QuantizePlan:  # fmt: skip
    """Validate the arguments, inspect the model, load calibration data and list the candidates (see ``quantize``)."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {MODES}, got {mode!r}")
    preset = sel.preset
    if preset not in PRESETS:
        raise ConfigError(f"preset must be one of {PRESETS}, got {preset!r}")
    budget = Budget.parse(sel.budget)
    bias = cal.bias_correction or MODE_BIAS[mode]
    if bias not in BIAS_CORRECTION:
        raise ConfigError(f"bias_correction must be one of {BIAS_CORRECTION}, got {bias!r}")
    scope = sel.scope
    policy = None if scope is None or (isinstance(scope, str) and scope == "default") else ScopePolicy.parse(scope)
    src = _source(model, backend)
    val = sel.val
    preset = _check_max_drop(sel.max_drop, backend, val, preset)
    if val is not None:  # MissingFileError / DatasetError now, not after calibration
        from edge_mlla.data import validate_dataset

        validate_dataset(val, splits=(sel.val_split,))
    runs = tim.latency_runs
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 0:
        raise ConfigError(f"latency_runs must be an int >= 0, got {runs!r}")
    hw = _input_size(src, imgsz)
    notes = _size_notes(src, hw)
    out = resolve_output(output, src.path, backend)
    subset = cal.subset_size if cal.subset_size is not None else SUBSET_SIZE[mode]
    cset = load_calibration(calib, hw, subset, stride=src.info.stride, batch=src.batch, every=cal.every,
                            progress=progress)  # fmt: skip
    if isinstance(calib, CalibrationSet) and (cset.imgsz != hw or cset.batch != src.batch):
        raise ShapeError(f"calibration set is for imgsz {cset.imgsz}, batch {cset.batch}; the model needs {hw}, batch {src.batch}")
    default = ScopePolicy(default_groups(read_graph(src.path), backend))
    cands = _candidates(backend, preset, policy, val is not None, default, mode)
    if runs == 0 and len(cands) > 1:  # nothing to compare speed with: the accurate preset
        cands = [Candidate("mixed", policy or default)]
    return QuantizePlan(src=src, backend=backend, hw=tuple(hw), output=out, calib=cset, candidates=cands, val=val,
                        val_split=sel.val_split, val_limit=sel.val_limit, budget=budget, max_drop=sel.max_drop,
                        auto=len(cands) > 1, mode=mode, notes=notes,
                        fallbacks=_fallbacks(backend, preset, policy, val is not None, default, mode),
                        options={"method": cal.method, "activations": cal.activations, "bias_correction": bias,
                                 "threads": tim.threads, "progress": progress, "latency_runs": runs})  # fmt: skip


def _source(model: Any, backend: str) -> ModelFile:
    src = resolve_source(model)
    if src.quantized:
        raise ModelFileError(f"{src.path.name} is already quantized (INT8 ops or precision 'int8' in its metadata); "
                             "quantize the FP32 export instead")  # fmt: skip
    if backend == "onnxruntime" and src.format != "onnx":
        raise ModelFileError(f"backend 'onnxruntime' needs an .onnx model, got {src.path.name!r}; "
                             "quantize the .onnx export, or use backend='openvino'")  # fmt: skip
    if backend == "onnxruntime" and src.precision == "f16":
        raise ModelFileError(f"{src.path.name} is an fp16 export; ONNX Runtime quantizes float32 graphs: "
                             "quantize the FP32 export (export without --half)")  # fmt: skip
    return src


def _check_max_drop(max_drop: Any, backend: str, val: Any, preset: str) -> str:
    if max_drop is None:
        return preset
    if isinstance(max_drop, bool) or not isinstance(max_drop, (int, float)) or not 0 < float(max_drop) < 1:
        raise ConfigError(f"max_drop is an absolute mAP50-95 drop in (0, 1), e.g. 0.01; got {max_drop!r}")
    if backend != "openvino":
        raise ConfigError("max_drop (accuracy control) is available with backend='openvino' only")
    if val is None:
        raise ConfigError("max_drop needs validation data: pass val= (a data.yaml or bundled dataset name)")
    return "mixed" if preset == "auto" else preset  # accuracy control starts from the accurate preset


def _input_size(src: ModelFile, imgsz: Any) -> tuple[int, int]:
    info = src.info
    want = _hw(imgsz)
    if src.static_hw is not None:
        if want is not None and want != src.static_hw:
            raise ShapeError(f"imgsz {want} does not match {src.path.name}'s input size {src.static_hw} "
                             "(re-export the model at that size, or leave imgsz unset)")  # fmt: skip
        hw = src.static_hw
    else:
        hw = want or info.imgsz
        if hw is None:
            raise ConfigError(f"{src.path.name} has a dynamic input size and no imgsz metadata: pass imgsz")
    if any(s % info.stride for s in hw):
        raise ShapeError(f"imgsz {hw} must be a multiple of the model stride {info.stride}")
    return tuple(hw)  # type: ignore[return-value]


def _size_notes(src: ModelFile, hw: tuple[int, int]) -> list[str]:
    """A warning (and a report note) when the model runs at another size than it was trained at: objects then
    appear at another scale, which may cost accuracy, and the INT8 ranges are calibrated at that scale."""
    trained = src.info.edge_mlla.get("train_imgsz")
    if not isinstance(trained, int) or trained <= 0 or tuple(hw) == (trained, trained):
        return []
    msg = (f"{src.path.name} runs at {hw[0]}x{hw[1]} but was trained at {trained}: objects appear "
           f"{max(hw) / trained:.2f}x the size it learnt, which may cost accuracy (and calibration matches that "
           f"scale); re-export at {trained} (edge-mlla export without --imgsz) unless this size is wanted")  # fmt: skip
    LOGGER.warning("quantize: %s", msg)
    return [msg]


def sample_batch(plan: QuantizePlan) -> np.ndarray:
    """One calibration batch (float NCHW): the input the latency measurements run on."""
    return next(iter(plan.calib))
