"""What the stream layer hands out and reports: reconnect policy, source status and info, per-frame timing,
results and statistics (plain frozen dataclasses, no threads, no OpenCV)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge_mlla.errors import ConfigError
from edge_mlla.results import Detections

#: every value :attr:`SourceStatus.state` takes
STATES = ("connecting", "connected", "lost", "reconnecting", "gave_up", "ended", "stopped")


@dataclass(frozen=True)
class Reconnect:
    """How a live source is opened, and reopened when it fails: capped exponential backoff and a stall watchdog.

    Attempt ``k`` (1, 2, ...) waits ``min(max_delay, initial * factor ** (k - 1))`` seconds before opening
    the source again; after ``max_tries`` failed attempts in a row (None: never) the source gives up. A
    source that delivers no frame for ``watchdog`` seconds (None: no watchdog) counts as lost. The try
    count starts again at the first frame read after a reconnect. Opening a URL waits at most
    ``open_timeout`` seconds and a read at most ``read_timeout`` (None: OpenCV's defaults).

    Example:
        >>> [Reconnect(initial=0.5, max_delay=3).delay(k) for k in (1, 2, 3, 4, 5)]
        [0.5, 1.0, 2.0, 3.0, 3.0]
    """

    initial: float = 0.5
    factor: float = 2.0
    max_delay: float = 10.0
    max_tries: int | None = 10
    watchdog: float | None = 5.0
    open_timeout: float | None = 10.0
    read_timeout: float | None = 5.0

    def __post_init__(self) -> None:
        if not (self.initial >= 0 and self.max_delay >= 0 and self.factor >= 1):
            raise ConfigError(f"Reconnect needs initial >= 0, max_delay >= 0 and factor >= 1, got {self}")
        if self.max_tries is not None and int(self.max_tries) < 1:
            raise ConfigError(f"Reconnect.max_tries must be >= 1 or None (retry forever), got {self.max_tries}")
        if self.watchdog is not None and not self.watchdog > 0:
            raise ConfigError(f"Reconnect.watchdog must be > 0 seconds or None, got {self.watchdog}")
        for name in ("open_timeout", "read_timeout"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"Reconnect.{name} must be > 0 seconds or None, got {value}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before reopen attempt ``attempt`` (1-based)."""
        return float(min(self.max_delay, self.initial * self.factor ** max(0, attempt - 1)))


@dataclass(frozen=True)
class SourceStatus:
    """The connection state of one source, as :attr:`StreamRunner.status` and ``on_status`` give it.

    ``state`` is one of :data:`STATES`: ``connecting`` (opened, no frame yet), ``connected`` (frames
    arrive), ``lost`` (a read failed, raised or stalled; ``error`` says which), ``reconnecting`` (reopen
    attempt ``attempts`` in ``retry_in`` seconds), ``gave_up`` (``attempts`` reopen tries failed),
    ``ended`` (a file or a source that cannot be opened again has no more frames) or ``stopped``.
    ``reconnects`` counts successful reconnects; ``since`` is the runner clock's time of the change;
    ``note`` says what is odd about the frames themselves while connected (``"resolution changed
    640x480 -> 320x240"``, ``"all-black frames"``, ``"all motion (camera moved?)"``), else None.

    Example:
        >>> str(SourceStatus(0, "camera 0", "reconnecting", attempts=2, retry_in=1.0))
        'source 0 (camera 0): reconnecting, try 2 in 1.0 s'
    """

    source: int
    name: str
    state: str
    attempts: int = 0
    reconnects: int = 0
    retry_in: float | None = None
    error: str | None = None
    since: float = 0.0
    note: str | None = None

    def __str__(self) -> str:
        text = f"source {self.source} ({self.name}): {self.state}"
        if self.state == "reconnecting":
            text += f", try {self.attempts} in {self.retry_in:.1f} s"
        elif self.state == "gave_up":
            text += f" after {self.attempts} tries"
        text += f" ({self.error})" if self.error else ""
        return text + (f" [{self.note}]" if self.note else "")


@dataclass(frozen=True)
class SourceInfo:
    """What the runner knows about one source: its name, whether it is live, its nominal frame rate."""

    index: int
    name: str
    live: bool
    drop_stale: bool
    fps: float


@dataclass(frozen=True)
class FrameTiming:
    """Seconds one frame spent per stage.

    ``capture``: the source's ``read()`` (decode; for a camera it includes waiting for the frame);
    ``wait``: read -> handed to the detector (queued behind inference); ``preprocess`` / ``infer`` /
    ``postprocess``: the detector's :class:`~edge_mlla.results.Timing`, divided by the frames of the
    batch it ran in (``batch``); ``infer`` includes waiting for a free infer request; ``track``:
    the tracker update; ``latency``: read -> result handed out. A frame that was not sent to the detector
    (motion gating, or boxes carried by the tracker) has zero ``preprocess`` / ``infer`` / ``postprocess``.

    Example:
        >>> FrameTiming(0.002, 0.0, 0.003, 0.040, 0.001, 0.0, 0.050).as_ms()["infer"]
        40.0
    """

    capture: float = 0.0
    wait: float = 0.0
    preprocess: float = 0.0
    infer: float = 0.0
    postprocess: float = 0.0
    track: float = 0.0
    latency: float = 0.0
    batch: int = 1

    STAGES = ("capture", "wait", "preprocess", "infer", "postprocess", "track", "latency")

    def as_ms(self) -> dict[str, float]:
        """Stage -> milliseconds."""
        return {k: 1000.0 * getattr(self, k) for k in self.STAGES}


#: how a result's boxes were made (:attr:`StreamResult.mode`)
MODES = ("detected", "regions", "predicted", "gated")


@dataclass(frozen=True)
class StreamResult:
    """One processed frame: the BGR ``frame``, its ``detections``, its ``index`` in its source, when it was
    read (``timestamp``, the runner's clock), ``latency`` seconds from read to result, which ``source``
    (index into the runner's sources, and its ``source_name``) and the per-stage ``timing``.

    ``mode`` says where the boxes come from: ``detected`` (the detector ran on the whole frame), ``regions``
    (it ran on the frame's motion regions; boxes outside them carried over), ``predicted`` (not detected this
    frame: the boxes are the tracker's prediction) or ``gated`` (no motion: the last boxes carried over).
    Per box, ``detections.data["predicted"]`` (when present) is True for a carried or predicted box.
    """

    frame: np.ndarray
    detections: Detections
    index: int
    timestamp: float
    latency: float
    source: int = 0
    source_name: str = ""
    timing: FrameTiming = field(default_factory=FrameTiming)
    mode: str = "detected"


@dataclass(frozen=True)
class StreamStats:
    """Frames ``read`` from the source(s), ``processed``, ``dropped`` as stale; processed frames per second
    since iteration started (``fps`` over ``elapsed`` seconds); ``reconnects``; mean milliseconds per
    stage (``stages_ms``, keys of :attr:`FrameTiming.STAGES`); ``sources``: the same per source.

    With motion gating or detect-and-track scheduling, ``detected`` frames went through the detector
    (``regions`` of them on motion regions only), ``gated`` had no motion and ``carried`` got the tracker's
    prediction; ``detected + gated + carried == processed``.
    """

    read: int = 0
    processed: int = 0
    dropped: int = 0
    fps: float = 0.0
    reconnects: int = 0
    elapsed: float = 0.0
    stages_ms: dict[str, float] = field(default_factory=dict)
    sources: tuple[StreamStats, ...] = ()
    detected: int = 0
    gated: int = 0
    carried: int = 0
    regions: int = 0
