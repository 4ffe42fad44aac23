"""Which frames go to the detector next, across sources."""

from __future__ import annotations

import collections
from collections.abc import Sequence


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
