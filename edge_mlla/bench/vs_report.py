"""The result of :func:`edge_mlla.bench.vs_ultralytics.compare`: one :class:`Row` per path x precision, the ratios
ours / theirs, the goals of issue 20 checked, as a markdown table, JSON and a chart.

Example:
    >>> rows = [Row("ultralytics", "int8", Path("a.xml"), latency_ms=10.0, stream_fps=80.0, map50_95=0.55),
    ...         Row("ours", "int8", Path("b.xml"), latency_ms=7.5, stream_fps=110.0, map50_95=0.552)]
    >>> res = VsResult.build(rows, checkpoint=Path("best.pt"), data="bccd", imgsz=(416, 416), trained=416,
    ...                      clip=Path("clip.mp4"), options=None, machine={"cpu": "X"})
    >>> res.best("ours").latency_ms, res.goals["latency"]["ratio"], res.goals["latency"]["met"]
    (7.5, 0.75, True)

Imports inside functions: matplotlib is optional or slow to import; our modules _env, _io, bench.machine pull in
more than importing this module needs, so they load when the function that uses them runs.
"""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

from edge_mlla.bench.report import fmt

SCHEMA = "edge_mlla.vs_ultralytics/1"
PATHS = ("ultralytics", "ours")
#: issue 20's bar for our best path against Ultralytics' best (its INT8): stream FPS, latency at batch 1, mAP
GOALS = {"stream_fps": 1.3, "latency": 0.8, "map_points": 0.3}


@dataclass
class Row:
    """One path x precision: the model file, how it was made and in how many seconds, what it computes in, its
    accuracy and speed (None where not measured)."""

    path: str
    kind: str  # "float" or "int8"
    file: Path
    make_s: float | None = None
    how: str = ""
    precision: str | None = None
    float_precision: str | None = None
    map50_95: float | None = None
    map50: float | None = None
    latency_ms: float | None = None
    throughput_fps: float | None = None
    stream_fps: float | None = None
    notes: str = ""
    rounds: dict[str, list[float]] = field(default_factory=dict)  # each round's number, in round order

    @property
    def label(self) -> str:
        p = self.precision or self.kind
        if p == "int8" and self.float_precision:
            p = f"int8 ({self.float_precision} float ops)"
        return f"{self.path} {p}"


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def paired_ratio(o: Row, u: Row, key: str) -> float | None:
    """``o / u`` for ``key``: the median of the per-round ratios when both rows have the same rounds (each ratio
    taken within one round, so a slow minute of the machine cancels), else the ratio of the medians.

    Example:
        >>> a, b = Row("ours", "int8", Path("a")), Row("ultralytics", "int8", Path("b"))
        >>> a.rounds, b.rounds = {"stream_fps": [100.0, 50.0, 120.0]}, {"stream_fps": [80.0, 40.0, 80.0]}
        >>> paired_ratio(a, b, "stream_fps")
        1.25
    """
    ro, ru = o.rounds.get(key) or [], u.rounds.get(key) or []
    if ro and len(ro) == len(ru) and all(ru):
        return round(statistics.median(x / y for x, y in zip(ro, ru)), 3)
    return _ratio(getattr(o, key), getattr(u, key))


def ratio_spread(o: Row, u: Row, key: str) -> tuple[float, float] | None:
    """(lowest, highest) per-round ratio ``o / u`` for ``key``, or None without paired rounds: how far one round's
    ratio strays from the median on this machine, so a goal inside that range reads as noise, not as a result.

    Example:
        >>> a, b = Row("ours", "int8", Path("a")), Row("ultralytics", "int8", Path("b"))
        >>> a.rounds, b.rounds = {"latency_ms": [8.0, 9.0, 8.2]}, {"latency_ms": [10.0, 10.0, 10.0]}
        >>> ratio_spread(a, b, "latency_ms")
        (0.8, 0.9)
    """
    ro, ru = o.rounds.get(key) or [], u.rounds.get(key) or []
    if not ro or len(ro) != len(ru) or not all(ru):
        return None
    r = [x / y for x, y in zip(ro, ru)]
    return round(min(r), 3), round(max(r), 3)


def _goal(ratio: float | None, spread: tuple[float, float] | None, limit: float, higher: bool) -> dict[str, Any]:
    """One ratio goal: met by the median; ``within_spread`` when the limit lies inside the per-round range."""
    met = ratio is not None and (ratio >= limit if higher else ratio <= limit)
    return {"ratio": ratio, "goal": f"{'>=' if higher else '<='} {limit}", "met": met, "rounds": spread,
            "within_spread": spread is not None and spread[0] <= limit <= spread[1]}


def _goal_text(name: str, g: dict[str, Any]) -> str:
    """``latency 0.812x (rounds 0.800-0.840; <= 0.8: not met, the goal inside the rounds' range)``: three decimals,
    so a ratio just past its goal does not print as the goal itself."""
    spread = f"rounds {fmt(g['rounds'][0], 3)}-{fmt(g['rounds'][1], 3)}; " if g.get("rounds") else ""
    verdict = "met" if g["met"] else "not met"
    if g.get("within_spread"):
        verdict += ", the goal inside the rounds' range"
    return f"{name} {fmt(g['ratio'], 3)}x ({spread}{g['goal']}: {verdict})"


