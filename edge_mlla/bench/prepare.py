"""Model preparation for the bench: what MODEL is, the files every cell needs (exports at each size, INT8 models,
the stock baseline built offline), GFLOP counts. A failed export or quantization becomes its cells' skip reason;
bad user input (MODEL, the baseline name) raises.

Order: load MODEL, build the baseline (a bad baseline name fails here, before the slow steps), export MODEL,
quantize it, export the baseline.

Example:
    >>> from edge_mlla.bench.prepare import count_gflops
    >>> count_gflops("edge_mlla/weights/yolo11n-mlla-bccd.pt", [(640, 640)])  # doctest: +SKIP
    {'640': 6.401}

Imports inside functions: torch, Ultralytics, NNCF and our export and quantize sides load only in the step that
needs them (start-up time; ``edge_mlla.quantize`` at import would be a cycle).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_mlla.bench.options import bar, quiet
from edge_mlla.bench.options import label as _label
from edge_mlla.errors import ConfigError, EdgeMLLAError, InputTypeError, MissingDependencyError, MissingFileError

LOGGER = logging.getLogger("edge_mlla")
_FLOAT_KIND = {"openvino": "xml", "onnxruntime": "onnx", "cuda": "onnx", "torch": "pt"}
FileKey = tuple[str, str, str]  # (model: ours/stock, kind: pt/onnx/xml/int8-<backend>, size label or "*")


@dataclass
class Source:
    """What MODEL is: its kind (pt/onnx/openvino), class names, stride, and the fixed size of an exported file."""

    path: Path
    kind: str
    names: dict[int, str]
    stride: int
    static_hw: tuple[int, int] | None
    dynamic: bool
    int8: bool


def inspect_source(model: Any) -> Source:
    """MODEL as a :class:`Source`; a missing or unreadable file raises now."""
    if not isinstance(model, (str, os.PathLike)):
        raise InputTypeError(f"model must be a path to a .pt, .onnx or .xml file, got {type(model).__name__}")
    p = Path(model)
    if not p.exists():
        raise MissingFileError(f"model not found: {p} (expected a .pt checkpoint or an exported .onnx / .xml)")
    if p.is_file() and p.suffix.lower() == ".pt":
        return Source(p, "pt", {}, 32, None, False, False)  # names/stride read when the checkpoint is loaded
    from edge_mlla.modelfile import inspect_model

    mf = inspect_model(p)  # MissingFileError / ModelFileError
    info = mf.info
    hw = mf.static_hw
    return Source(mf.path, mf.format, dict(info.names), int(info.stride or 32), hw, hw is None, mf.quantized)


class Files:
    """Model files by (model, kind, size label); a failed preparation step leaves its reason instead."""

    def __init__(self) -> None:
        self.path: dict[FileKey, Path] = {}
        self.error: dict[FileKey, str] = {}

    def get(self, key: FileKey) -> tuple[Path | None, str]:
        if key in self.path:
            return self.path[key], ""
        return None, self.error.get(key, "no model file was prepared for this cell")

    def make(self, keys: list[FileKey], fn: Callable[[], Path | None]) -> None:
        """Run one preparation step that yields the file for ``keys``; a library error becomes their reason."""
        try:
            p = fn()
        except EdgeMLLAError as e:
            LOGGER.warning("bench: %s: %s", "/".join(keys[0]), e)
            for k in keys:
                self.error[k] = f"{type(e).__name__}: {e}"
            return
        if p is not None:
            for k in keys:
                self.path[k] = p


def load_pt(path: Path) -> Any:
    """A checkpoint loaded through the model side (our modules registered)."""
    from edge_mlla.nn.load import load_detector

    return load_detector(path)


def count_gflops(model: Any, sizes: Sequence[tuple[int, int]]) -> dict[str, float]:
    """GFLOPs of one batch-1 forward at each size, counted by ``torch.utils.flop_counter.FlopCounterMode``
    (2 x multiply-accumulates of convolutions and matmuls, attention matmuls included) on a ``.pt`` path or a
    loaded ``DetectionModel``. Keys are size labels (``"640"``, ``"384x640"``).

    Example:
        >>> count_gflops("edge_mlla/weights/yolo11n-mlla-bccd.pt", [(640, 640)])  # doctest: +SKIP
        {'640': 6.401}
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    m = load_pt(Path(model)) if isinstance(model, (str, os.PathLike)) else model
    out = {}
    for hw in sizes:
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            m(torch.zeros(1, 3, *hw))
        out[_label(hw)] = round(fc.get_total_flops() / 1e9, 4)
    return out


