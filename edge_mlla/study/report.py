"""A study's report, from its records alone (torch-free): ``report.md`` (verdicts, per-arm summary, every run),
``verdicts.json`` and ``study.png`` (per-seed points and intervals per arm, and each pair's difference).

``edge-mlla study --report DIR`` and :func:`report` rebuild all three from ``DIR/records.jsonl`` and
``DIR/perimage/``; :func:`edge_mlla.study.study` writes the same after every finished run.

Example:
    >>> rep = report("benchmarks/results/study/bccd")  # doctest: +SKIP
    >>> print(rep.summary())  # doctest: +SKIP

Imports inside functions: matplotlib is optional or slow to import; our module errors pulls in more than importing
this module needs, so they load when the function that uses them runs.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edge_mlla.study.records import (RECORDS, SPLITS, ImageStats, arm_of, load_image_stats, read_records, recipe_of,
                                     select, write_atomic)  # fmt: skip
from edge_mlla.study.plan import seeds_text
from edge_mlla.study.stats import t_ppf
from edge_mlla.study.verdict import REPS, WIDTH, Verdict, verdicts

LOGGER = logging.getLogger("edge_mlla")
METHOD_DOC = "docs/accuracy.md"


@dataclass
class StudyReport:
    """What a study says: the markdown report, the verdicts, and the runs they stand on."""

    markdown: str
    verdicts: list[Verdict]
    selected: dict[str, dict[int, dict]]
    aside: list[dict] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # runs that failed in this session (see their logs)

    def summary(self) -> str:
        """The pooled verdicts in words, one per line; the pairs without enough runs in one line at the end."""
        return "\n".join(_sentences(self.verdicts))


def _sentences(vs: Sequence[Verdict], metric: str = "pooled") -> list[str]:
    ours = [v for v in vs if v.metric == metric]
    short = [f"{v.b} vs {v.a} ({v.n_b}/{v.n_a})" for v in ours if v.low is None]
    tail = [f"Not enough runs with a {metric} score (at least 2 seeds per arm) for: {', '.join(short)}."] if short else []
    return [v.sentence() for v in ours if v.low is not None] + tail


def _fmt_mean(vals: Sequence[float]) -> str:
    if not vals:
        return "-"
    if len(vals) == 1:
        return f"{vals[0]:.3f}"
    m = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))
    return f"{m:.3f} ± {sd:.3f} ({min(vals):.3f}-{max(vals):.3f})"


def _recipe_line(records: Sequence[dict]) -> str:
    recipes = {json.dumps(recipe_of(r), sort_keys=True) for r in records}
    if len(recipes) != 1:
        return "**Warning: these records mix recipes** (" + "; ".join(sorted(recipes)) + "): compare with care."
    r = json.loads(recipes.pop())
    flags = ", ".join(x for x in ("amp off" if r["amp"] is False else "amp on" if r["amp"] else "",
                                  "deterministic" if r["deterministic"] else "") if x)  # fmt: skip
    return f"Recipe: data {r['data']}, imgsz {r['imgsz']}, batch {r['batch']}, {r['epochs']} epochs, {flags}."


def _command(records: Sequence[dict], selected: Mapping[str, Mapping[int, dict]]) -> str:
    """The ``edge-mlla study`` command that continues these runs (recipe from the records)."""
    models = [next(iter(s.values()))["model"] for s in selected.values() if s]
    seeds = sorted({seed for s in selected.values() for seed in s})
    r = recipe_of(records[0]) if records else {}
    return (f"edge-mlla study --models {','.join(models)} --data {r.get('data')} --seeds {seeds_text(seeds)} "
            f"--epochs {r.get('epochs')} --imgsz {r.get('imgsz')} --batch {r.get('batch')} --out DIR")


def _where(r: dict) -> str:
    dev = r.get("device")
    if not dev:
        return "-"
    what = r.get("gpu") if str(dev).startswith("cuda") else r.get("cpu")
    cores = f", {r['cores']} cores" if r.get("cores") and not str(dev).startswith("cuda") else ""
    return f"{dev} ({what}{cores})" if what else str(dev)


def _runs_table(selected: Mapping[str, Mapping[int, dict]], aside: Sequence[dict]) -> list[str]:
    lines = ["| arm | seed | val | test | pooled | best/epochs | wall min | params | GFLOPs | where | per-image | source |",
             "|---|---:|---|---|---|---|---:|---:|---:|---|---|---|"]  # fmt: skip
    rows = [(r, "") for by_seed in selected.values() for r in by_seed.values()]
    rows += [(r, " (set aside: a second run of this seed)") for r in aside]
    for r, note in rows:
        pair = {k: f"{r[k][0]:.3f} / {r[k][1]:.3f}" if r.get(k) else "-" for k in SPLITS}
        lines.append(
            f"| {arm_of(r)} | {r['seed']} | {pair['val']} | {pair['test']} | {pair['pooled']} | "
            f"{r.get('best_epoch', '-')}/{r.get('epochs', r.get('args', {}).get('epochs', '-'))} | "
            f"{r.get('wall_min', '-')} | {r.get('params', '-')} | {r.get('gflops640', '-')} | {_where(r)} | "
            f"{'yes' if r.get('per_image') else 'no'} | {r.get('source', '-')}{note} |"
        )
    return lines


def _arms_table(selected: Mapping[str, Mapping[int, dict]]) -> list[str]:
    lines = ["| arm | runs | with per-image stats | val | test | pooled |", "|---|---:|---:|---|---|---|"]
    for arm, by_seed in selected.items():
        col = {k: _fmt_mean([r[k][0] for r in by_seed.values() if r.get(k)]) for k in SPLITS}
        n_img = sum(1 for r in by_seed.values() if r.get("per_image"))
        lines.append(f"| {arm} | {len(by_seed)} | {n_img} | {col['val']} | {col['test']} | {col['pooled']} |")
    return lines


def _verdict_table(vs: Sequence[Verdict]) -> list[str]:
    lines = ["| metric | A | B | seeds A/B | mean A | mean B | B - A | 95% interval | hier. bootstrap 95% | verdict | "
             f"seeds/arm to resolve | seeds/arm for a {100 * WIDTH:.0f}-pt interval |",
             "|---|---|---|---|---:|---:|---:|---|---|---|---:|---:|"]  # fmt: skip
    pt = lambda x: "-" if x is None else f"{100 * x:+.1f}"  # noqa: E731
    mean = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
    for v in vs:
        ci = "-" if v.low is None else f"{pt(v.low)} to {pt(v.high)}"
        boot = "-" if v.bootstrap is None else f"{pt(v.bootstrap[0])} to {pt(v.bootstrap[1])}"
        need = "-" if v.low is None else (str(v.seeds_needed) if v.seeds_needed else "> 1000")
        lines.append(f"| {v.metric} | {v.a} | {v.b} | {v.n_a}/{v.n_b} | {mean(v.mean_a)} | {mean(v.mean_b)} | "
                     f"{pt(v.diff)} | {ci} | {boot} | {v.outcome} | {need} | {v.seeds_for_width or '-'} |")  # fmt: skip
    return lines


def _notes(records: Sequence[dict], selected: Mapping[str, Mapping[int, dict]]) -> list[str]:
    used = [r for by_seed in selected.values() for r in by_seed.values()]
    no_img = [f"{arm_of(r)} s{r['seed']}" for r in used if not r.get("per_image")]
    no_pool = [f"{arm_of(r)} s{r['seed']}" for r in used if not r.get("pooled")]
    out = []
    if no_img:
        out.append(f"- Without per-image statistics (imported; their weights are gone): {', '.join(no_img)}. They enter "
                   "the verdicts at seed level only; the image-noise term comes from the runs that have them.")  # fmt: skip
    if no_pool:
        out.append(f"- Without a pooled score: {', '.join(no_pool)}. They count in the val and test verdicts only.")
    return out


def build_report(records: Sequence[dict], stats: Mapping[str, ImageStats], arms: Sequence[str] | None = None,
                 reps: int = REPS, seed: int = 0) -> StudyReport:  # fmt: skip
    """The report of ``records`` (and the per-image statistics of those that have them, keyed by ``per_image``):
    a pure function of its inputs, so a report rebuilt from disk equals the one made when the runs finished."""
    selected, aside = select(records, arms)
    vs = verdicts(selected, stats, reps=reps, seed=seed)
    pooled = [v for v in vs if v.metric == "pooled"]
    md = ["# Study: seed-controlled A/B training", "", _recipe_line(records),
          "Scores: Ultralytics' validator on best.pt (batch 32, rect, the training imgsz), mAP50-95 / mAP50; "
          "pooled = val and test scored as one set.",
          f"Runs: `{_command(records, selected)}`; rebuild this report: `edge-mlla study --report DIR`. "
          f"Method: {METHOD_DOC}.", "", "## Verdicts (B minus A, mAP50-95 in points)", ""]  # fmt: skip
    other = [v for v in vs if v.metric != "pooled" and v.low is not None]
    md += [f"- {line}" for line in _sentences(vs)] + [""] + _verdict_table(pooled) + [""]
    if other:
        md += ["Val and test on their own (seed level only; pairs with at least 2 seeds per arm):", ""]
        md += _verdict_table(other) + [""]
    md += ["## Per arm: mean ± sample SD over seeds (min-max), mAP50-95", ""] + _arms_table(selected) + [""]
    md += ["## Runs", ""] + _runs_table(selected, aside) + [""] + _notes(records, selected)
    return StudyReport("\n".join(md).rstrip() + "\n", vs, {a: dict(s) for a, s in selected.items()}, list(aside))


def report(out: str | os.PathLike, arms: Sequence[str] | None = None, reps: int = REPS, seed: int = 0,
           plot: bool = True, write: bool = True) -> StudyReport:  # fmt: skip
    """Rebuild a study's report from ``out/records.jsonl`` and ``out/perimage/`` and write ``report.md``,
    ``verdicts.json`` and (``plot``) ``study.png`` into ``out``; ``write=False`` only returns it (to read a
    verdict, or a subset of arms, without replacing the study's own report).

    Example:
        >>> print(report("benchmarks/results/study/bccd").summary())  # doctest: +SKIP
    """
    from edge_mlla.errors import MissingFileError

    records = read_records(out)
    if not records:
        raise MissingFileError(f"no study records in {out} (looked for {Path(out) / RECORDS})")
    rep = build_report(records, load_image_stats(out, records), arms, reps, seed)
    if write:
        write_report(out, rep, plot)
    return rep


def write_report(out: str | os.PathLike, rep: StudyReport, plot: bool = True) -> None:
    """``report.md``, ``verdicts.json`` and (``plot``) ``study.png`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "report.md", rep.markdown)
    write_atomic(out / "verdicts.json", json.dumps([v.as_dict() for v in rep.verdicts], indent=1) + "\n")
    if plot:
        try:
            plot_study(rep, out / "study.png")
        except ImportError:
            LOGGER.warning("study.png not drawn: matplotlib is not installed (pip install matplotlib)")


def plot_study(rep: StudyReport, path: str | os.PathLike, metric: str = "pooled") -> Path:
    """Left: each arm's per-seed scores (filled: with per-image statistics, hollow: seed level only) and its mean
    with a 95% t interval; right: each pair's difference with the verdict's interval (thick) and the hierarchical
    bootstrap's (thin). Falls back to val when no run has a pooled score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not any(r.get(metric) for s in rep.selected.values() for r in s.values()):
        metric = "val"
    arms = list(rep.selected)
    pairs = [v for v in rep.verdicts if v.metric == metric and v.low is not None]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [1.2, 1]})
    for i, arm in enumerate(arms):
        recs = [r for r in rep.selected[arm].values() if r.get(metric)]
        ys = [100 * r[metric][0] for r in recs]
        for j, (r, y) in enumerate(zip(recs, ys)):
            x = i - 0.15 + 0.3 * (j + 0.5) / max(len(recs), 1)
            ax.scatter(x, y, s=36, color="C0", facecolors="C0" if r.get("per_image") else "none", zorder=3)
        if len(ys) >= 2:
            m, sd = sum(ys) / len(ys), math.sqrt(sum((y - sum(ys) / len(ys)) ** 2 for y in ys) / (len(ys) - 1))
            half = t_ppf(0.975, len(ys) - 1) * sd / math.sqrt(len(ys))
            ax.errorbar(i + 0.25, m, yerr=half, fmt="s", color="C3", capsize=4)
    ax.set_xticks(range(len(arms)), [a.removesuffix(".yaml") for a in arms], rotation=20, ha="right")
    ax.set_ylabel(f"{metric} mAP50-95 (points)")
    ax.set_title("per seed (hollow: no per-image stats); mean ± 95% t interval")
    for k, v in enumerate(pairs):
        d, lo, hi = 100 * (v.diff or 0.0), 100 * (v.low or 0.0), 100 * (v.high or 0.0)
        bx.errorbar(d, k, xerr=[[d - lo], [hi - d]], fmt="o", color="C3", capsize=4, lw=2,
                    label="95% interval of the verdict" if k == 0 else None)  # fmt: skip
        if v.bootstrap is not None:
            bx.plot([100 * v.bootstrap[0], 100 * v.bootstrap[1]], [k + 0.2, k + 0.2], color="C7", lw=1,
                    label="hierarchical bootstrap (too narrow at few seeds)" if k == 0 else None)  # fmt: skip
    if not pairs:
        bx.text(0.5, 0.5, "no pair has 2 seeds per arm yet", ha="center", transform=bx.transAxes)
    else:
        bx.legend(fontsize=7, loc="best")
    bx.axvline(0, color="k", lw=0.8)
    bx.set_yticks(range(len(pairs)), [f"{v.b.removesuffix('.yaml')} - {v.a.removesuffix('.yaml')}\n{v.outcome}"
                                      for v in pairs], fontsize=7)  # fmt: skip
    bx.set_xlabel(f"difference in {metric} mAP50-95 (points), 95% interval")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return write_atomic(path, buf.getvalue())
