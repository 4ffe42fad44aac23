"""Dynamic batching for the replicas: :class:`GreedyBatcher` (``batcher="greedy"``); ``batcher="serve"`` is
Ray's own ``@serve.batch``. Plain asyncio, no Ray.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from edge_mlla.serve.config import BATCHERS


class GreedyBatcher:
    """Dynamic batching that forms a batch only when the previous batch has finished.

    ``@serve.batch`` forms batches eagerly: while one batch runs, the next is closed after
    ``batch_wait_ms`` with whatever arrived and then waits its turn, so on a saturated CPU replica
    batches stay near size 1 (measured: ``benchmarks/results/bench_serve.md``). This batcher, like
    Triton's dynamic batcher, takes every waiting request (up to ``max_batch``) when it is free, and
    waits up to ``wait_s`` for company only when fewer are waiting. Use it from one event loop.

    Example:
        >>> import asyncio
        >>> async def double(xs): return [2 * x for x in xs]
        >>> async def main():
        ...     b = GreedyBatcher(double, max_batch=4, wait_s=0.01)
        ...     return await asyncio.gather(*(b(i) for i in range(6)))
        >>> asyncio.run(main())
        [0, 2, 4, 6, 8, 10]
    """

    def __init__(self, fn: Callable[[list[Any]], Any], max_batch: int, wait_s: float) -> None:
        self.fn, self.max_batch, self.wait_s = fn, int(max_batch), float(wait_s)
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None

    async def __call__(self, item: Any) -> Any:
        loop = asyncio.get_running_loop()
        if self._queue is None:
            self._queue = asyncio.Queue()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run())
        fut = loop.create_future()
        self._queue.put_nowait((item, fut))
        return await fut

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        queue = self._queue
        while True:
            batch = [await queue.get()]
            deadline = loop.time() + self.wait_s
            while len(batch) < self.max_batch:
                if not queue.empty():
                    batch.append(queue.get_nowait())
                    continue
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
            live = [(x, f) for x, f in batch if not f.done()]  # callers that gave up are skipped
            if not live:
                continue
            try:
                results = await self.fn([x for x, _ in live])
            except Exception as e:  # one failure fails this batch's callers, not the loop
                for _, f in live:
                    if not f.done():
                        f.set_exception(e)
                continue
            for (_, f), r in zip(live, results):
                if not f.done():
                    f.set_result(r)


__all__ = ["BATCHERS", "GreedyBatcher"]