def build_stock(name: str, nc: int, names: dict[int, str], folder: Path) -> Path:
    """Stock Ultralytics ``name``.yaml with ``nc`` classes and random weights (seed 0), saved as a checkpoint
    our exporter and Ultralytics both load. Built offline: no weights are downloaded."""
    import edge_mlla.nn  # noqa: F401  (registers our modules; offline set-up before Ultralytics)
    from edge_mlla._env import setup_offline

    setup_offline()
    try:
        import torch
        from ultralytics.nn.tasks import DetectionModel
    except ImportError as e:
        raise MissingDependencyError(f"the stock baseline needs torch and ultralytics ({e}); pip install 'edge-mlla[train]'") from e
    cfg = name if name.endswith((".yaml", ".yml")) else f"{name}.yaml"
    torch.manual_seed(0)
    try:
        with quiet("ultralytics"):
            model = DetectionModel(cfg, nc=nc, verbose=False)
    except Exception as e:  # FileNotFoundError for an unknown yaml, KeyError/ValueError for a malformed one
        raise ConfigError(f"baseline {name!r} is not a stock Ultralytics model yaml Ultralytics can build offline "
                          f"(e.g. yolo11n, yolo11s, yolov8n): {type(e).__name__}: {e}") from e  # fmt: skip
    model.names = dict(names)
    path = folder / f"{Path(cfg).stem}-stock.pt"
    torch.save({"model": model, "train_args": {}, "date": _dt.date.today().isoformat(), "version": "stock, random weights"},
               path)  # fmt: skip
    return path


def calibration_images(n: int) -> list[str]:
    """``n`` BCCD train images spread evenly over the split (a list: the calibrator need not scan the folder)."""
    from edge_mlla.data import DATA_DIR

    files = sorted((DATA_DIR / "bccd" / "images" / "train").glob("*.jpg"))
    if not files:
        raise MissingFileError(f"bundled BCCD train images missing under {DATA_DIR / 'bccd'}")
    idx = np.unique(np.linspace(0, len(files) - 1, min(n, len(files))).round().astype(int))
    return [str(files[i]) for i in idx]


def quantize_for_bench(src: Path, backend: str, hw: tuple[int, int], out: Path, calib: list[str],
                       progress: bool = False) -> tuple[Path, dict]:  # fmt: skip
    """An INT8 model of ``src`` for the bench's INT8 cells (default scope, no timing, no accuracy)."""
    from edge_mlla.quantize import quantize

    if backend == "openvino":  # import NNCF before quantize() quiets its logger: importing it resets the level to INFO
        with contextlib.suppress(ImportError):
            import nncf  # noqa: F401

    report = quantize(src, calib=calib, backend=backend, subset_size=len(calib), latency_runs=0, output=out,
                      imgsz=hw, progress=progress, val=None)  # fmt: skip
    return Path(report.output), dict(report.calibration or {})


def float_kind(src_kind: str, backend: str) -> str | None:
    """Which float file a backend runs: OpenVINO the IR (or MODEL's own .onnx), ORT/CUDA the .onnx, torch the .pt."""
    want = _FLOAT_KIND.get(backend)
    if src_kind == "pt":
        return want
    if backend == "openvino":
        return "onnx" if src_kind == "onnx" else "xml"
    if want == "onnx" and src_kind == "onnx":
        return "onnx"
    return None


def static_hw(path: Path) -> tuple[int, int] | None:
    """The fixed input size of a model file, None when dynamic."""
    from edge_mlla.modelfile import inspect_model

    return inspect_model(path).static_hw


def export_file(pt: Path, kind: str, hw: tuple[int, int], folder: Path, dynamic: bool = False) -> Path:
    """``pt`` exported to ``kind`` (``xml`` or ``onnx``) at ``hw`` under ``folder``."""
    from edge_mlla.export import export

    with quiet("ultralytics"):
        return Path(export(pt, format="openvino" if kind == "xml" else "onnx", imgsz=hw, dynamic=dynamic,
                           output=folder / f"{kind}_{_label(hw)}"))  # fmt: skip


