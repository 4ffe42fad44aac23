"""Numerical tolerances for comparing two runs of the same model, each bound with the reason it holds.

Tests compare at the precision that *actually ran* (``backend.precision`` / ``det.precision``), never at the
host's assumed one: the same suite runs on AVX2-only CPUs (OpenVINO computes f32), AVX-512 BF16 and AMX CPUs
(OpenVINO computes bf16 by default).

* **f32, another summation order.** Two float32 computations of the same math (another kernel, thread count
  or ISA) differ by rounding only. Each rounding is at most ``u = 2**-24`` relative; a reduction of ``n``
  terms in another order moves its result by about ``sqrt(n) * u * sum|terms|`` (random-walk rounding;
  ``n * u`` is the worst case). :func:`f32_atol` takes ``8 * sqrt(n) * u * scale``, ``scale`` the output's
  largest magnitude: 8x headroom over the random-walk estimate, still ~1e-5 relative for the reductions in a
  detector (n <= ~10^4).
* **bf16.** bfloat16 keeps an 8-bit significand: ``u = 2**-8``, about 0.4% relative per rounding. Box
  coordinates of the same object typically move by that much (measured on the bundled model, BCCD val+test,
  3,003 matched boxes: median IoU 0.995 with f32, p90 0.989); thresholded decisions (NMS choosing another of
  two overlapping boxes, a score crossing ``conf``) flip for a few percent of boxes (p99 IoU 0.93, score
  differences up to 0.15). So bf16 is compared statistically: :data:`BF16_DETECTIONS`.
* **f16.** ``u = 2**-11``: the bf16 criteria hold with room to spare.
"""

from __future__ import annotations

import math

import numpy as np

UNIT_ROUNDOFF = {"f32": 2.0**-24, "f16": 2.0**-11, "bf16": 2.0**-8}

# bf16 / f16 vs f32 detections (see the module docstring for the measurement behind each number)
BF16_DETECTIONS = {
    "pair_iou": 0.5,  # a detection has a counterpart: same class, IoU >= 0.5
    "typical_iou": 0.95,  # ... and at least `typical_share` of the pairs agree to IoU >= 0.95 ...
    "typical_score": 0.03,  # ... with scores within 0.03 (about 8 bf16 roundings of a 0.5-1.0 score)
    "typical_share": 0.9,
    "margin": 0.1,  # only detections scoring at least conf + margin must have a counterpart (threshold flips)
}


def f32_atol(scale: float, n: int = 4096) -> float:
    """Absolute tolerance for two float32 computations in another order: ``8 * sqrt(n) * u * scale``.

    ``scale`` is the largest magnitude of the output, ``n`` the longest reduction behind it.

    Example:
        >>> f32_atol(1.0, 4096) < 3.1e-5
        True
    """
    return 8.0 * math.sqrt(n) * UNIT_ROUNDOFF["f32"] * float(scale)


def assert_f32_close(actual: np.ndarray, expected: np.ndarray, n: int = 4096) -> None:
    """Element-wise equality up to f32 reordering (:func:`f32_atol` at the expected output's scale)."""
    expected = np.asarray(expected, np.float64)
    atol = f32_atol(np.abs(expected).max(initial=0.0), n)
    err = np.abs(np.asarray(actual, np.float64) - expected).max(initial=0.0)
    assert err <= atol, f"max abs diff {err:.3g} > f32 reordering bound {atol:.3g} (scale {np.abs(expected).max():.3g})"


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(2)
    area = lambda x: (x[:, 2:] - x[:, :2]).clip(0).prod(1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


def pair_detections(a, b) -> list[tuple[int, int, float]]:
    """Greedy same-class pairs ``(i, j, iou)`` between two ``Detections``, highest IoU first."""
    if not len(a) or not len(b):
        return []
    iou = _box_iou(a.xyxy.astype(np.float64), b.xyxy.astype(np.float64))
    iou[a.class_id[:, None] != b.class_id[None, :]] = 0.0
    pairs, used_a, used_b = [], set(), set()
    for k in np.argsort(-iou, axis=None):
        i, j = divmod(int(k), iou.shape[1])
        if iou[i, j] < BF16_DETECTIONS["pair_iou"]:
            break
        if i not in used_a and j not in used_b:
            used_a.add(i), used_b.add(j)
            pairs.append((i, j, float(iou[i, j])))
    return pairs


def assert_detections_agree(runs: list[tuple[object, object]], precision: str, conf: float) -> dict:
    """Detections of a reduced-precision run agree with the f32 reference, over several images.

    ``runs`` is a list of ``(reduced, reference)`` Detections pairs. Every detection scoring at least
    ``conf + margin`` on either side has a counterpart; at least ``typical_share`` of the pairs agree to
    ``typical_iou`` with scores within ``typical_score``. Returns the statistics.
    """
    if precision == "f32":
        raise ValueError("f32 runs are compared exactly (tests/test_detector.py::match), not statistically")
    c = BF16_DETECTIONS
    good = total = 0
    for red, ref in runs:
        pairs = pair_detections(red, ref)
        paired_red, paired_ref = {i for i, _, _ in pairs}, {j for _, j, _ in pairs}
        for dets, paired in ((red, paired_red), (ref, paired_ref)):
            lone = [float(dets.confidence[k]) for k in range(len(dets)) if k not in paired]
            assert all(s < conf + c["margin"] for s in lone), f"{precision}: a detection at {max(lone):.3f} has no counterpart"
        for i, j, iou in pairs:
            total += 1
            good += iou >= c["typical_iou"] and abs(float(red.confidence[i]) - float(ref.confidence[j])) <= c["typical_score"]
    share = good / max(total, 1)
    assert total and share >= c["typical_share"], f"{precision}: {good}/{total} pairs within IoU/score bounds"
    return {"pairs": total, "typical_share": share}
