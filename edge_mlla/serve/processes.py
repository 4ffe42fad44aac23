"""The processes of the Ray instance :func:`~edge_mlla.serve.run` starts, and how they all stop.

``ray.shutdown()`` stops the processes its node started (GCS, raylet, log monitor), but the agents the raylet
starts itself (``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) notice their parent is gone only after a
while (about a minute, issue 18), and a SIGTERM during ``ray.init`` ends in Ray's own handler, which exits
without a full clean-up. :class:`RayProcesses` watches this process's descendants from before Ray starts until
the start-up is over (a killed raylet's agents are orphaned, so they must be seen while still ours) and
:meth:`RayProcesses.reap` ends every one of them still alive: SIGTERM, then SIGKILL after ``timeout_s`` (3 s;
``ray.shutdown()`` itself gives its processes 1 s after SIGTERM before SIGKILL).
Only processes that appeared below this process after :meth:`start` are touched, each by its pid and start
time (psutil checks both, so a reused pid is never hit).

Imports inside functions: psutil loads only when processes are watched (it may come from Ray's own copy, importable
only after Ray).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

LOGGER = logging.getLogger("edge_mlla.serve")


def _psutil() -> Any:
    try:
        import psutil  # Ray ships it (ray/thirdparty_files) when the environment has none
    except ImportError:  # pragma: no cover
        return None
    return psutil


class RayProcesses:
    """Descendants of this process that appeared after :meth:`start` (the Ray instance it starts).

    Example:
        >>> procs = RayProcesses(poll_s=0.05).start()
        >>> procs.stop_watching(); procs.reap()
        0
    """

    def __init__(self, poll_s: float = 0.25) -> None:
        self.poll_s = poll_s
        self._ps = _psutil()
        self._before: set[int] = set()
        self._seen: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def _children(self) -> list[Any]:
        if self._ps is None:
            return []
        try:
            return self._ps.Process(os.getpid()).children(recursive=True)
        except self._ps.Error:
            return []

    def start(self) -> RayProcesses:
        """Note what runs now (not ours to stop) and watch for new descendants in a background thread."""
        self._before = {p.pid for p in self._children()}
        self._thread = threading.Thread(target=self._watch, name="edge_mlla-ray-processes", daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._done.wait(self.poll_s):
            self.snapshot()

    def snapshot(self) -> int:
        """Record the current new descendants; returns how many are known."""
        with self._lock:
            for p in self._children():
                if p.pid not in self._before:
                    self._seen.setdefault(p.pid, p)
            return len(self._seen)

    def stop_watching(self) -> None:
        """Start-up is over: one last look, then no more polling (the set is kept for :meth:`reap`)."""
        self._done.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        self.snapshot()

    def alive(self) -> list[Any]:
        """The recorded processes still running (same pid and start time)."""
        out = []
        for p in list(self._seen.values()):
            try:
                if p.is_running() and p.status() != self._ps.STATUS_ZOMBIE:
                    out.append(p)
            except self._ps.Error:
                continue
        return out

    def reap(self, timeout_s: float = 3.0) -> int:
        """SIGTERM every recorded process still alive, SIGKILL those left after ``timeout_s``; returns how many
        had to be stopped here (0 when Ray's own shutdown stopped them all)."""
        self.stop_watching()
        left = self.alive()
        if not left or self._ps is None:
            return 0
        for p in left:
            try:
                p.terminate()
            except self._ps.Error:
                pass
        _, still = self._ps.wait_procs(left, timeout=timeout_s)
        for p in still:
            try:
                p.kill()
            except self._ps.Error:
                pass
        self._ps.wait_procs(still, timeout=timeout_s)
        LOGGER.debug("stopped %d Ray process(es) left after shutdown: %s", len(left), [p.pid for p in left])
        return len(left)


__all__ = ["RayProcesses"]