@dataclass
class Prepared:
    """What :func:`prepare` made: the files by key, and what the report says of the model and the baseline."""

    files: Files
    model_info: dict[str, Any]
    base_info: dict[str, Any] | None


@dataclass
class _Plan:
    """The preparation steps, in order, and what they share."""

    src: Source
    work: Path
    sizes: list[tuple[int, int]]
    files: Files = field(default_factory=Files)
    steps: list[tuple[str, Callable[[], None]]] = field(default_factory=list)
    stock_pt: list[Path] = field(default_factory=list)

    def add(self, desc: str, fn: Callable[[], None]) -> None:
        self.steps.append((desc, fn))


def prepare(src: Source, backends: list[str], precisions: list[str], sizes: list[tuple[int, int]],
            baseline: str | Path | bool, int8_file: Path | None, calib_size: int, work: Path, progress: bool,
            settings: dict[str, Any]) -> Prepared:  # fmt: skip
    """Export / quantize every file the cells need (a failed step becomes its cells' skip reason), count GFLOPs."""
    plan = _Plan(src, work, sizes)
    model_info: dict[str, Any] = {"path": str(src.path), "name": src.path.name, "kind": src.kind,
                                  "input": "dynamic" if src.dynamic else (_label(src.static_hw) if src.static_hw else None),
                                  "int8": src.int8, "gflops": {}, "gflops_method": None}  # fmt: skip
    float_kinds = sorted({k for k in (float_kind(src.kind, b) for b in backends) if k and k != "pt"})
    want_int8 = "int8" in precisions and not src.int8
    int8_backends = [b for b in backends if b in ("openvino", "onnxruntime", "cuda")] if want_int8 else []
    _add_model(plan, model_info)
    base_info = _add_baseline(plan, baseline) if baseline is not False else None
    if src.kind == "pt":
        for kind in float_kinds:
            for hw in sizes:
                key = ("ours", kind, _label(hw))
                plan.add(f"ours: export {kind} {_label(hw)}", lambda key=key, kind=kind, hw=hw: plan.files.make(
                    [key], lambda: export_file(src.path, kind, hw, work / "ours")))  # fmt: skip
    if int8_file is not None:
        _given_int8(plan, int8_file, int8_backends)
    elif int8_backends:
        _add_quantize(plan, int8_backends, calib_size, progress, settings)
    if baseline is not False:
        _add_baseline_exports(plan, float_kinds)
    _run_steps(plan, progress)
    if base_info is not None:
        base_info["file_kinds"] = sorted({k for (m, k, _) in plan.files.path if m == "stock"})
    return Prepared(plan.files, model_info, base_info)


def _run_steps(plan: _Plan, progress: bool) -> None:
    pbar = bar(len(plan.steps), "bench: prepare models", progress)
    try:
        for desc, fn in plan.steps:
            pbar.set_postfix_str(desc)
            t0 = time.perf_counter()
            fn()  # loading MODEL / building the baseline raise (user input); exports and quantization record reasons
            LOGGER.debug("bench: %s: %.1f s", desc, time.perf_counter() - t0)
            pbar.update(1)
    finally:
        pbar.close()


def _add_model(plan: _Plan, model_info: dict[str, Any]) -> None:
    """MODEL: load + GFLOPs (.pt), or the exported file itself at every size."""
    src = plan.src
    if src.kind != "pt":
        model_info["gflops_method"] = "unknown: an exported file without its .pt"
        for hw in plan.sizes:
            plan.files.path[("ours", "onnx" if src.kind == "onnx" else "xml", _label(hw))] = src.path
        return

    def load_ours() -> None:
        m = load_pt(src.path)
        src.names = {int(k): str(v) for k, v in dict(getattr(m, "names", {}) or {}).items()}
        src.stride = int(max(int(s) for s in m.stride.tolist())) if hasattr(m, "stride") else 32
        model_info["gflops"] = count_gflops(m, plan.sizes)
        model_info["gflops_method"] = "torch.utils.flop_counter.FlopCounterMode on the .pt, batch 1"

    plan.add("load model, count GFLOPs", load_ours)
    plan.files.path[("ours", "pt", "*")] = src.path


