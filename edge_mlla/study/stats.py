"""The numbers behind a study's verdict (numpy only, torch-free).

* :func:`map_of` recomputes mAP50-95 / mAP50 of one run from its per-image match statistics
  (:class:`~edge_mlla.study.records.ImageStats`), optionally on a resample of the images. With every image once it
  equals Ultralytics' validator (same ranking, same 101-point AP as :func:`edge_mlla.eval.compute_ap`, for all thresholds at once).
* :func:`bootstrap_maps` draws image resamples, shared by all runs (paired across arms), and scores every run on
  each: the matrix the image-noise term and the hierarchical bootstrap of :mod:`edge_mlla.study.verdict` read.
* Student's t distribution (:func:`t_cdf`, :func:`t_ppf`), the Welch-Satterthwaite interval (:func:`welch`) and the
  seeds a difference needs (:func:`seeds_needed`, :func:`seeds_for_width`), in plain Python so that rebuilding a
  report needs neither torch nor scipy.

Example:
    >>> round(t_ppf(0.975, 4), 4)
    2.7764
    >>> w = welch([0.50, 0.52, 0.54], [0.53, 0.55, 0.57])
    >>> round(w.diff, 3), round(w.df, 1)
    (0.03, 4.0)

Imports inside functions: a standard-library helper that one function alone needs loads when that function runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge_mlla.study.records import ImageStats, aligned

ALPHA = 0.05  # two-sided: 95% intervals
POWER = 0.8  # the usual planning power
MAX_SEEDS = 1000  # above this a difference is reported as not resolvable by seeds
_AP_X = np.linspace(0, 1, 101)  # COCO's 101 recall points, as edge_mlla.eval.compute_ap
_trapz = getattr(np, "trapezoid", None) or np.trapz  # numpy 2 renamed it


# ------------------------------------------------------------------------------------------------ mAP from stats
def map_of(st: ImageStats, weights: np.ndarray | None = None) -> tuple[float, float]:
    """(mAP50-95, mAP50) of one run; ``weights[i]`` = how many times image ``i`` is drawn (None: each once).

    A drawn-twice image contributes its predictions twice, next to each other in the ranking, exactly as if the
    image were listed twice in the dataset; mAP is the mean over classes that have ground truth, as Ultralytics'.

    Example:
        >>> st = ImageStats.from_arrays(names=["a"], img=[0], classes=[0], tp=[[True] * 10], counts=[[1]])
        >>> map_of(st)  # one perfect detection: 101-point AP of a perfect class
        (0.995, 0.995)
    """
    n_gt = st.counts.sum(0) if weights is None else np.asarray(weights, np.int64) @ st.counts
    classes = np.flatnonzero(n_gt > 0)
    ap = np.zeros((len(classes), st.tp.shape[1]))
    for row, c in enumerate(classes):
        tp_t, img = st.by_class.get(int(c), (None, None))
        if tp_t is None:
            continue
        if weights is not None:
            tp_t = tp_t[:, np.repeat(np.arange(len(img)), np.asarray(weights)[img])]
        if tp_t.shape[1]:
            ap[row] = _ap_rows(tp_t, n_gt[c])
    if not len(ap):
        return 0.0, 0.0
    return round(float(ap.mean()), 12), round(float(ap[:, 0].mean()), 12)


def _ap_rows(tp_t: np.ndarray, n_gt: int) -> np.ndarray:
    """AP at each IoU threshold of one class: :func:`edge_mlla.eval.compute_ap` (Ultralytics' 101-point AP) done
    for the 10 thresholds at once; ``tp_t`` is (10, n) in ranking order."""
    tpc = tp_t.cumsum(1, dtype=np.int32)  # int32: numpy casts bool to int64 slowly (10x)
    rows = len(tpc)
    recall = tpc / (n_gt + 1e-16)
    precision = tpc / np.arange(1, tpc.shape[1] + 1)  # tp + fp = rank
    mrec = np.concatenate([np.zeros((rows, 1)), recall, recall[:, -1:], np.ones((rows, 1))], 1)
    mpre = np.concatenate([np.ones((rows, 1)), precision, np.zeros((rows, 2))], 1)
    mpre = np.maximum.accumulate(mpre[:, ::-1], axis=1)[:, ::-1]
    curve = np.stack([np.interp(_AP_X, mrec[r], mpre[r]) for r in range(rows)])
    return _trapz(curve, _AP_X, axis=1)


def bootstrap_maps(runs: Sequence[ImageStats], reps: int, seed: int = 0) -> np.ndarray:
    """(reps, len(runs)) mAP50-95 of every run on ``reps`` resamples of the images (with replacement), the same
    resample for every run (paired). Runs are aligned by image name (:func:`~edge_mlla.study.records.aligned`).

    Example:
        >>> st = ImageStats.from_arrays(names=["a", "b"], img=[0, 1], classes=[0, 0], tp=[[True] * 10, [False] * 10],
        ...                             counts=[[1], [1]])
        >>> bootstrap_maps([st], reps=3, seed=0).shape
        (3, 1)
    """
    order = aligned(runs)
    n_img = len(runs[0].names)
    rng = np.random.default_rng(seed)
    out = np.empty((reps, len(runs)))
    for b in range(reps):
        w = np.bincount(rng.integers(0, n_img, n_img), minlength=n_img)
        for r, st in enumerate(runs):
            out[b, r] = map_of(st, w[order[r]])[0]
    return out


# ------------------------------------------------------------------------------------------- t distribution
def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz; Numerical Recipes 6.4)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        for aa in (m * (b - m) * x / ((a - 1 + 2 * m) * (a + 2 * m)),
                   -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 1 + 2 * m))):  # fmt: skip
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` (> 0, not necessarily whole) degrees of freedom."""
    t2 = t * t
    if t2 < df:  # near 0, x = df / (df + t^2) rounds to 1: use its complement, I_x(a, b) = 1 - I_(1-x)(b, a)
        tail = 0.5 * (1.0 - _betainc(0.5, df / 2.0, t2 / (df + t2)))
    else:
        tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t2))
    return 1.0 - tail if t > 0 else tail


