"""Which frames go to the detector next, across sources: :class:`RoundRobin` (every frame, sources in turn) and, for
detect-and-track, :class:`Schedule` (the policy) with :class:`DetectScheduler` (the bookkeeping: pure, the caller
passes the time, so it runs on any clock)."""

from __future__ import annotations

import collections
from collections.abc import Sequence
from dataclasses import dataclass

from edge_mlla.errors import ConfigError

URGENT_WEIGHT = 1.5  # how much older an urgent candidate counts (see DetectScheduler.order)


class RoundRobin:
    """Takes up to ``batch`` ready frames, one source at a time in turn, so that no source gets ahead of another
    while they all have frames ready. Pure bookkeeping (no threads, no clock): the caller holds the lock.

    Example:
        >>> import collections
        >>> queues = [collections.deque("ab"), collections.deque("x"), collections.deque()]
        >>> rr = RoundRobin()
        >>> rr.take(queues, 4)
        ['a', 'x', 'b']
    """

    def __init__(self) -> None:
        self.next = 0

    def take(self, queues: Sequence[collections.deque], batch: int) -> list:
        items: list = []
        n = len(queues)
        while len(items) < batch:
            for k in range(n):
                i = (self.next + k) % n
                if queues[i]:
                    items.append(queues[i].popleft())
                    self.next = (i + 1) % n
                    break
            else:
                break
        return items


@dataclass(frozen=True)
class Schedule:
    """Detect-and-track: when a source's frame goes to the detector (``StreamRunner(schedule=Schedule(...))``).

    A source is detected at least ``min_rate`` times a second, moving or not (what the tracker carries is refreshed,
    and what the motion gate missed is found); a moving source every k-th frame, where k adapts to its objects: the
    largest k (at most ``max_every``) for which no carried object moves more than ``shift`` of its size between
    detections, and k = 1 while an object is new. Motion that no carried box explains (something came in) is detected
    at the next free slot. Frames between detections get the carried boxes (``mode="predicted"``).

    The detector is shared by priority: sources below their minimum rate first, then the source whose last detection
    is oldest (where something new moved counting 1.5 times older), so under overload every source gets a share within
    1.5x of the others' and none starves. A frame waiting for the detector
    gives way to its source's next frame (it is then carried); a live source keeps at most ``backlog`` seconds of
    frames (older ones are dropped and counted).

    Example:
        >>> Schedule(min_rate=1.0, max_every=4).min_interval
        1.0
    """

    min_rate: float = 0.5
    max_every: int = 6
    shift: float = 0.5
    backlog: float = 1.0

    def __post_init__(self) -> None:
        if not self.min_rate > 0 or int(self.max_every) < 1 or not self.shift > 0 or not self.backlog > 0:
            raise ConfigError(f"Schedule needs min_rate > 0, max_every >= 1, shift > 0 and backlog > 0 seconds, got {self}")

    @property
    def min_interval(self) -> float:
        """Seconds between two detections of a source at the minimum rate."""
        return 1.0 / self.min_rate


@dataclass
class Candidate:
    """A frame that is due for detection: its ``source``, its read time ``t``, whether its motion is ``urgent``
    (unexplained, or the whole picture changed) and the ``item`` the caller attaches (its waiting entry)."""

    source: int
    t: float
    urgent: bool = False
    item: object = None


class DetectScheduler:
    """The detector's queue across ``n`` sources (see :class:`Schedule`). Times are the frames' read times.

    Example:
        >>> sch = DetectScheduler(Schedule(min_rate=1.0), 3)
        >>> sch.due(0, t=0.0, interval=0.2, urgent=False)     # never detected: due
        True
        >>> sch.granted(0, 0.0)
        >>> sch.due(0, t=0.1, interval=0.2, urgent=False), sch.due(0, t=0.1, interval=0.2, urgent=True)
        (False, True)
        >>> [c.source for c in sch.order([Candidate(0, 2.0), Candidate(1, 2.0), Candidate(2, 2.0)])]
        [1, 2, 0]
    """

    def __init__(self, schedule: Schedule, n: int) -> None:
        self.schedule = schedule
        self.last: list[float | None] = [None] * n  # read time of each source's last detected frame
        self.count = [0] * n

    def due(self, source: int, t: float, interval: float, urgent: bool) -> bool:
        """Whether ``source``'s frame read at ``t`` should be detected (its target ``interval`` seconds have passed,
        its minimum rate needs it, it was never detected, or ``urgent``)."""
        last = self.last[source]
        return last is None or urgent or t - last >= min(interval, self.schedule.min_interval)

    def age(self, source: int, t: float) -> float:
        last = self.last[source]
        return float("inf") if last is None else t - last

    def order(self, candidates: list[Candidate]) -> list[Candidate]:
        """Candidates best first: below the minimum rate first, then the oldest last detection, an urgent one (something
        new moved) counting as 1.5 times older: it goes first among equals, yet under overload a source that is
        always urgent gets at most 1.5 times the detections of one that never is."""
        limit = self.schedule.min_interval

        def key(c: Candidate) -> tuple[int, float]:
            age = self.age(c.source, c.t)
            return (0 if age >= limit else 1, -age * (URGENT_WEIGHT if c.urgent else 1.0))

        return sorted(candidates, key=key)

    def granted(self, source: int, t: float) -> None:
        """``source``'s frame read at ``t`` went to the detector."""
        self.last[source] = t
        self.count[source] += 1
