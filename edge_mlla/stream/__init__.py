"""Run a :class:`~edge_mlla.Detector` on video streams without falling behind them, and keep them running.

:class:`StreamRunner` reads each source (camera, video file, ``rtsp://`` / ``http://`` stream, image
folder) in its own capture thread and hands out :class:`StreamResult` objects in frame order:

* **Live sources** (cameras, stream URLs) keep only their newest frame: when inference is slower than
  the camera, stale frames are dropped instead of queueing up. Files and image folders are processed
  frame by frame (``realtime=True`` replays a file at its own frame rate like a camera).
* **Inference in flight**: up to ``max_inflight`` calls are in the backend at once (OpenVINO infer
  requests in a thread pool, the ONNX Runtime pool) while the next frame is read and preprocessed.
* **Reconnect**: a live source whose read fails, raises, or stalls for ``Reconnect.watchdog`` seconds is
  reopened with capped exponential backoff; its state (``connected``, ``lost``, ``reconnecting``,
  ``gave_up``, ...) is in :attr:`StreamRunner.status` and goes to an optional ``on_status`` callback.
* **Many sources, one Detector**: sources are served round-robin; a fixed-batch model gets one batch
  per call (padded when fewer frames are ready), a dynamic-batch model one frame per source per call.
  Every result names its source, and results of one source come out in that source's order.
* **Tracking**: ``track=True`` runs ByteTrack per source (imported only then) and fills
  ``Detections.tracker_id``; :class:`LineCounter` counts line crossings with supervision's ``LineZone``.
* **Timing**: each result carries a :class:`FrameTiming` (capture, wait, preprocess, infer, postprocess,
  track, latency); :attr:`StreamRunner.stats` has the counts, per-stage means and FPS, per source too.

The package, one job per module: :mod:`~edge_mlla.stream.sources` (opening sources),
:mod:`~edge_mlla.stream.capture` (capture threads, reconnect, watchdog), :mod:`~edge_mlla.stream.runner`
(the runner), :mod:`~edge_mlla.stream.track` (tracking, line counting), :mod:`~edge_mlla.stream.records`
(results, status, timing and statistics types).

Example:
    >>> from edge_mlla import Detector
    >>> from edge_mlla.stream import StreamRunner
    >>> det = Detector("model.xml")                                       # doctest: +SKIP
    >>> with StreamRunner(det, ["rtsp://cam1/stream", 0], track=True) as run:  # doctest: +SKIP
    ...     for r in run:
    ...         print(r.source, r.index, len(r.detections), r.timing.as_ms()["latency"])
    >>> run.stats                                                         # doctest: +SKIP
    StreamStats(read=912, processed=301, dropped=611, fps=14.8, ...)
"""

from __future__ import annotations

import warnings
from typing import Any

from edge_mlla.stream.records import (
    MODES,
    STATES,
    FrameTiming,
    Reconnect,
    SourceInfo,
    SourceStatus,
    StreamResult,
    StreamStats,
)
from edge_mlla.stream.motion import MOTION_STATES, Motion, MotionDetector, MotionResult
from edge_mlla.stream.runner import StreamRunner
from edge_mlla.stream.schedule import Schedule
from edge_mlla.stream.sources import FrameSource, ImageFolderSource, SourceLike, open_source, source_name
from edge_mlla.stream.track import TRACK_INSTALL, LineCounter, Tracker

__all__ = [
    "MODES",
    "MOTION_STATES",
    "Motion",
    "MotionDetector",
    "MotionResult",
    "Schedule",
    "STATES",
    "TRACK_INSTALL",
    "FrameSource",
    "FrameTiming",
    "ImageFolderSource",
    "LineCounter",
    "Reconnect",
    "SourceInfo",
    "SourceLike",
    "SourceStatus",
    "StreamResult",
    "StreamRunner",
    "StreamStats",
    "Tracker",
    "open_source",
    "source_name",
]

_MOVED = {"CLIP": "edge_mlla.clips", "bundled_clip": "edge_mlla.clips", "pan_offset": "edge_mlla.clips",
          "make_pan_clip": "edge_mlla.clips"}  # fmt: skip


def __getattr__(name: str) -> Any:
    """The demo clip's maker moved to :mod:`edge_mlla.clips`; the old names work for one more release."""
    if name in _MOVED:
        import importlib

        warnings.warn(f"edge_mlla.stream.{name} moved to {_MOVED[name]}.{name}; the old name goes in the next release",
                      DeprecationWarning, stacklevel=2)  # fmt: skip
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module 'edge_mlla.stream' has no attribute {name!r}")
