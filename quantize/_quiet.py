"""Keep NNCF's and ONNX Runtime's quantizer chatter (and NNCF's progress bars) quiet unless we debug.

Imports inside functions: nncf is optional or slow to import, so it loads when the function that uses it runs.
"""

from __future__ import annotations

import logging
from typing import Any

LOGGER = logging.getLogger("edge_mlla")

_ORT_CHATTER = ("Increased scale[", "Created a copy of bias input")


class _QuietFilter(logging.Filter):
    """Drops ONNX Runtime's per-channel/per-bias quantizer INFO lines (logged on the root logger)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno <= logging.INFO and str(record.msg).startswith(_ORT_CHATTER))


class quiet_nncf:
    """NNCF logs every skipped quantizer at INFO and ORT one line per weight channel; keep both quiet unless
    edge_mlla is at DEBUG. ``progress=False`` also hides NNCF's rich progress bars: NNCF has no switch for them,
    so every ``track`` built inside the block is built with ``disable=True`` (restored on exit). That patch is
    process-wide: two quantizations in parallel threads would share it (quantize() is not meant to run so)."""

    def __init__(self, progress: bool = True) -> None:
        self._progress = progress
        self._track = self._init = None

    def __enter__(self) -> None:
        try:  # importing NNCF sets its logger to INFO: import first, then quiet it
            import nncf  # noqa: F401
        except ImportError:  # ONNX Runtime quantization without NNCF installed
            pass
        self._lg = logging.getLogger("nncf")
        self._old = self._lg.level
        self._filter = _QuietFilter()
        if not LOGGER.isEnabledFor(logging.DEBUG):
            self._lg.setLevel(logging.WARNING)
            logging.getLogger().addFilter(self._filter)
        if not self._progress:
            try:
                from nncf.common.logging.track_progress import track
            except ImportError:  # ONNX Runtime quantization without NNCF installed
                pass
            else:
                init = self._init = track.__init__

                def quiet_init(obj: Any, *args: Any, **kwargs: Any) -> None:
                    kwargs["disable"] = True
                    init(obj, *args, **kwargs)

                self._track, track.__init__ = track, quiet_init

    def __exit__(self, *exc: object) -> None:
        self._lg.setLevel(self._old)
        logging.getLogger().removeFilter(self._filter)
        if self._track is not None:
            self._track.__init__ = self._init