@dataclass
class VsResult:
    """Rows, ratios (ours / Ultralytics, same precision), goals (our best vs their best), the machine, settings."""

    rows: list[Row]
    settings: dict[str, Any]
    machine: dict[str, Any]
    ratios: list[dict[str, Any]] = field(default_factory=list)
    goals: dict[str, Any] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def build(cls, rows: list[Row], *, checkpoint: Path, data: str, imgsz: tuple[int, int], trained: int | None,
              clip: Path, options: Any, machine: dict[str, Any] | None = None) -> VsResult:  # fmt: skip
        """Derive the ratios and goals from the rows; describe the machine unless given."""
        if machine is None:
            from edge_mlla.bench.machine import describe_machine

            machine = describe_machine()
        opts = asdict(options) if is_dataclass(options) else dict(options or {})
        settings = {"checkpoint": str(checkpoint), "data": data, "imgsz": list(imgsz), "trained_imgsz": trained,
                    "clip": str(clip), "batch": 1, "conf": 0.25, "iou": 0.45, "options": opts}  # fmt: skip
        res = cls(rows=rows, settings=settings, machine=machine)
        for kind in ("float", "int8"):
            u, o = res.row("ultralytics", kind), res.row("ours", kind)
            if u and o:
                res.ratios.append({"kind": kind, "latency": paired_ratio(o, u, "latency_ms"),
                                   "stream_fps": paired_ratio(o, u, "stream_fps"),
                                   "throughput_fps": paired_ratio(o, u, "throughput_fps"),
                                   "make_s": _ratio(o.make_s, u.make_s),
                                   "map_points": None if o.map50_95 is None or u.map50_95 is None
                                   else round(100 * (o.map50_95 - u.map50_95), 2)})  # fmt: skip
        res.goals = res._goals()
        return res

    def row(self, path: str, kind: str) -> Row | None:
        """The row of ``path`` (``ours``/``ultralytics``) and ``kind`` (``float``/``int8``)."""
        return next((r for r in self.rows if r.path == path and r.kind == kind), None)

    def best(self, path: str) -> Row | None:
        """A path's best row: the highest stream FPS (Ultralytics': its INT8 where it exists, as issue 20 asks)."""
        rows = [r for r in self.rows if r.path == path]
        if path == "ultralytics" and any(r.kind == "int8" for r in rows):
            rows = [r for r in rows if r.kind == "int8"]
        return max(rows, key=lambda r: r.stream_fps or 0.0, default=None)

    def _goals(self) -> dict[str, Any]:
        o, u = self.best("ours"), self.best("ultralytics")
        if o is None or u is None:
            return {}
        pts = None if o.map50_95 is None or u.map50_95 is None else round(100 * (o.map50_95 - u.map50_95), 2)
        return {"ours": o.label, "theirs": u.label,
                "stream_fps": _goal(paired_ratio(o, u, "stream_fps"), ratio_spread(o, u, "stream_fps"),
                                    GOALS["stream_fps"], higher=True),
                "latency": _goal(paired_ratio(o, u, "latency_ms"), ratio_spread(o, u, "latency_ms"), GOALS["latency"],
                                 higher=False),
                "map_points": {"diff": pts, "goal": f">= -{GOALS['map_points']}",
                               "met": pts is not None and pts >= -GOALS["map_points"]}}  # fmt: skip

    # ---------------------------------------------------------------------------------------------- output
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (schema :data:`SCHEMA`)."""
        rows = [{**asdict(r), "file": str(r.file), "label": r.label} for r in self.rows]
        return {"schema": SCHEMA, "settings": self.settings, "machine": self.machine, "rows": rows,
                "ratios": self.ratios, "goals": self.goals}  # fmt: skip

    def table(self) -> str:
        """The markdown report: machine, method, one row per path x precision, ratios, goals."""
        from edge_mlla.bench.machine import machine_line

        s, m = self.settings, self.machine
        o = s.get("options", {})
        lines = [f"# Ultralytics' deploy path vs ours: {Path(s['checkpoint']).name}", "",
                 f"**Machine**: {machine_line(m)}; OpenVINO CPU capabilities: "
                 f"{', '.join(m.get('openvino_cpu_capabilities') or ['unknown'])}; "
                 f"{', '.join(f'{k} {v}' for k, v in (m.get('versions') or {}).items() if v and k in ('openvino', 'nncf', 'ultralytics', 'edge_mlla'))}; {m.get('date')}.", "",
                 f"**Method**: imgsz {s['imgsz'][0]} (trained at {s['trained_imgsz'] or 'unknown'}), data {s['data']}; "
                 f"{o.get('rounds')} interleaved rounds; numbers are medians over rounds, ratios medians of the per-round "
                 f"ratios (paired in time). Latency: {o.get('runs')} cycles per round, each calling every path once in "
                 f"rotating order, the median call per path, end to end at batch 1 (Ultralytics `YOLO(ir).predict(image)`, ours `Detector(ir)(image)`, "
                 f"each at its default settings). Throughput: `benchmark_app -hint throughput` on the model file. Stream FPS: "
                 f"{o.get('frames')} frames of {Path(s['clip']).name} (Ultralytics `predict(source=clip, stream=True)`, "
                 f"ours `StreamRunner(Detector(ir, hint='throughput'), clip)`), no drawing. mAP: "
                 f"`edge_mlla.eval.evaluate` (Ultralytics' metric) on the val split"
                 + (f", first {o['val_limit']} images" if o.get("val_limit") else "") + ".", "",
                 "| path | precision | made by | make s | mAP50-95 | mAP50 | latency ms (b1) | throughput FPS | stream FPS |",
                 "|---|---|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for r in self.rows:
            lines.append(f"| {r.path} | {r.label.split(' ', 1)[1]} | {r.how} | {fmt(r.make_s, 1)} | {fmt(r.map50_95, 4)} | "
                         f"{fmt(r.map50, 4)} | {fmt(r.latency_ms)} | {fmt(r.throughput_fps)} | {fmt(r.stream_fps)} |")  # fmt: skip
        lines += ["", "| ours / Ultralytics | latency | stream FPS | throughput | make time | mAP50-95 (points) |",
                  "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
        for q in self.ratios:
            lines.append(f"| {q['kind']} | {fmt(q['latency'], 2)}x | {fmt(q['stream_fps'], 2)}x | "
                         f"{fmt(q['throughput_fps'], 2)}x | {fmt(q['make_s'], 2)}x | {fmt(q['map_points'], 2)} |")  # fmt: skip
        g = self.goals
        if g:
            lines += ["", f"**Goals** (our best, {g['ours']}, against theirs, {g['theirs']}; medians of the per-round "
                      f"ratios, with their range): {_goal_text('stream FPS', g['stream_fps'])}; "
                      f"{_goal_text('latency', g['latency'])}; mAP50-95 "
                      f"{fmt(g['map_points']['diff'], 2)} points ({g['map_points']['goal']}: "
                      f"{'met' if g['map_points']['met'] else 'not met'})."]  # fmt: skip
        return "\n".join(lines) + "\n"

    def plot(self, path: str | os.PathLike) -> Path:
        """Four panels (latency, stream FPS, throughput, mAP50-95), one bar per path x precision."""
        from matplotlib.figure import Figure

        from edge_mlla._env import setup_offline

        setup_offline()
        panels = [("latency ms, batch 1 (lower is better)", "latency_ms"), ("stream FPS", "stream_fps"),
                  ("throughput FPS (benchmark_app)", "throughput_fps"), ("mAP50-95", "map50_95")]  # fmt: skip
        fig = Figure(figsize=(13, 3.6))
        axes = fig.subplots(1, len(panels))
        colors = {"ultralytics": "#8c8c8c", "ours": "#1f77b4"}
        labels = [f"{r.path}\n{r.kind}" for r in self.rows]
        for ax, (title, key) in zip(axes, panels):
            vals = [getattr(r, key) or 0.0 for r in self.rows]
            ax.bar(range(len(vals)), vals, color=[colors[r.path] for r in self.rows])
            for i, (v, r) in enumerate(zip(vals, self.rows)):
                ax.text(i, v, f"{v:.3g}", ha="center", va="bottom", fontsize=8)
                if r.kind == "int8":
                    ax.patches[i].set_hatch("//")
            ax.set_xticks(range(len(vals)), labels, fontsize=8)
            ax.set_title(title, fontsize=9)
            ax.margins(y=0.15)
        fig.suptitle(f"{Path(self.settings['checkpoint']).name} at {self.settings['imgsz'][0]}: Ultralytics vs ours "
                     f"({self.machine.get('cpu')}, {(self.machine.get('cores') or {}).get('os_cpu_count')} CPUs)",
                     fontsize=10)  # fmt: skip
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        return Path(path)

    def save(self, folder: str | os.PathLike) -> dict[str, Path]:
        """Write ``vs_ultralytics.md``, ``.json`` and ``.png`` into ``folder``; returns name -> path."""
        from edge_mlla._io import ensure_writable_dir

        out = ensure_writable_dir(Path(folder))
        self.paths = {"markdown": out / "vs_ultralytics.md", "json": out / "vs_ultralytics.json",
                      "chart": out / "vs_ultralytics.png"}  # fmt: skip
        self.paths["markdown"].write_text(self.table())
        self.paths["json"].write_text(json.dumps(self.to_dict(), indent=2, default=str) + "\n")
        try:
            self.plot(self.paths["chart"])
        except ImportError:
            del self.paths["chart"]
        return self.paths
