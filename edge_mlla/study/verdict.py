"""The verdict on each pair of arms (torch-free): is B better than A, worse, or not measurably different?

The interval. Per arm, each seed gives one score (mAP50-95 of its best.pt); the difference of the arms' means gets
a Welch-Satterthwaite t interval (unequal variances, small samples: honest with 2-4 seeds, where a bootstrap over
seeds is not: with n seeds it sees at most n distinct values and under-states the spread by (n-1)/n). On the pooled
split the interval is widened by what another sample of images would change: the arms' image-by-image difference
(:func:`image_term`, from paired resamples of the images, :func:`edge_mlla.study.stats.bootstrap_maps`, over the runs
that kept per-image statistics), added to the seed variance as a known term. So the interval speaks for new seeds
*and* new images of the same kind, not only for these 159.

A hierarchical bootstrap (resample seeds within each arm, and images, paired across arms) is computed beside it
for comparison when both arms have at least 2 runs with per-image statistics; with so few seeds it is too narrow,
so it never decides the verdict.

The words: *better* / *worse* when the 95% interval excludes 0, else *no measurable difference at this number of
seeds*; and how many seeds per arm would resolve a true difference of the observed size (80% power, two-sided 5%:
:func:`~edge_mlla.study.stats.seeds_needed`) and would make the interval 3 points wide
(:func:`~edge_mlla.study.stats.seeds_for_width`).

Example:
    >>> v = compare("A", {0: 0.51, 1: 0.55, 2: 0.53}, "B", {0: 0.52, 1: 0.56, 2: 0.57})
    >>> v.outcome, round(v.diff * 100, 1)
    ('no measurable difference', 2.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from edge_mlla.study.records import ImageStats
from edge_mlla.study.stats import bootstrap_maps, seeds_for_width, seeds_needed, welch

WIDTH = 0.03  # the interval width (mAP) a study plans for: 3 points
REPS = 200  # image resamples
INNER = 25  # seed resamples per image resample (hierarchical bootstrap)
OUTCOMES = ("better", "worse", "no measurable difference", "not enough runs")


@dataclass(frozen=True)
class ImageNoise:
    """The paired image-resample matrix of a study: ``maps[b, r]`` = mAP50-95 of run ``runs[r]`` (arm, seed) on
    image resample ``b``; ``images`` = how many images a resample draws."""

    runs: tuple[tuple[str, int], ...]
    maps: np.ndarray
    images: int

    def columns(self, arm: str) -> list[int]:
        return [i for i, (a, _) in enumerate(self.runs) if a == arm]


def image_noise(per_arm: Mapping[str, Mapping[int, ImageStats]], reps: int = REPS, seed: int = 0) -> ImageNoise | None:
    """Score every run that has per-image statistics on ``reps`` shared resamples of the images; None if no run has."""
    runs = [(a, s) for a, by_seed in per_arm.items() for s in sorted(by_seed)]
    if not runs or reps < 2:
        return None
    stats = [per_arm[a][s] for a, s in runs]
    return ImageNoise(tuple(runs), bootstrap_maps(stats, reps, seed), stats[0].n_images)


@dataclass(frozen=True)
class Verdict:
    """B minus A on one metric, with its 95% interval, the words, and the seeds it would take."""

    a: str
    b: str
    metric: str
    n_a: int
    n_b: int
    mean_a: float | None
    mean_b: float | None
    diff: float | None
    low: float | None
    high: float | None
    df: float | None
    se_seed: float | None
    se_image: float | None  # None: seed level only
    image_split: bool  # se_image is the arms' image-by-image part (True) or an upper bound (False)
    image_runs: tuple[int, int]  # runs with per-image statistics in A and B
    bootstrap: tuple[float, float] | None  # hierarchical bootstrap 95%, for comparison
    outcome: str
    sd: float | None  # within-arm seed SD (pooled over the two arms)
    seeds_needed: int | None  # per arm, to resolve a true difference of the observed size
    seeds_for_width: int | None  # per arm, for an interval WIDTH wide

    def as_dict(self) -> dict:
        return asdict(self)

    def method(self) -> str:
        """How the interval was made, in a few words."""
        if self.low is None:
            return "-"
        seed = f"Welch t on {self.n_a}+{self.n_b} seeds (df {self.df:.1f})"
        if self.se_image is None:
            return seed + ", seed level only"
        runs = f"{self.image_runs[0]}+{self.image_runs[1]} runs with per-image stats"
        what = "" if self.image_split else ", an upper bound until an arm has 2 such runs"
        return seed + f" + image noise ±{100 * self.se_image:.2f} pt ({runs}{what})"

    def sentence(self) -> str:
        """The verdict in words, e.g. ``yolo11n-mlla.yaml vs yolo11n.yaml, pooled mAP50-95: -0.4 points ...``."""
        head = f"{self.b} vs {self.a}, {self.metric} mAP50-95"
        if self.outcome == "not enough runs":
            return (f"{head}: not enough runs ({self.n_a} and {self.n_b} seeds with a {self.metric} score; an interval "
                    "needs at least 2 per arm)")  # fmt: skip
        diff, low, high = self.diff or 0.0, self.low or 0.0, self.high or 0.0
        words = {"better": f"{self.b} is better", "worse": f"{self.b} is worse",
                 "no measurable difference": "no measurable difference at this number of seeds"}[self.outcome]  # fmt: skip
        s = (f"{head}: {_pt(diff)} points (95% interval {_pt(low)} to {_pt(high)}; {self.method()}): "
             f"{words}.")  # fmt: skip
        if self.seeds_needed is None:
            s += " A difference this small is not resolvable with up to 1000 seeds per arm."
        else:
            s += f" A true difference of this size needs {self.seeds_needed} seeds per arm to resolve (80% power)."
        if self.seeds_for_width is not None:
            s += f" An interval {100 * WIDTH:.0f} points wide needs {self.seeds_for_width} per arm."
        if self.se_image is not None and not self.image_split:
            s += " (Seed counts from the seed spread alone: the image term is not yet separable.)"
        return s


def _pt(x: float) -> str:
    return f"{100 * x:+.1f}"


def compare(a: str, va: Mapping[int, float], b: str, vb: Mapping[int, float], metric: str = "pooled",
            noise: ImageNoise | None = None, seed: int = 0) -> Verdict:  # fmt: skip
    """The verdict on ``b`` minus ``a`` from per-seed scores ``{seed: mAP50-95}``; ``noise`` adds the image term
    and the hierarchical bootstrap for the runs it covers."""
    xa, xb = [va[s] for s in sorted(va)], [vb[s] for s in sorted(vb)]
    ma = float(np.mean(xa)) if xa else None
    mb = float(np.mean(xb)) if xb else None
    cols = (noise.columns(a), noise.columns(b)) if noise is not None else ([], [])
    empty = dict(low=None, high=None, df=None, se_seed=None, se_image=None, image_split=False, bootstrap=None, sd=None,
                 seeds_needed=None, seeds_for_width=None)  # fmt: skip
    if len(xa) < 2 or len(xb) < 2:
        diff = mb - ma if ma is not None and mb is not None else None
        return Verdict(a, b, metric, len(xa), len(xb), ma, mb, diff, image_runs=(len(cols[0]), len(cols[1])),
                       outcome="not enough runs", **empty)  # fmt: skip
    w = welch(xa, xb)
    var_img, split = image_term(noise.maps, cols[0], cols[1]) if noise is not None and cols[0] and cols[1] else (None, False)
    low, high, df = w.interval(var_img or 0.0)
    outcome = "better" if low > 0 else "worse" if high < 0 else "no measurable difference"
    plan_var = var_img if split and var_img is not None else 0.0  # an upper bound would make planning hopeless
    return Verdict(
        a, b, metric, len(xa), len(xb), ma, mb, w.diff, low, high, df, math.sqrt(w.var),
        None if var_img is None else math.sqrt(var_img), split, (len(cols[0]), len(cols[1])),
        _hierarchical(noise, cols, seed) if noise is not None else None, outcome, w.sd_pooled,
        seeds_needed(w.diff, w.sd_pooled, plan_var), seeds_for_width(WIDTH, w.sd_pooled, plan_var),
    )  # fmt: skip


def image_term(maps: np.ndarray, ca: Sequence[int], cb: Sequence[int]) -> tuple[float, bool]:
    """The variance another sample of images would add to B minus A beyond what the seeds already show, and whether
    it could be told apart from each run's own image noise.

    Over paired image resamples ``b``, a run's score moves by a part every run shares (cancels in B minus A), a part
    its arm shares (the arms differ image by image: this survives any number of seeds, and the seed spread, measured
    on one image set, cannot see it) and a part of its own (already inside the seed spread, which is measured on
    these images). The difference of arm means varies by ``v_d = v_arm + v_run (1/k_a + 1/k_b)`` over ``k`` runs per
    arm; within an arm, runs differ by their own part only, which gives ``v_run``. Returns ``(v_arm, True)`` when
    some arm has 2 runs, else ``(v_d, False)``: an upper bound."""
    va, vb = maps[:, list(ca)], maps[:, list(cb)]
    v_d = float((vb.mean(1) - va.mean(1)).var(ddof=1))
    dof = sum(x.shape[1] - 1 for x in (va, vb))
    if dof == 0:
        return v_d, False
    own = sum(float((x - x.mean(1, keepdims=True)).var(0, ddof=1).sum()) for x in (va, vb)) / dof
    return max(0.0, v_d - own * (1 / va.shape[1] + 1 / vb.shape[1])), True


def _hierarchical(noise: ImageNoise, cols: tuple[list[int], list[int]], seed: int) -> tuple[float, float] | None:
    """95% percentile interval of B minus A when seeds are resampled within each arm (INNER draws per image
    resample) and images are resampled, paired across arms (the rows of ``noise.maps``)."""
    ca, cb = np.asarray(cols[0]), np.asarray(cols[1])
    if len(ca) < 2 or len(cb) < 2:
        return None
    rng = np.random.default_rng(seed + 1)
    diffs = []
    for row in noise.maps:
        da = row[ca[rng.integers(0, len(ca), (INNER, len(ca)))]].mean(1)
        db = row[cb[rng.integers(0, len(cb), (INNER, len(cb)))]].mean(1)
        diffs.append(db - da)
    lo, hi = np.percentile(np.concatenate(diffs), [2.5, 97.5])
    return float(lo), float(hi)


def scores(selected: Mapping[str, Mapping[int, dict]], metric: str) -> dict[str, dict[int, float]]:
    """``{arm: {seed: mAP50-95}}`` of the records that have a ``metric`` score."""
    return {a: {s: float(r[metric][0]) for s, r in by_seed.items() if r.get(metric)} for a, by_seed in selected.items()}


def verdicts(selected: Mapping[str, Mapping[int, dict]], stats: Mapping[str, ImageStats],
             metrics: Sequence[str] = ("pooled", "val", "test"), reps: int = REPS, seed: int = 0) -> list[Verdict]:  # fmt: skip
    """A verdict for each pair of arms (B after A in the arms' order) and metric. The image term applies to the
    pooled metric, whose per-image statistics the runs keep; ``stats`` maps a record's ``per_image`` to them."""
    per_arm = {a: {s: stats[r["per_image"]] for s, r in by_seed.items() if r.get("per_image") in stats}
               for a, by_seed in selected.items()}  # fmt: skip
    noise = image_noise(per_arm, reps, seed)
    arms = list(selected)
    out = []
    for metric in metrics:
        sc = scores(selected, metric)
        for i, a in enumerate(arms):
            for b in arms[i + 1:]:
                out.append(compare(a, sc[a], b, sc[b], metric, noise if metric == "pooled" else None, seed))
    return out
