"""The bench's charts: ``latency_stages.png`` (median ms per stage, stacked, per cell) and ``scaling.png``
(inference ms vs pixels, ours vs stock, log-log). Needs matplotlib.

Example:
    >>> from edge_mlla.bench import BenchResult
    >>> plot(BenchResult.load("runs/bench/bench.json"), Path("runs/bench"))  # doctest: +SKIP
    [PosixPath('runs/bench/latency_stages.png'), PosixPath('runs/bench/scaling.png')]

Imports inside functions: matplotlib (optional, slow to import) and our helpers load when a chart is drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge_mlla.bench.options import label as _label
from edge_mlla.bench.report import names, order
from edge_mlla.bench.result import BenchResult
from edge_mlla.errors import MissingDependencyError


def plot(res: BenchResult, folder: Path) -> list[Path]:
    """Write both charts into ``folder``; returns their paths."""
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise MissingDependencyError("bench charts need matplotlib: pip install matplotlib") from e
    from edge_mlla._env import setup_offline
    from edge_mlla._io import ensure_writable_dir

    setup_offline()  # MPLCONFIGDIR writable
    folder = ensure_writable_dir(folder)
    return [_plot_stages(res, folder / "latency_stages.png", Figure), _plot_scaling(res, folder / "scaling.png", Figure)]


def _plot_stages(res: BenchResult, path: Path, Figure: Any) -> Path:
    name = names(res)
    sizes = sorted({tuple(c.imgsz) for c in res.cells}, key=lambda hw: hw[0] * hw[1])
    per = {hw: sorted((c for c in res.cells if c.ok and tuple(c.imgsz) == hw), key=order) for hw in sizes}
    rows = max([len(v) for v in per.values()] + [1])
    fig = Figure(figsize=(10, 1.0 + 0.32 * rows * max(1, len(sizes)) + 0.6 * len(sizes)))
    axes = fig.subplots(max(1, len(sizes)), 1, squeeze=False)[:, 0]
    colors = {"preprocess": "#4C72B0", "infer": "#DD8452", "postprocess": "#55A868"}
    for ax, hw in zip(axes, sizes or [(0, 0)]):
        cs = per.get(hw, [])
        labels = [f"{name[c.model]} {'UL ' if c.runner == 'ultralytics' else ''}{c.backend} {c.precision_run or c.precision}"
                  for c in cs]  # fmt: skip
        left = np.zeros(len(cs))
        for st in ("preprocess", "infer", "postprocess"):
            vals = np.array([c.latency_ms[st]["median"] for c in cs]) if cs else np.zeros(0)
            ax.barh(range(len(cs)), vals, left=left, color=colors[st], label=st)
            left += vals
        for i, c in enumerate(cs):
            ax.text(left[i], i, f" {left[i]:.1f}", va="center", fontsize=7)
        ax.set_yticks(range(len(cs)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(f"imgsz {_label(hw)}" if cs else "no measured cells", fontsize=9)
        ax.set_xlabel("median ms per image (batch 1)", fontsize=8)
        ax.margins(x=0.12)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"Latency per stage: {res.model.get('name')} on {res.machine.get('cpu')}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _plot_scaling(res: BenchResult, path: Path, Figure: Any) -> Path:
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    name = names(res)
    palette = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
    color: dict[str, str] = {}
    ticks: dict[float, str] = {}
    plotted = 0
    for x in res.scaling:
        if x["runner"] != "detector" or (x["model"] == "ours" and x["precision"] == "int8"):
            continue
        px = np.array([p["pixels"] for p in x["points"]], float) / 1e6
        ms = np.array([p["infer_ms"] for p in x["points"]], float)
        ticks.update({p["pixels"] / 1e6: _label(p["imgsz"]) for p in x["points"]})
        k = x.get("exponent")
        prec = x["precision_run"] or x["precision"]
        label = f"{name[x['model']]} {x['backend']} {prec}" + (f" (k={k:.2f})" if k is not None else "")
        c = color.setdefault(f"{x['backend']} {prec}", palette[len(color) % len(palette)])
        ax.plot(px, ms, "o-" if x["model"] == "ours" else "s--", color=c, label=label)
        plotted += 1
    ax.set_xscale("log")
    ax.set_yscale("log")
    if ticks:
        from matplotlib.ticker import NullLocator, ScalarFormatter

        ax.set_xticks(sorted(ticks), [ticks[t] for t in sorted(ticks)])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(ScalarFormatter())
    ax.set_xlabel("input size (log pixel count)")
    ax.set_ylabel("median inference ms")
    ax.set_title("Resolution scaling: ours vs stock (ms ~ pixels^k)", fontsize=10)
    if plotted:
        ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
