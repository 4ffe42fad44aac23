"""What the bench measures, parsed and checked before any slow work: sizes, backends, precisions, counts, and
:class:`MeasureOptions` (how each cell is measured), plus the small helpers every bench module shares.

Example:
    >>> parse_sizes("320,384x640"), parse_sizes(640)
    ([(320, 320), (384, 640)], [(640, 640)])
    >>> MeasureOptions.build(None, runs=5).runs
    5

Imports inside functions: tqdm is optional or slow to import; our modules modelfile, ops, runtimes pull in more than
importing this module needs, so they load when the function that uses them runs.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from edge_mlla.errors import ConfigError, MissingDependencyError

LOGGER = logging.getLogger("edge_mlla")

PEAK_CONV = (256, 80)  # 3x3 conv, channels in = out, square map side: 1x256x80x80 (7.55 GFLOP)


@dataclass(frozen=True)
class MeasureOptions:
    """How every cell is measured.

    ``runs`` timed calls after ``warmup`` untimed ones (median and p90); ``throughput_runs`` images per async
    throughput measurement (None: ``runs``; 0: none); ``ultralytics``: also run Ultralytics' ``YOLO(file).predict``
    on the same files; ``peak``: measure the conv peak GFLOP/s for the % of peak column (``peak_side``: its map
    side); ``conf`` / ``iou``: detection thresholds for our Detector and Ultralytics alike.

    Example:
        >>> MeasureOptions(runs=20, peak=False).throughput_n
        20
    """

    runs: int = 50
    warmup: int = 10
    throughput_runs: int | None = None
    ultralytics: bool = True
    peak: bool = True
    conf: float = 0.25
    iou: float = 0.45
    peak_side: int = PEAK_CONV[1]

    @property
    def throughput_n(self) -> int:
        """Images per throughput measurement (``runs`` unless ``throughput_runs`` says otherwise)."""
        return self.runs if self.throughput_runs is None else self.throughput_runs

    @classmethod
    def build(cls, base: MeasureOptions | None, **overrides: Any) -> MeasureOptions:
        """``base`` (or the defaults) with ``overrides`` by field name, checked: an unknown name or a bad count is
        a :class:`~edge_mlla.errors.ConfigError`."""
        names = {f.name for f in fields(cls)}
        bad = sorted(set(overrides) - names)
        if bad:
            raise ConfigError(f"unknown bench option(s) {', '.join(bad)}; expected some of {', '.join(sorted(names))}")
        if base is not None and not isinstance(base, cls):
            raise ConfigError(f"options must be a MeasureOptions, got {type(base).__name__}")
        opts = replace(base or cls(), **overrides)
        positive_int(opts.runs, "runs")
        positive_int(opts.warmup, "warmup", 0)
        if opts.throughput_runs is not None:
            positive_int(opts.throughput_runs, "throughput_runs", 0)
        positive_int(opts.peak_side, "peak_side")
        return opts


# ----------------------------------------------------------------------------------------------- arguments
def parse_sizes(value: Any, stride: int = 32) -> list[tuple[int, int]]:
    """``"320,640,1280"``, ``"320 640"``, ``"384x640,640"``, ``640`` or ``[320, (384, 640)]`` -> list of
    (height, width), each side a multiple of ``stride`` (:func:`edge_mlla.ops.parse_imgsz` checks each one).

    Example:
        >>> parse_sizes("320,384x640"), parse_sizes(640)
        ([(320, 320), (384, 640)], [(640, 640)])
        >>> parse_sizes("300")
        Traceback (most recent call last):
        ...
        edge_mlla.errors.ConfigError: imgsz 300x300 (height x width) is not valid: each side must be a multiple of the model's max stride 32 (e.g. 320x320)
    """
    from edge_mlla.ops import parse_imgsz

    if isinstance(value, str):
        items: list[Any] = [v for v in re.split(r"[\s,;]+", value.strip()) if v]
    elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        items = [int(value)]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ConfigError(f"imgsz must be sizes like '320,640,1280' (each N or HxW), got {value!r}")
    if not items:
        raise ConfigError("imgsz is empty; give at least one size, e.g. --imgsz 640")
    out: list[tuple[int, int]] = []
    for it in items:
        hw = parse_imgsz(it, stride=stride)
        if hw not in out:
            out.append(hw)
    return out


def parse_list(value: Any, what: str) -> list[str]:
    """A comma/space-separated string or a list of names -> the names, in order, without repeats."""
    if isinstance(value, str):
        items = [v for v in re.split(r"[\s,;]+", value.strip()) if v]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        items = [v.strip() for v in value if v.strip()]
    else:
        raise ConfigError(f"{what} must be a comma-separated string or a list of names, got {value!r}")
    if not items:
        raise ConfigError(f"{what} is empty")
    return list(dict.fromkeys(items))


def parse_backends(value: Any) -> list[str]:
    """Backend names, each one the registry knows (available here or not)."""
    from edge_mlla.runtimes import backends

    names = [v.lower() for v in parse_list(value, "backends")]
    known = backends()
    bad = [n for n in names if n not in known]
    if bad:
        raise ConfigError(f"unknown backend(s) {', '.join(map(repr, bad))}; known: {', '.join(sorted(known))}")
    return names


def parse_precisions(value: Any) -> list[str]:
    """Precision names in the one vocabulary of :mod:`edge_mlla.modelfile`."""
    from edge_mlla.modelfile import PRECISIONS, normalize_precision

    out: list[str] = []
    for v in parse_list(value, "precisions"):
        try:
            p = normalize_precision(v)
        except ConfigError:
            raise ConfigError(f"unknown precision {v!r} in precisions; expected some of {', '.join(PRECISIONS)}") from None
        if p not in out:
            out.append(p)
    return out


def positive_int(value: Any, what: str, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``, else a ConfigError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < minimum:
        raise ConfigError(f"{what} must be an int >= {minimum}, got {value!r}")
    return int(value)


def label(hw: Sequence[int]) -> str:
    """``(640, 640)`` -> ``"640"``, ``(384, 640)`` -> ``"384x640"``."""
    return str(hw[0]) if hw[0] == hw[1] else f"{hw[0]}x{hw[1]}"


# ------------------------------------------------------------------------------------------------- helpers
class _NullBar:
    def update(self, n: int = 1) -> None: ...
    def set_postfix_str(self, s: str) -> None: ...
    def close(self) -> None: ...


def require_tqdm() -> Any:
    """tqdm, or a MissingDependencyError saying how to get it."""
    try:
        from tqdm import tqdm
    except ImportError as e:
        raise MissingDependencyError("progress bars need tqdm: pip install tqdm (or pass progress=False)") from e
    return tqdm


def bar(total: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar on stderr, or one that draws nothing."""
    if not enabled:
        return _NullBar()
    return require_tqdm()(total=total, desc=desc, leave=False, dynamic_ncols=True)


@contextlib.contextmanager
def quiet(*names: str) -> Iterator[None]:
    """Third-party INFO chatter (Ultralytics' 'Loading ... for ONNX Runtime inference') off, unless we debug."""
    if LOGGER.isEnabledFor(logging.DEBUG):
        yield
        return
    loggers = [logging.getLogger(n) for n in names]
    old = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, lvl in zip(loggers, old):
            lg.setLevel(lvl)
