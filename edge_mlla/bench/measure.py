"""The one measuring module: latency of a call, throughput with requests in flight, and interleaved rounds.

Used by ``edge-mlla bench`` (Detector cells, the conv peak, the comparison with Ultralytics), by ``quantize``
(ranking INT8 candidates, :mod:`edge_mlla.quantize.measure`) and by ``serve``; torch-free and runtime-free: it
times callables, so anything with ``infer``/``submit`` (a backend, a :class:`~edge_mlla.Detector`, a remote
client) is measured the same way.

* :func:`call_times_ms` -- milliseconds of each of ``runs`` calls after ``warmup`` ones (from
  :mod:`edge_mlla.runtimes.base`, where the runtimes' own scripts reach it);
* :func:`summarize_ms` -- median and p90 of such a list;
* :func:`throughput` -- images per second with ``inflight`` requests kept in flight through a
  ``submit() -> Future`` callable, for ``n`` images or ``seconds``;
* :func:`requests_in_flight` -- how many requests an object (Detector or backend) wants in flight;
* :func:`interleaved` -- run several measurements in rounds (1, 2, ..., then again, the start rotating), so
  whatever else the machine does lands on all of them; medians over rounds.

Example:
    >>> import time
    >>> from concurrent.futures import ThreadPoolExecutor
    >>> pool = ThreadPoolExecutor(2)
    >>> fps = throughput(lambda: pool.submit(time.sleep, 0.001), inflight=2, n=20)
    >>> fps > 0
    True
    >>> [round(v) for v in interleaved([lambda r: 1.0, lambda r: 2.0], rounds=3)]
    [1, 2]
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

import numpy as np

from edge_mlla.errors import ConfigError
from edge_mlla.runtimes.base import call_times_ms

__all__ = ["call_times_ms", "summarize_ms", "latency_ms", "throughput", "requests_in_flight", "interleaved"]

T = TypeVar("T")


def summarize_ms(values_ms: Sequence[float]) -> dict[str, float]:
    """``{"median", "p90"}`` of milliseconds, rounded to microseconds.

    Example:
        >>> summarize_ms([1.0, 2.0, 3.0, 4.0, 100.0])
        {'median': 3.0, 'p90': 61.6}
    """
    arr = np.asarray(values_ms, dtype=np.float64)
    return {"median": round(float(np.median(arr)), 3), "p90": round(float(np.percentile(arr, 90)), 3)}


def latency_ms(fn: Callable[[], object], runs: int, warmup: int = 5) -> float:
    """Median milliseconds of ``fn()`` over ``runs`` calls after ``warmup`` untimed ones (one call at a time).

    Example:
        >>> latency_ms(lambda: sum(range(1000)), runs=5) >= 0
        True
    """
    return statistics.median(call_times_ms(fn, runs, warmup))


def requests_in_flight(obj: Any) -> int:
    """Requests to keep in flight for full throughput: the backend's ``optimal_requests`` (OpenVINO's
    OPTIMAL_NUMBER_OF_INFER_REQUESTS or its ``jobs``, ONNX Runtime's worker pool), for a backend or an object
    holding one (``Detector.backend``); one for anything that does not say."""
    be = getattr(obj, "backend", obj)
    try:
        return max(1, int(getattr(be, "optimal_requests", 1) or 1))
    except (TypeError, ValueError):
        return 1


def throughput(submit: Callable[[], Future], *, inflight: int, n: int | None = None, seconds: float | None = None,
               warmup_rounds: int = 2, images_per_call: int = 1) -> float:  # fmt: skip
    """Images per second with ``inflight`` calls of ``submit()`` kept in flight, for ``n`` calls or ``seconds``
    (exactly one); ``warmup_rounds`` rounds of ``inflight`` calls first (every request slot warmed).

    Example:
        >>> from concurrent.futures import ThreadPoolExecutor
        >>> pool = ThreadPoolExecutor(1)
        >>> throughput(lambda: pool.submit(lambda: None), inflight=1, seconds=0.05) > 0
        True
    """
    if (n is None) == (seconds is None):
        raise ConfigError("throughput: give exactly one of n (calls) or seconds")
    if isinstance(inflight, bool) or not isinstance(inflight, int) or inflight < 1:
        raise ConfigError(f"throughput: inflight must be an int >= 1, got {inflight!r}")
    for _ in range(warmup_rounds):
        for f in [submit() for _ in range(inflight)]:
            f.result()
    pending: deque[Future] = deque()
    done = submitted = 0
    t0 = time.perf_counter()

    def more() -> bool:
        return submitted < n if n is not None else time.perf_counter() - t0 < seconds  # type: ignore[operator]

    while True:
        while len(pending) < inflight and more():
            pending.append(submit())
            submitted += 1
        if not pending:
            break
        pending.popleft().result()
        done += 1
    elapsed = time.perf_counter() - t0
    return done * images_per_call / elapsed if elapsed > 0 else float("inf")


def interleaved(measures: Sequence[Callable[[int], T]], rounds: int = 3,
                combine: Callable[[list[T]], T] | None = None) -> list[T]:  # fmt: skip
    """Call every ``measure(round_index)`` once per round, in round robin (the first one rotates each round);
    returns one combined value per measure (default: the median of its rounds' numbers).

    Interleaving is what makes several numbers one comparison on a shared machine: a burst of other load
    lands on all of them instead of on whichever was timed then.

    Example:
        >>> calls = []
        >>> interleaved([lambda r: calls.append(("a", r)) or 1.0, lambda r: calls.append(("b", r)) or 2.0], rounds=2)
        [1.0, 2.0]
        >>> calls
        [('a', 0), ('b', 0), ('b', 1), ('a', 1)]
    """
    if rounds < 1:
        raise ConfigError(f"rounds must be >= 1, got {rounds}")
    got: list[list[T]] = [[] for _ in measures]
    k = len(measures)
    for r in range(rounds):
        start = r % k if k else 0
        for i in list(range(start, k)) + list(range(start)):
            got[i].append(measures[i](r))
    pick = combine or statistics.median
    return [pick(vals) for vals in got]  # type: ignore[arg-type]
