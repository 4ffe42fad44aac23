"""Step 1 of :func:`edge_mlla.quantize.quantize`: validate everything and decide what to try, before any slow work.

A :class:`QuantizePlan` holds the inspected source model, the input size, the output path, the calibration set,
the validation data and the list of :class:`Candidate` variants (preset x ignored scope) to quantize and measure.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_mlla.errors import ConfigError, ModelFileError, ShapeError
from edge_mlla.modelfile import ModelFile, ModelInfo
from edge_mlla.quantize._model import resolve_output, resolve_source
from edge_mlla.quantize.openvino_int8 import BIAS_CORRECTION
from edge_mlla.quantize.calibration import CalibrationSet, load_calibration
from edge_mlla.quantize.scope import DEFAULT_GROUPS, ScopePolicy, default_groups, read_graph

BACKENDS = ("openvino", "onnxruntime")
PRESETS = ("auto", "mixed", "performance")
DEFAULT_BUDGET = 0.005  # 0.5 points of mAP50-95: the largest drop "auto" accepts


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
    """Everything :func:`~edge_mlla.quantize.quantize` decided before quantizing."""

    src: ModelFile
    backend: str
    hw: tuple[int, int]
    output: Path
    calib: CalibrationSet
    candidates: list[Candidate]
    val: str | os.PathLike | None = None
    val_split: str = "val"
    val_limit: int | None = None
    budget: float = DEFAULT_BUDGET
    max_drop: float | None = None
    auto: bool = False
    options: dict[str, Any] = field(default_factory=dict)  # method, activations, bias_correction, threads, ...

    @property
    def info(self) -> ModelInfo:
        return self.src.info


def _hw(imgsz: Any) -> tuple[int, int] | None:
    from edge_mlla.ops import parse_imgsz

    return None if imgsz is None else parse_imgsz(imgsz)


def _candidates(backend: str, preset: str, policy: ScopePolicy | None, has_val: bool,
                default: ScopePolicy) -> list[Candidate]:  # fmt: skip
    """What to try. ``auto`` on OpenVINO: PERFORMANCE (fastest, symmetric activations) and MIXED with the default
    scope (``default``: this graph's, see :func:`~edge_mlla.quantize.scope.default_groups`), and, when there is
    data to score them, MIXED with every MLLA group in float as the accurate fallback and, where the default
    added the box branch (heads without DFL), MIXED without it as the faster option."""
    scope = policy or default
    if backend == "onnxruntime":
        return [Candidate("-", scope)]
    if preset != "auto":
        return [Candidate(preset, scope)]
    if policy is not None:  # the user fixed the scope: choose the preset only
        return [Candidate("performance", scope), Candidate("mixed", scope)]
    out = [Candidate("performance", scope), Candidate("mixed", scope)]
    if has_val:
        if scope.groups != DEFAULT_GROUPS:
            out.append(Candidate("mixed", ScopePolicy(DEFAULT_GROUPS)))
        out.append(Candidate("mixed", ScopePolicy(tuple(dict.fromkeys(scope.groups + ("rope", "residual"))))))
    return out


def make_plan(
    model: str | os.PathLike,
    calib: Any,
    backend: str,
    subset_size: int,
    preset: str,
    max_drop: float | None,
    val: str | os.PathLike | None,
    output: str | os.PathLike | None,
    imgsz: Any,
    scope: str | Sequence[str] | ScopePolicy | None,
    budget: float,
    every: int | None,
    val_split: str,
    val_limit: int | None,
    latency_runs: int,
    options: dict[str, Any],
) -> QuantizePlan:
    """Validate the arguments, inspect the model, load calibration data and list the candidates (see ``quantize``)."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if preset not in PRESETS:
        raise ConfigError(f"preset must be one of {PRESETS}, got {preset!r}")
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0 <= float(budget) < 1:
        raise ConfigError(f"budget is an absolute mAP50-95 drop in [0, 1), e.g. 0.005 (0.5 points); got {budget!r}")
    bias = options.get("bias_correction", "full")
    if bias not in BIAS_CORRECTION:
        raise ConfigError(f"bias_correction must be one of {BIAS_CORRECTION}, got {bias!r}")
    policy = None if scope is None or (isinstance(scope, str) and scope == "default") else ScopePolicy.parse(scope)
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
    if max_drop is not None:
        if isinstance(max_drop, bool) or not isinstance(max_drop, (int, float)) or not 0 < float(max_drop) < 1:
            raise ConfigError(f"max_drop is an absolute mAP50-95 drop in (0, 1), e.g. 0.01; got {max_drop!r}")
        if backend != "openvino":
            raise ConfigError("max_drop (accuracy control) is available with backend='openvino' only")
        if val is None:
            raise ConfigError("max_drop needs validation data: pass val= (a data.yaml or bundled dataset name)")
        if preset == "auto":
            preset = "mixed"  # accuracy control starts from the accurate preset and returns layers to float
    if val is not None:  # MissingFileError / DatasetError now, not after calibration
        from edge_mlla.data import validate_dataset

        validate_dataset(val, splits=(val_split,))
    if isinstance(latency_runs, bool) or not isinstance(latency_runs, int) or latency_runs < 0:
        raise ConfigError(f"latency_runs must be an int >= 0, got {latency_runs!r}")
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
    out = resolve_output(output, src.path, backend)
    cal = load_calibration(calib, hw, subset_size, stride=info.stride, batch=src.batch, every=every,
                           progress=options.get("progress", True))  # fmt: skip
    if isinstance(calib, CalibrationSet) and (cal.imgsz != hw or cal.batch != src.batch):
        raise ShapeError(f"calibration set is for imgsz {cal.imgsz}, batch {cal.batch}; the model needs {hw}, batch {src.batch}")
    default = ScopePolicy(default_groups(read_graph(src.path), backend))
    cands = _candidates(backend, preset, policy, val is not None, default)
    if latency_runs == 0 and len(cands) > 1:  # nothing to compare speed with: the accurate preset
        cands = [Candidate("mixed", policy or default)]
    return QuantizePlan(src=src, backend=backend, hw=tuple(hw), output=out, calib=cal, candidates=cands, val=val,
                        val_split=val_split, val_limit=val_limit, budget=float(budget), max_drop=max_drop,
                        auto=len(cands) > 1, options={**options, "latency_runs": latency_runs})  # fmt: skip


def sample_batch(plan: QuantizePlan) -> np.ndarray:
    """One calibration batch (float NCHW): the input the latency measurements run on."""
    return next(iter(plan.calib))