def t_ppf(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (bisection on :func:`t_cdf`)."""
    if not 0.0 < p < 1.0 or not df > 0:
        raise ValueError(f"t_ppf needs 0 < p < 1 and df > 0, got p={p}, df={df}")
    if math.isinf(df):
        from statistics import NormalDist

        return NormalDist().inv_cdf(p)
    lo, hi = -1.0, 1.0
    while t_cdf(lo, df) > p:
        lo *= 2.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
        if hi - lo < 1e-12 * max(1.0, abs(mid)):
            break
    return 0.5 * (lo + hi)


# ----------------------------------------------------------------------------------- intervals and planning
@dataclass(frozen=True)
class Welch:
    """Difference of two means (``b - a``) with its seed-level variance and Welch-Satterthwaite df."""

    diff: float
    var: float  # s_a^2/n_a + s_b^2/n_b
    df: float
    parts: tuple[float, float]  # (s_a^2/n_a, s_b^2/n_b)
    counts: tuple[int, int]  # (n_a, n_b)
    sd_pooled: float  # within-arm seed SD, pooled over both arms

    def interval(self, extra_var: float = 0.0, alpha: float = ALPHA) -> tuple[float, float, float]:
        """(low, high, df): ``diff -/+ t(1-alpha/2, df) * sqrt(var + extra_var)``. ``extra_var`` (the image-noise
        term) is taken as known: it widens the interval and adds nothing to the Satterthwaite denominator."""
        denom = sum(v * v / (n - 1) for v, n in zip(self.parts, self.counts))
        total = self.var + extra_var
        df = total * total / denom if denom > 0 else math.inf
        half = t_ppf(1.0 - alpha / 2.0, df) * math.sqrt(total) if total > 0 else 0.0
        return self.diff - half, self.diff + half, df


def welch(a: Sequence[float], b: Sequence[float]) -> Welch:
    """Welch's comparison of the means of ``b`` and ``a`` (each at least 2 values).

    Example:
        >>> lo, hi, df = welch([1.0, 2.0, 3.0], [2.0, 4.0, 6.0]).interval()
        >>> round(lo, 3), round(hi, 3), round(df, 2)
        (-2.155, 6.155, 2.94)
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"welch needs at least 2 values per arm, got {len(a)} and {len(b)}")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    var = va + vb
    denom = va * va / (len(a) - 1) + vb * vb / (len(b) - 1)
    pooled = ((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2)
    return Welch(float(b.mean() - a.mean()), float(var), float(var * var / denom) if denom > 0 else math.inf,
                 (float(va), float(vb)), (len(a), len(b)), math.sqrt(pooled))  # fmt: skip


def seeds_needed(delta: float, sd: float, extra_var: float = 0.0, alpha: float = ALPHA, power: float = POWER) -> int | None:
    """Seeds per arm for a two-sided test at ``alpha`` to detect a true difference ``delta`` with ``power``:
    the smallest n with ``(t(1-alpha/2, 2n-2) + t(power, 2n-2)) * sqrt(2 sd^2 / n + extra_var) <= |delta|``
    (the textbook n = 2 (z_a + z_b)^2 sd^2 / delta^2, with t quantiles for small n). None: more than
    :data:`MAX_SEEDS`, or never (the image-noise term alone is larger than the difference).

    Example:
        >>> seeds_needed(0.01, 0.02)  # 2 (1.96 + 0.84)^2 * 4 = 62.8 with z; t makes it 64
        64
    """
    if delta == 0 or (extra_var > 0 and (t_ppf(1 - alpha / 2, math.inf) + t_ppf(power, math.inf)) ** 2 * extra_var >= delta**2):
        return None
    for n in range(2, MAX_SEEDS + 1):
        df = 2 * n - 2
        if (t_ppf(1 - alpha / 2, df) + t_ppf(power, df)) * math.sqrt(2 * sd * sd / n + extra_var) <= abs(delta):
            return n
    return None


def seeds_for_width(width: float, sd: float, extra_var: float = 0.0, alpha: float = ALPHA) -> int | None:
    """Seeds per arm for a ``1-alpha`` interval of the difference at most ``width`` wide (expected, for seed SD
    ``sd``): the smallest n with ``2 t(1-alpha/2, 2n-2) sqrt(2 sd^2 / n + extra_var) <= width``; None above
    :data:`MAX_SEEDS`.

    Example:
        >>> seeds_for_width(0.03, 0.02)
        15
    """
    for n in range(2, MAX_SEEDS + 1):
        if 2 * t_ppf(1 - alpha / 2, 2 * n - 2) * math.sqrt(2 * sd * sd / n + extra_var) <= width:
            return n
    return None
