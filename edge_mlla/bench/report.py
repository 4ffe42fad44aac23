"""The bench's markdown report: set-up (machine, versions, method), verdicts, latency per stage, baseline ratios,
resolution scaling, hardware limit, and what was not measured and why.

Example:
    >>> from edge_mlla.bench import BenchResult
    >>> print(markdown(BenchResult.load("runs/bench/bench.json")).splitlines()[0])  # doctest: +SKIP
    # edge-mlla bench: yolo11n-mlla-bccd.pt
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_mlla.bench.options import label as _label
from edge_mlla.bench.result import STAGES, BenchResult, Cell


def fmt(x: float | None, nd: int | None = None) -> str:
    """A number for a table: ``-`` when missing, 1 decimal from 10 up, else 2 (or ``nd``)."""
    if x is None:
        return "-"
    if nd is None:
        nd = 1 if abs(x) >= 10 else 2
    return f"{x:.{nd}f}"


def _mp(st: dict[str, float] | None) -> str:
    if not st:
        return "-"
    return f"{fmt(st.get('median'))} / {fmt(st.get('p90'))}"


def order(c: Cell) -> tuple:
    """Sort key of cells in tables and charts: size, backend, ours first, Detector first, precision."""
    prec_rank = {"f32": 0, "bf16": 1, "f16": 2, "int8": 3, "default": 4}
    return (c.imgsz[0] * c.imgsz[1], c.backend, c.model != "ours", c.runner != "detector", prec_rank.get(c.precision, 9))


def names(res: BenchResult) -> dict[str, str]:
    """Display names of the two models: ``ours`` and ``stock``."""
    return {"ours": res.model.get("name", "ours"), "stock": (res.baseline or {}).get("name", "stock")}


def markdown(res: BenchResult) -> str:
    """The whole report (what ``bench.md`` holds and :meth:`BenchResult.table` returns)."""
    parts = [_setup(res), _stages(res), _ratios(res), _scaling(res), _peaks(res), _skipped(res)]
    if res.notes:
        parts.append("\n".join(["## Notes", ""] + [f"- {n}" for n in res.notes] + [""]))
    return "\n".join(p for p in parts if p)


def _setup(res: BenchResult) -> str:
    m, s = res.machine, res.settings
    cores = m.get("cores", {})
    isa = m.get("isa", {})
    have = [f for f, v in isa.items() if v]
    lack = [f for f, v in isa.items() if not v]
    vers = ", ".join(f"{k} {v}" for k, v in (m.get("versions") or {}).items() if v)
    img = s["image"]
    lines = [
        f"# edge-mlla bench: {res.model.get('name')}", "",
        f"**Machine**: {m.get('cpu')} ({m.get('machine')}), {cores.get('os_cpu_count')} CPUs"
        f" ({cores.get('affinity')} usable); ISA: {', '.join(have) or 'none of'}"
        + (f" (no {', '.join(lack)})" if lack else "")
        + f"; OpenVINO CPU capabilities: {', '.join(m.get('openvino_cpu_capabilities') or ['unknown'])}; "
        f"load average {m.get('loadavg')} at start, {m.get('loadavg_end')} at end; {m.get('date')}.", "",
        f"**Versions**: {vers}.", "",
        (f"**Method**: batch 1, one image ({img['source']}, {img['shape'][1]}x{img['shape'][0]}, "
         f"{img['resized']}); median / p90 ms over {s['runs']} calls after {s['warmup']} warm-up, the cells of "
         f"one backend and size interleaved round robin; runtime threads: defaults; FPS: async throughput with "
         f"`Detector.submit()` keeping the backend's optimal number of requests in flight ({s['throughput_runs']} "
         f"images; OpenVINO with the throughput hint). Stages are the Detector's own Timing (Ultralytics: "
         f"`results[0].speed`); e2e wall is the whole call timed outside it."), "",
    ]  # fmt: skip
    i8 = s.get("int8") or {}
    if i8.get("source") == "given":
        lines += [f"**INT8**: the given model {Path(i8['file']).name}.", ""]
    elif "int8" in s.get("precisions", []):
        lines += [(f"**INT8**: quantized here from the float export with {i8.get('calibration_images', '?')} images of "
                   f"the bundled BCCD train split (OpenVINO: NNCF; ONNX Runtime: static QDQ; edge_mlla.quantize "
                   f"default scope)."), ""]  # fmt: skip
    if res.baseline:
        lines += [(f"**Baseline**: stock {res.baseline['name']} ({res.baseline.get('weights')}, "
                   f"{res.baseline.get('nc', '?')} classes), exported the same way, run through our Detector and "
                   f"through Ultralytics' `YOLO(file).predict`, each at its default precision."), ""]  # fmt: skip
    if res.verdicts:
        lines += ["**Verdict**:", ""] + [f"- {v}" for v in res.verdicts] + [""]
    return "\n".join(lines)


def _stages(res: BenchResult) -> str:
    lines = ["## Latency per stage (ms, median / p90)", "",
             ("| model | runner | backend | precision | imgsz | preprocess | infer | postprocess | total | e2e wall | "
              "FPS async (in flight) | GFLOPs | GFLOP/s | % of peak |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    name = names(res)
    for c in sorted((c for c in res.cells if c.ok), key=order):
        prec = c.precision_run or c.precision
        if c.precision_run == "int8" and c.float_precision:
            prec = f"int8 ({c.float_precision} float ops)"
        fps = f"{fmt(c.throughput_fps)} ({c.inflight})" if c.throughput_fps else "-"
        lines.append(
            f"| {name[c.model]} | {c.runner} | {c.backend} | {prec} | {_label(c.imgsz)} | "
            + " | ".join(_mp(c.latency_ms.get(st)) for st in STAGES)
            + f" | {_mp(c.wall_ms)} | {fps} | {fmt(c.gflops)} | {fmt(c.gflops_per_s)} | {fmt(c.pct_of_peak, 1)} |"
        )
    return "\n".join(lines + [""])


_RATIO_KEYS = ("detector_vs_ultralytics_stock", "detector_vs_ultralytics_ours", "mlla_vs_stock_infer",
               "mlla_vs_stock_total")  # fmt: skip


def _ratios(res: BenchResult) -> str:
    if not res.ratios or not (res.baseline or any(r.get("detector_vs_ultralytics_ours") for r in res.ratios)):
        return ""
    lines = ["## Baseline ratios (lower is better for ours)", "",
             ("| backend | imgsz | precision | Detector / Ultralytics e2e, stock | Detector / Ultralytics e2e, "
              "MLLA | MLLA / stock infer | MLLA / stock total |"),
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in res.ratios:
        lines.append(f"| {r['backend']} | {_label(r['imgsz'])} | {r['precision']} | "
                     + " | ".join(f"{fmt(r[k], 2)}x" if r[k] is not None else "-" for k in _RATIO_KEYS) + " |")
    return "\n".join(lines + [""])


def _scaling(res: BenchResult) -> str:
    sc = [x for x in res.scaling if x["runner"] == "detector"]
    if not sc:
        return ""
    name = names(res)
    labels = [_label(hw) for hw in sorted((tuple(h) for h in res.settings["imgsz"]), key=lambda hw: hw[0] * hw[1])]
    lines = ["## Resolution scaling (inference ms, median)", "",
             f"| model | backend | precision | {' | '.join(labels)} | growth exponent (ms ~ pixels^k) |",
             "|---|---|---|" + "---|" * len(labels) + "---|"]  # fmt: skip
    for x in sorted(sc, key=lambda x: (x["backend"], x["model"] != "ours", x["precision"])):
        by = {_label(p["imgsz"]): p["infer_ms"] for p in x["points"]}
        lines.append(f"| {name[x['model']]} | {x['backend']} | {x['precision_run'] or x['precision']} | "
                     + " | ".join(fmt(by.get(lab)) for lab in labels) + f" | {fmt(x['exponent'], 2)} |")
    lines += ["", "An exponent of 1 means inference time grows in proportion to the pixel count.", ""]
    return "\n".join(lines)


def _gflops_text(g: dict[str, Any]) -> str:
    return ", ".join(f"{k}: {v:.2f}" for k, v in g.items())


def _peaks(res: BenchResult) -> str:
    if not res.peaks:
        return ""
    lines = ["## Hardware limit", "", "| backend | precision | peak GFLOP/s | measured on |", "|---|---|---|---|"]
    for p in res.peaks:
        lines.append(f"| {p['backend']} | {p['precision']} | {fmt(p.get('gflops_per_s'))} | "
                     f"{p.get('conv') or p.get('reason', '-')} |")  # fmt: skip
    g = res.model.get("gflops") or {}
    base = res.baseline or {}
    lines += ["", f"Model GFLOPs ({res.model.get('gflops_method')}): " + (_gflops_text(g) if g else "unknown")
              + (f"; {base['name']}: " + _gflops_text(base["gflops"]) if base.get("gflops") else "")
              + ". % of peak = the model's GFLOP/s at its median inference time / the conv peak in the same "
              "runtime and precision.", ""]  # fmt: skip
    return "\n".join(lines)


def _skipped(res: BenchResult) -> str:
    skipped = [c for c in res.cells if not c.ok]
    if not skipped:
        return ""
    name = names(res)
    lines = ["## Not measured", ""]
    grouped: dict[tuple[str, str, str, str, str, str], list[str]] = {}
    for c in skipped:
        grouped.setdefault((c.model, c.runner, c.backend, c.precision, c.status, c.reason), []).append(_label(c.imgsz))
    for (model, runner, b, p, st, why), labs in grouped.items():
        lines.append(f"- {name[model]} {runner} {b} {p} ({', '.join(labs)}): {st}: {why}")
    return "\n".join(lines + [""])
