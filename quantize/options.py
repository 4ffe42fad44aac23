"""What :func:`edge_mlla.quantize.quantize` may be told, grouped: calibration, candidate selection, timing; the
two modes; and the accuracy :class:`Budget` (absolute points or relative to the float model's score).

``quantize(model, calib)`` stays simple: every field below can also be passed by name
(``quantize(m, calib, subset_size=100, budget="1%")``), or as the options objects.

Example:
    >>> Budget.parse(0.005).allowed(0.55), Budget.parse("1%").allowed(0.55)
    (0.005, 0.0055)
    >>> print(Budget.parse("1%").describe(0.55))
    1% of the float model's mAP50-95 (0.5500) = 0.55 points (relative budget)
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from edge_mlla.errors import ConfigError

MODES = ("fast", "thorough")
DEFAULT_BUDGET = 0.005  # 0.5 points of mAP50-95: the largest drop "auto" accepts
#: calibration images per mode when ``subset_size`` is not given. fast: the MinMax ranges and the drop no longer
#: change beyond this on the bundled BCCD model (benchmarks/results/bench_quantize.md, calibration sweep);
#: thorough: NNCF's own default.
SUBSET_SIZE = {"fast": 64, "thorough": 300}
#: NNCF bias correction per mode when ``bias_correction`` is not given
BIAS_CORRECTION = {"fast": "fast", "thorough": "full"}


@dataclass(frozen=True)
class Budget:
    """The largest mAP50-95 drop ``auto`` accepts: absolute (``0.005`` = 0.5 points) or relative to the float
    model's score (``Budget(0.01, relative=True)``, written ``"1%"``). On a model that scores 0.011 an absolute
    0.5 points allows a 45% loss; a relative budget scales with the model.

    Example:
        >>> Budget.parse("2%"), Budget.parse(0.01).relative
        (Budget(value=0.02, relative=True), False)
    """

    value: float = DEFAULT_BUDGET
    relative: bool = False

    @classmethod
    def parse(cls, value: Any) -> Budget:
        """A Budget, a float (absolute, in [0, 1)) or a string ``"N%"`` (relative) / ``"0.005"`` (absolute)."""
        if isinstance(value, Budget):
            return value
        if isinstance(value, str):
            m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*%\s*", value)
            if m:
                v = float(m.group(1)) / 100.0
                if not 0 <= v < 1:
                    raise ConfigError(f"a relative budget is a percentage in [0, 100), got {value!r}")
                return cls(v, relative=True)
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"budget must be an absolute mAP50-95 drop like 0.005 (0.5 points) or a relative "
                                  f"one like '1%', got {value!r}") from None  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= float(value) < 1:
            raise ConfigError(f"budget is an absolute mAP50-95 drop in [0, 1), e.g. 0.005 (0.5 points), or a relative "
                              f"one like '1%'; got {value!r}")  # fmt: skip
        return cls(float(value), relative=False)

    def allowed(self, float_map: float | None) -> float | None:
        """The absolute drop allowed for a float model scoring ``float_map`` (None: a relative budget without a
        score)."""
        if not self.relative:
            return self.value
        return None if float_map is None else self.value * float_map

    def describe(self, float_map: float | None) -> str:
        """How the budget reads in the report, naming which kind applied."""
        if not self.relative:
            return f"{self.value * 100:.2f} points (absolute budget)"
        pct = f"{self.value * 100:g}%"
        if float_map is None:
            return f"{pct} of the float model's mAP50-95 (relative budget; not scored)"
        return f"{pct} of the float model's mAP50-95 ({float_map:.4f}) = {self.value * float_map * 100:.2f} points (relative budget)"


@dataclass(frozen=True)
class CalibrationOptions:
    """Calibration: ``subset_size`` images (None: the mode's default, :data:`SUBSET_SIZE`), ``every``-th video
    frame, NNCF ``bias_correction`` (``full``/``fast``/``none``; None: the mode's), ONNX Runtime ``method``
    (``minmax``/``entropy``/``percentile``) and ``activations`` (``uint8``/``int8``/``auto``)."""

    subset_size: int | None = None
    every: int | None = None
    bias_correction: str | None = None
    method: str = "minmax"
    activations: str = "auto"


@dataclass(frozen=True)
class SelectionOptions:
    """What to try and how to choose: ``preset`` (``auto``/``mixed``/``performance``), ``scope`` (groups kept in
    float), ``budget`` (:class:`Budget`), ``max_drop`` (NNCF accuracy control), ``val`` (data.yaml or bundled name;
    ``"auto"``: the calibration dataset when it is one; None: no accuracy), ``val_split``, ``val_limit``."""

    preset: str = "auto"
    scope: str | Sequence[str] | Any | None = None
    budget: float | str | Budget = DEFAULT_BUDGET
    max_drop: float | None = None
    val: str | os.PathLike | None = "auto"
    val_split: str = "val"
    val_limit: int | None = None


@dataclass(frozen=True)
class TimingOptions:
    """Timing: ``latency_runs`` timed runs per model (0: no timing) and the inference ``threads`` (None: the
    runtime's default)."""

    latency_runs: int = 30
    threads: int | None = None


_GROUPS = (CalibrationOptions, SelectionOptions, TimingOptions)


def build_options(calibration: CalibrationOptions | None, selection: SelectionOptions | None,
                  timing: TimingOptions | None, overrides: dict[str, Any],
                  ) -> tuple[CalibrationOptions, SelectionOptions, TimingOptions]:  # fmt: skip
    """The three option groups with ``overrides`` applied by field name; an unknown name is a ConfigError that
    lists the known ones.

    Example:
        >>> cal, sel, tim = build_options(None, None, None, {"subset_size": 8, "budget": "1%", "threads": 2})
        >>> cal.subset_size, sel.budget, tim.threads
        (8, '1%', 2)
    """
    given = (calibration, selection, timing)
    for obj, cls in zip(given, _GROUPS):
        if obj is not None and not isinstance(obj, cls):
            raise ConfigError(f"expected a {cls.__name__}, got {type(obj).__name__}")
    known = {f.name: i for i, cls in enumerate(_GROUPS) for f in fields(cls)}
    bad = sorted(k for k in overrides if k not in known)
    if bad:
        raise ConfigError(f"quantize() got unknown option(s) {', '.join(bad)}; expected some of {', '.join(sorted(known))}")
    out = []
    for i, (obj, cls) in enumerate(zip(given, _GROUPS)):
        mine = {k: v for k, v in overrides.items() if known[k] == i}
        out.append(replace(obj or cls(), **mine))
    return out[0], out[1], out[2]  # type: ignore[return-value]
