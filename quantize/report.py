"""The accuracy/latency/size report of one quantization: printed table, JSON and a PNG chart.

Example:
    >>> r = QuantizeReport(source="m.onnx", output="m_int8.onnx", backend="onnxruntime",
    ...                    fp32=ModelStats(map50_95=0.61, map50=0.9, latency_ms=20.0, size_mb=10.6, precision="f32"),
    ...                    int8=ModelStats(map50_95=0.60, map50=0.9, latency_ms=12.0, size_mb=3.2, precision="int8"))
    >>> round(r.map_drop, 4)
    0.01
    >>> print(r.table().splitlines()[0])
    | model | precision | mAP50-95 | mAP50 | latency ms | FPS | size MB |

Imports inside functions: matplotlib is optional or slow to import, so it loads when the function that uses it
runs.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

LOGGER = logging.getLogger("edge_mlla")


@dataclass
class ModelStats:
    """One model's numbers; None where not measured (no validation data, latency off)."""

    map50_95: float | None = None
    map50: float | None = None
    latency_ms: float | None = None
    fps: float | None = None
    size_mb: float | None = None
    precision: str = ""
    extra_latency_ms: dict[str, float] = field(default_factory=dict)  # e.g. {"bf16": 9.1} for the FP32 model


@dataclass
class QuantizeReport:
    """What :func:`edge_mlla.quantize.quantize` did and what it cost.

    ``fp32``/``int8``: the float model (in the device's native precision, ``fp32.precision``) and the chosen INT8
    model: accuracy (on ``val``), latency (median, batch 1, ``threads`` threads), throughput and file size;
    ``float_ops``: ignored-scope group -> {op type: count} kept in float; ``calibration``: images used/skipped;
    ``candidates``: every variant tried with its numbers and what became of it; ``reason``: why the chosen one;
    ``recommendation``: INT8 or the float model, by measured throughput; ``mode``: fast or thorough; ``budget``: the
    accuracy budget that applied (absolute or relative); ``timings``: seconds per part of the run; ``notes``:
    warnings for the user (e.g. a model running at another size than it was trained at).
    """

    source: str
    output: str
    backend: str
    fp32: ModelStats = field(default_factory=ModelStats)
    int8: ModelStats = field(default_factory=ModelStats)
    float_ops: dict[str, dict[str, int]] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    val: str | None = None
    imgsz: tuple[int, int] | None = None
    threads: int | None = None
    candidates: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""
    recommendation: str = ""
    mode: str = ""
    budget: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    json_path: str | None = None
    png_path: str | None = None

    @property
    def map_drop(self) -> float | None:
        """FP32 minus INT8 mAP50-95 (absolute; 0.01 = 1 point), None without validation."""
        if self.fp32.map50_95 is None or self.int8.map50_95 is None:
            return None
        return self.fp32.map50_95 - self.int8.map50_95

    @property
    def speedup(self) -> float | None:
        """INT8 latency / FP32 latency (lower is better), None when not timed."""
        if not self.fp32.latency_ms or not self.int8.latency_ms:
            return None
        return self.int8.latency_ms / self.fp32.latency_ms

    def table(self) -> str:
        """Markdown table plus the float-ops and calibration lines (what the CLI prints)."""

        def f(v: float | None, nd: int = 4) -> str:
            return "-" if v is None else f"{v:.{nd}f}"

        rows = ["| model | precision | mAP50-95 | mAP50 | latency ms | FPS | size MB |", "|---|---|---:|---:|---:|---:|---:|"]
        for label, s, path in (("float", self.fp32, self.source), ("INT8", self.int8, self.output)):
            rows.append(f"| {label} `{Path(path).name}` | {s.precision} | {f(s.map50_95)} | {f(s.map50)} | "
                        f"{f(s.latency_ms, 2)} | {f(s.fps, 1)} | {f(s.size_mb, 2)} |")  # fmt: skip
            for prec, ms in s.extra_latency_ms.items():
                rows.append(f"| {label} `{Path(path).name}` | {prec} | | | {ms:.2f} | | |")
        lines = ["\n".join(rows)]
        if len(self.candidates) > 1:
            lines.append(self._candidate_table(f))
        if self.reason:
            lines.append(f"chosen: {self.reason}" + (f" (budget: {self.budget})" if self.budget else ""))
        if self.recommendation:
            lines.append(f"recommendation: {self.recommendation}")
        if self.map_drop is not None:
            lines.append(f"mAP50-95 drop: {self.map_drop * 100:+.2f} points (x100) on {self.val}")
        if self.speedup is not None:
            lines.append(f"INT8 / {self.fp32.precision or 'float'} latency: {self.speedup:.2f}x ({self.backend}, batch 1, "
                         f"{self.threads or 'default'} threads, imgsz {self.imgsz})")  # fmt: skip
        kept = "; ".join(f"{g}: " + ", ".join(f"{op} x{n}" for op, n in sorted(ops.items())) for g, ops in self.float_ops.items())
        lines.append(f"kept in float: {kept or 'nothing'}")
        c = self.calibration
        if c:
            lines.append(f"calibration: {c.get('used')} image(s) used of {c.get('requested')} requested, "
                         f"{c.get('skipped', 0)} skipped ({c.get('kind')}: {c.get('source')})")  # fmt: skip
        if self.details.get("runs_on_openvino") not in (None, True):
            lines.append(f"QDQ model on OpenVINO: {self.details['runs_on_openvino']}")
        lines += [f"note: {n}" for n in self.notes]
        if self.timings:
            total = sum(self.timings.values())
            parts = ", ".join(f"{k} {v:.1f} s" for k, v in self.timings.items())
            lines.append(f"took {total:.1f} s ({self.mode or 'fast'} mode): {parts}")
        return "\n".join(lines)

    def _candidate_table(self, f) -> str:  # noqa: ANN001
        cand = ["| candidate (preset, kept in float) | mAP50-95 | drop (points) | subset drop | latency ms | FPS | outcome |",
                "|---|---:|---:|---:|---:|---:|---|"]  # fmt: skip
        for c in self.candidates:
            drop = "-" if c.get("drop") is None else f"{c['drop'] * 100:+.2f}"
            sub = "-" if c.get("subset_drop") is None else f"{c['subset_drop'] * 100:+.2f}"
            outcome = c.get("status") or ("chosen" if c.get("chosen") else "")
            cand.append(f"| {c['preset']}, {','.join(c['scope']) or 'none'} | {f(c.get('map50_95'))} | {drop} | {sub} | "
                        f"{f(c.get('latency_ms'), 2)} | {f(c.get('fps'), 1)} | {outcome} |")  # fmt: skip
        return "\n".join(cand)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["map_drop"] = self.map_drop
        d["speedup"] = self.speedup
        d["details"] = {k: v for k, v in self.details.items() if k != "ignored_node_names"}
        d["ignored_node_names"] = self.details.get("ignored_node_names", [])
        return d

    def save(self, folder: str | os.PathLike | None = None, stem: str | None = None) -> tuple[Path, Path | None]:
        """Write ``<stem>_report.json`` and ``<stem>_report.png`` (when matplotlib is present) into ``folder``."""
        out = Path(self.output)
        folder = Path(folder) if folder is not None else out.parent
        stem = stem or out.stem
        folder.mkdir(parents=True, exist_ok=True)
        js = folder / f"{stem}_report.json"
        js.write_text(json.dumps(self.to_dict(), indent=2, default=str))
        self.json_path = str(js)
        png = folder / f"{stem}_report.png"
        try:
            self.plot(png)
            self.png_path = str(png)
        except ImportError:
            LOGGER.warning("matplotlib not installed: no report chart (pip install matplotlib)")
            png = None
        js.write_text(json.dumps(self.to_dict(), indent=2, default=str))
        return js, png

    def plot(self, path: str | os.PathLike) -> Path:
        """Bar chart: FP32 vs INT8 mAP50-95 / mAP50, latency and size."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        panels = [("mAP50-95", "map50_95"), ("mAP50", "map50"), ("latency (ms)", "latency_ms"), ("throughput (FPS)", "fps"),
                  ("size (MB)", "size_mb")]  # fmt: skip
        fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.2))
        for ax, (title, key) in zip(axes, panels):
            vals = [getattr(self.fp32, key), getattr(self.int8, key)]
            ax.bar([self.fp32.precision or "float", "INT8"], [v or 0 for v in vals], color=["#4c72b0", "#dd8452"])
            for i, v in enumerate(vals):
                ax.text(i, (v or 0), "n/a" if v is None else f"{v:.3g}", ha="center", va="bottom", fontsize=8)
            ax.set_title(title, fontsize=10)
        fig.suptitle(f"{Path(self.source).name} -> INT8 ({self.backend}, imgsz {self.imgsz})", fontsize=10)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return Path(path)