def _add_baseline(plan: _Plan, baseline: str | Path) -> dict[str, Any]:
    """The stock checkpoint: built from its yaml name (random weights) or the given one."""
    info: dict[str, Any] = {"name": baseline if isinstance(baseline, str) else Path(baseline).stem,
                            "weights": "random (speed only)" if isinstance(baseline, str) else str(baseline),
                            "gflops": {}, "gflops_method": "torch.utils.flop_counter.FlopCounterMode, batch 1"}  # fmt: skip

    def build() -> None:
        src = plan.src
        nc = len(src.names) or 80
        names = src.names or {i: str(i) for i in range(nc)}
        if isinstance(baseline, Path):
            pt = baseline
        else:
            (plan.work / "stock").mkdir(parents=True, exist_ok=True)
            pt = build_stock(str(baseline), nc, names, plan.work / "stock")
        plan.stock_pt.append(pt)
        m = load_pt(pt)
        info["nc"] = int(getattr(m, "nc", nc) or nc)
        info["params"] = int(sum(p.numel() for p in m.parameters()))
        info["gflops"] = count_gflops(m, plan.sizes)
        plan.files.path[("stock", "pt", "*")] = pt

    plan.add(f"baseline: build {info['name']}", build)
    return info


def _given_int8(plan: _Plan, int8_file: Path, backends: list[str]) -> None:
    fk = "xml" if int8_file.suffix.lower() == ".xml" else "onnx"
    mf_hw = static_hw(int8_file)
    for hw in plan.sizes:
        for b in backends:
            key = ("ours", f"int8-{b}", _label(hw))
            if b != "openvino" and fk == "xml":
                plan.files.error[key] = f"{b} cannot run an OpenVINO IR ({int8_file.name}); give a QDQ .onnx as the INT8 model"
            elif mf_hw is not None and mf_hw != hw:
                plan.files.error[key] = f"the given INT8 model {int8_file.name} has a fixed input {_label(mf_hw)}"
            else:
                plan.files.path[key] = int8_file


def _add_quantize(plan: _Plan, backends: list[str], calib_size: int, progress: bool, settings: dict[str, Any]) -> None:
    """INT8 quantized here from the float export of each size (OpenVINO: NNCF on the IR; others: QDQ ONNX)."""
    calib = calibration_images(calib_size)
    settings["int8"]["calibration_images"] = len(calib)
    files = plan.files
    for hw in plan.sizes:
        for b in backends:
            qb = "openvino" if b == "openvino" else "onnxruntime"
            fkind = (float_kind(plan.src.kind, b) if b == "openvino" else "onnx") or ""

            def quant(b: str = b, qb: str = qb, fkind: str = fkind, hw: tuple[int, int] = hw) -> None:
                key = ("ours", f"int8-{b}", _label(hw))
                srcf, why = files.get(("ours", fkind, _label(hw)))
                if srcf is None:
                    files.error[key] = f"no float {fkind or 'model'} file to quantize ({why})"
                    return
                out = plan.work / "ours" / f"int8_{qb}_{_label(hw)}"
                files.make([key], lambda: quantize_for_bench(srcf, qb, hw, out, calib, progress)[0])

            plan.add(f"ours: quantize {qb} {_label(hw)}", quant)


def _add_baseline_exports(plan: _Plan, float_kinds: list[str]) -> None:
    """The baseline in the same formats; one dynamic export when MODEL is dynamic."""
    dyn = plan.src.dynamic
    for kind in float_kinds:
        for hw in [plan.sizes[0]] if dyn else plan.sizes:
            keys = [("stock", kind, _label(h)) for h in (plan.sizes if dyn else [hw])]

            def exp(kind: str = kind, hw: tuple[int, int] = hw) -> Path:
                if not plan.stock_pt:
                    raise ConfigError("the baseline was not built")
                return export_file(plan.stock_pt[0], kind, hw, plan.work / "stock", dynamic=dyn)

            plan.add(f"baseline: export {kind} {_label(hw)}", lambda exp=exp, keys=keys: plan.files.make(keys, exp))
