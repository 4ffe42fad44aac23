"""Numbers derived from the cells: the baseline ratios (our Detector vs Ultralytics' predict on the same file,
MLLA vs stock), the resolution-scaling exponent, and plain verdicts (does INT8 pay here, what is fastest).

Example:
    >>> round(fit_exponent([320**2, 640**2, 1280**2], [10.0, 40.0, 160.0]), 3)
    1.0

Imports inside functions: our module runtimes.openvino pulls in more than importing this module needs, so it loads
when the function that uses them runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from edge_mlla.bench.options import label as _label
from edge_mlla.bench.result import BenchResult, Cell

INT8_PAYS = 1.05  # INT8 must reach this throughput ratio over the native float precision to be recommended


def fit_exponent(pixels: Sequence[float], times: Sequence[float]) -> float | None:
    """Growth exponent k of ``time ~ pixels**k``: least squares on log-log; None with fewer than two sizes.

    Example:
        >>> round(fit_exponent([320**2, 640**2, 1280**2], [10.0, 40.0, 160.0]), 3)
        1.0
        >>> fit_exponent([640**2], [10.0]) is None
        True
    """
    pts = [(float(p), float(t)) for p, t in zip(pixels, times) if p and t and p > 0 and t > 0]
    if len({p for p, _ in pts}) < 2:
        return None
    x = np.log([p for p, _ in pts])
    y = np.log([t for _, t in pts])
    return float(np.polyfit(x, y, 1)[0])


def _native(res: BenchResult, backend: str) -> str:
    """The backend's default float precision here: OpenVINO's native (bf16 with BF16, else f32); others f32."""
    if backend == "openvino":
        from edge_mlla.runtimes.openvino import native_precision

        return native_precision("CPU", res.machine.get("openvino_cpu_capabilities") or [])
    return "f32"


def _ours_default(res: BenchResult, backend: str, hw: Sequence[int], precision_run: str | None) -> Cell | None:
    """Our Detector cell in the given float precision (the one the stock default ran in)."""
    for c in res.cells:
        if (c.ok and c.model == "ours" and c.runner == "detector" and c.backend == backend
                and tuple(c.imgsz) == tuple(hw) and c.precision != "int8" and c.precision_run == precision_run):
            return c
    return None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def ratios(res: BenchResult) -> list[dict[str, Any]]:
    """Per backend and size: Detector / Ultralytics end to end (stock and ours), MLLA / stock inference and total;
    a ratio that cannot be formed says why under ``missing``."""
    out = []
    for b in res.settings["backends"]:
        for hw in [tuple(s) for s in res.settings["imgsz"]]:
            stock = res.cell("stock", "detector", b, "default", hw)
            prec = stock.precision_run if stock and stock.ok else _native(res, b)
            ours = _ours_default(res, b, hw, prec)
            ul_s = res.cell("stock", "ultralytics", b, "default", hw)
            ul_o = res.cell("ours", "ultralytics", b, "default", hw)

            def wall(c: Cell | None) -> float | None:
                return c.wall_ms.get("median") if c is not None and c.ok else None

            def stage(c: Cell | None, s: str) -> float | None:
                return c.latency_ms.get(s, {}).get("median") if c is not None and c.ok else None

            row = {
                "backend": b, "imgsz": list(hw), "precision": prec,
                "detector_vs_ultralytics_stock": _ratio(wall(stock), wall(ul_s)),
                "detector_vs_ultralytics_ours": _ratio(wall(ours), wall(ul_o)),
                "mlla_vs_stock_infer": _ratio(stage(ours, "infer"), stage(stock, "infer")),
                "mlla_vs_stock_total": _ratio(stage(ours, "total"), stage(stock, "total")),
                "ms": {"ours_detector_wall": wall(ours), "stock_detector_wall": wall(stock),
                       "ours_ultralytics_wall": wall(ul_o), "stock_ultralytics_wall": wall(ul_s),
                       "ours_infer": stage(ours, "infer"), "stock_infer": stage(stock, "infer")},
            }  # fmt: skip
            missing = [k for k in ("detector_vs_ultralytics_stock", "detector_vs_ultralytics_ours", "mlla_vs_stock_infer")
                       if row[k] is None]  # fmt: skip
            if missing:
                row["missing"] = {k: _why_missing(res, b, hw, k, prec) for k in missing}
            out.append(row)
    return out


def _why_missing(res: BenchResult, b: str, hw: tuple[int, int], key: str, prec: str) -> str:
    if res.baseline is None and key != "detector_vs_ultralytics_ours":
        return "no baseline (baseline='none')"
    need = {"detector_vs_ultralytics_stock": [("stock", "detector"), ("stock", "ultralytics")],
            "detector_vs_ultralytics_ours": [("ours", "detector"), ("ours", "ultralytics")],
            "mlla_vs_stock_infer": [("ours", "detector"), ("stock", "detector")]}[key]  # fmt: skip
    for model, runner in need:
        if model == "ours" and runner == "detector":
            if _ours_default(res, b, hw, prec) is None:
                return f"our model has no {prec} cell on {b} at {_label(hw)} (add {prec} to the precisions)"
            continue
        c = res.cell(model, runner, b, "default", hw)
        if c is None:
            return f"{model} {runner} not run" + (" (Ultralytics not measured)" if runner == "ultralytics" else "")
        if not c.ok:
            return f"{model} {runner}: {c.reason}"
    return "not measured"


def scaling(res: BenchResult) -> list[dict[str, Any]]:
    """Per series (model, runner, backend, precision): inference ms per size and the fitted growth exponent."""
    series: dict[tuple[str, str, str, str], list[Cell]] = {}
    for c in res.cells:
        if c.ok and c.infer_ms():
            series.setdefault((c.model, c.runner, c.backend, c.precision), []).append(c)
    out = []
    for (model, runner, b, prec), cs in series.items():
        cs.sort(key=lambda c: c.imgsz[0] * c.imgsz[1])
        pts = [{"imgsz": list(c.imgsz), "pixels": c.imgsz[0] * c.imgsz[1], "infer_ms": c.infer_ms(),
                "total_ms": c.latency_ms["total"]["median"]} for c in cs]  # fmt: skip
        k = fit_exponent([p["pixels"] for p in pts], [p["infer_ms"] for p in pts])
        out.append({"model": model, "runner": runner, "backend": b, "precision": prec,
                    "precision_run": cs[0].precision_run, "points": pts,
                    "exponent": None if k is None else round(k, 3),
                    **({"reason": "fewer than two sizes"} if k is None else {})})  # fmt: skip
    return out


def verdicts(res: BenchResult) -> list[str]:
    """Plain recommendations: whether INT8 pays over the native float precision here, and the fastest cell."""
    out = []
    for b in res.settings["backends"]:
        native = _native(res, b)
        ratios, basis = [], ""
        for hw in [tuple(s) for s in res.settings["imgsz"]]:
            q = res.cell("ours", "detector", b, "int8", hw)
            f = next((c for c in res.cells if c.ok and c.model == "ours" and c.runner == "detector" and c.backend == b
                      and tuple(c.imgsz) == hw and c.precision != "int8" and c.precision_run == native), None)  # fmt: skip
            if q is None or not q.ok or f is None:
                continue
            if q.throughput_fps and f.throughput_fps:
                ratios.append(q.throughput_fps / f.throughput_fps)
                basis = "throughput"
            elif q.infer_ms() and f.infer_ms():
                ratios.append(f.infer_ms() / q.infer_ms())
                basis = basis or "inference latency"
        if not ratios:
            continue
        r = math.exp(sum(math.log(x) for x in ratios) / len(ratios))
        sizes = f" over {len(ratios)} sizes" if len(ratios) > 1 else ""
        if r < INT8_PAYS:
            out.append(f"{b}: INT8 is not faster than {native} on this CPU ({r:.2f}x {basis}{sizes}): use {native}")
        else:
            out.append(f"{b}: INT8 runs {r:.2f}x the {basis} of {native} on this CPU{sizes}: use INT8")
    best: dict[str, tuple[float, Cell]] = {}
    for c in res.cells:
        if c.ok and c.model == "ours" and c.runner == "detector" and c.throughput_fps:
            lab = _label(c.imgsz)
            if lab not in best or c.throughput_fps > best[lab][0]:
                best[lab] = (c.throughput_fps, c)
    if best:
        parts = [f"{lab}: {c.backend} {c.precision_run} ({fps:.1f} FPS)" for lab, (fps, c) in best.items()]
        out.append("fastest here (async throughput): " + "; ".join(parts))
    return out
