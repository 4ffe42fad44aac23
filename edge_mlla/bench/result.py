"""What a bench run produced: one :class:`Cell` per measured (or skipped) combination and the
:class:`BenchResult` that holds them with the machine, settings and derived numbers; JSON in and out.

Example:
    >>> c = Cell("ours", "detector", "openvino", "f32", (640, 640), latency_ms={"infer": {"median": 9.5, "p90": 10.0}})
    >>> c.ok, c.infer_ms()
    (True, 9.5)

Imports inside functions: our modules _io, bench.charts, bench.report pull in more than importing this module needs,
so they load when the function that uses them runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_mlla.errors import ConfigError, MissingFileError

SCHEMA = "edge_mlla.bench/1"
STAGES = ("preprocess", "infer", "postprocess", "total")


# --------------------------------------------------------------------------------------------------- results
@dataclass
class Cell:
    """One measured (or skipped) combination. ``model``: ``ours`` (MODEL) or ``stock`` (the baseline);
    ``runner``: ``detector`` (our :class:`~edge_mlla.Detector`) or ``ultralytics`` (``YOLO(file).predict``);
    ``precision``: what was asked (``f32``/``bf16``/``f16``/``int8``, ``default`` for the baseline runs);
    ``precision_run``: what the runtime reports it computed in. Times in milliseconds: ``latency_ms[stage]`` =
    ``{"median", "p90"}`` per :data:`STAGES`, ``wall_ms`` the same for the whole call measured outside it.
    ``status`` is ``ok``, ``skipped`` (with ``reason``: not possible here) or ``failed`` (with ``reason``).
    ``file``: the model file it ran (``(temporary) <path>`` for one exported into the bench's deleted temporary
    folder); ``inflight``: requests kept in flight for ``throughput_fps``; ``detections``: boxes on the image.
    """

    model: str
    runner: str
    backend: str
    precision: str
    imgsz: tuple[int, int]
    status: str = "ok"
    reason: str = ""
    file: str | None = None
    precision_run: str | None = None
    float_precision: str | None = None
    runs: int = 0
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    wall_ms: dict[str, float] = field(default_factory=dict)
    throughput_fps: float | None = None
    inflight: int | None = None
    gflops: float | None = None
    gflops_per_s: float | None = None
    pct_of_peak: float | None = None
    detections: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def key(self) -> tuple[str, str, str, str, tuple[int, int]]:
        return self.model, self.runner, self.backend, self.precision, tuple(self.imgsz)

    def infer_ms(self) -> float | None:
        return self.latency_ms.get("infer", {}).get("median") if self.ok else None


@dataclass
class BenchResult:
    """What :func:`run_bench` measured: ``cells`` (one per model x runner x backend x precision x size, skipped
    ones with their reason), ``peaks`` (GFLOP/s of a large conv per backend/precision), ``ratios`` (Detector vs
    Ultralytics, MLLA vs stock), ``scaling`` (infer time vs pixels, fitted exponent), ``verdicts`` (plain
    recommendations), ``machine`` and ``settings``.

    Example:
        >>> res = BenchResult.load("runs/bench/bench.json")  # doctest: +SKIP
        >>> print(res.table())                             # doctest: +SKIP
        >>> res.plot("runs/bench")                         # doctest: +SKIP
        [PosixPath('runs/bench/latency_stages.png'), PosixPath('runs/bench/scaling.png')]
    """

    model: dict[str, Any]
    baseline: dict[str, Any] | None
    settings: dict[str, Any]
    machine: dict[str, Any]
    cells: list[Cell] = field(default_factory=list)
    peaks: list[dict[str, Any]] = field(default_factory=list)
    ratios: list[dict[str, Any]] = field(default_factory=list)
    scaling: list[dict[str, Any]] = field(default_factory=list)
    verdicts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    # ---------------------------------------------------------------------------------------- (de)serialize
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serializable dict (schema :data:`SCHEMA`)."""
        d = {"schema": SCHEMA, **asdict(self)}
        for c in d["cells"]:
            c["imgsz"] = list(c["imgsz"])
        return d

    def to_json(self, indent: int = 2) -> str:
        """The report as JSON text (what ``bench.json`` holds)."""
        return json.dumps(self.to_dict(), indent=indent, default=json_default) + "\n"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BenchResult:
        """Rebuild a result from :meth:`to_dict` output (e.g. to re-render tables or charts from ``bench.json``)."""
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            raise ConfigError(f"not an edge-mlla bench report (expected schema {SCHEMA!r})")
        cells = [Cell(**{**c, "imgsz": tuple(c["imgsz"])}) for c in d.get("cells", [])]
        keep = {k: d[k] for k in ("model", "baseline", "settings", "machine", "peaks", "ratios", "scaling",
                                  "verdicts", "notes") if k in d}  # fmt: skip
        return cls(cells=cells, **keep)

    @classmethod
    def load(cls, path: str | os.PathLike) -> BenchResult:
        """Read a ``bench.json`` written by :meth:`save`."""
        p = Path(path)
        if not p.is_file():
            raise MissingFileError(f"bench report not found: {p}")
        try:
            return cls.from_dict(json.loads(p.read_text()))
        except json.JSONDecodeError as e:
            raise ConfigError(f"{p} is not valid JSON: {e}") from e

    # ---------------------------------------------------------------------------------------------- lookups
    def cell(self, model: str, runner: str, backend: str, precision: str, imgsz: Sequence[int]) -> Cell | None:
        """The cell with these coordinates, or None."""
        key = (model, runner, backend, precision, tuple(imgsz))
        return next((c for c in self.cells if c.key == key), None)

    # ----------------------------------------------------------------------------------------------- output
    def table(self) -> str:
        """The markdown report: set-up, verdict, latency per stage, baseline ratios, scaling, hardware limit, skips.

        Example:
            >>> print(res.table().splitlines()[0])  # doctest: +SKIP
            # edge-mlla bench: yolo11n-mlla-bccd.pt
        """
        from edge_mlla.bench.report import markdown

        return markdown(self)

    def plot(self, folder: str | os.PathLike) -> list[Path]:
        """Write ``latency_stages.png`` (median ms per stage, stacked, per cell) and ``scaling.png`` (inference ms
        vs pixels, ours vs stock, log-log) into ``folder``; returns their paths. Needs matplotlib."""
        from edge_mlla.bench.charts import plot

        return plot(self, Path(folder))

    def save(self, folder: str | os.PathLike) -> dict[str, Path]:
        """Write ``bench.json``, ``bench.md`` and the charts into ``folder`` (created); returns name -> path."""
        from edge_mlla._io import ensure_writable_dir

        out = ensure_writable_dir(Path(folder))
        paths = {"json": out / "bench.json", "markdown": out / "bench.md"}
        paths["json"].write_text(self.to_json())
        paths["markdown"].write_text(self.table())
        for p in self.plot(out):
            paths[p.stem] = p
        return paths


def json_default(o: Any) -> Any:
    """``json.dumps(default=...)`` for numpy scalars, paths and tuples."""
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")
