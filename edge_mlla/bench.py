"""``edge-mlla bench``: latency per stage, async throughput, resolution scaling and % of hardware peak of a model
over backends x precisions x input sizes, next to a stock YOLO11n baseline measured in the same run.

:func:`run_bench` takes a ``.pt`` checkpoint (exported to ONNX / OpenVINO IR at each size into a temporary folder)
or an exported ``.onnx`` / ``.xml`` (then its own input size, or the asked sizes when its input is dynamic) and,
for every backend x precision x size cell:

* runs ``Detector(file)(image)`` ``runs`` times after ``warmup`` calls on one fixed, realistic image (a BCCD test
  image resized so its long side is the input size) and keeps the median and p90 of every stage of
  :class:`~edge_mlla.results.Timing` (``preprocess``, ``infer``, ``postprocess``, ``total``) and of the wall time;
* measures async throughput: images per second with ``Detector.submit()`` keeping the backend's optimal number of
  requests in flight (OpenVINO with the ``throughput`` hint);
* ``int8`` cells quantize the float export with a small calibration subset of the bundled BCCD train split
  (``calib_size`` images, 32 by default), or use ``int8=FILE``.

The baseline is stock Ultralytics YOLO11n (``yolo11n.yaml`` built offline with the same classes, random weights:
speed does not depend on them), exported the same way and run through our ``Detector`` and through Ultralytics'
own ``YOLO(file).predict`` (whose ``results[0].speed`` per-stage milliseconds are kept too), each at its default
precision. Cells that share a backend and size are measured interleaved (round robin), so background load hits
them alike; the ratios (our Detector / Ultralytics predict end to end on the same file; MLLA model / stock model
inference) are therefore the least noisy numbers of the report.

It also fits the growth exponent of inference time against pixel count (log-log least squares), compares the
model's GFLOP/s with the peak this CPU reaches in the same runtime and precision on a large 3x3 convolution, and
states plainly whether INT8 pays here (INT8 throughput vs the native float precision's, in the same run).

Example:
    >>> from edge_mlla.bench import run_bench
    >>> res = run_bench("edge_mlla/weights/yolo11n-mlla-bccd.pt", imgsz=[320, 640], runs=20)  # doctest: +SKIP
    >>> print(res.table())                                                                   # doctest: +SKIP
    >>> paths = res.save("runs/bench")      # bench.json, bench.md, latency_stages.png, scaling.png  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import math
import os
import platform
import re
import shutil
import statistics
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_mlla._version import __version__
from edge_mlla.errors import (
    BackendUnavailableError,
    ConfigError,
    EdgeMLLAError,
    InputTypeError,
    MissingDependencyError,
    MissingFileError,
    ModelFileError,
)

LOGGER = logging.getLogger("edge_mlla")

SCHEMA = "edge_mlla.bench/1"
STAGES = ("preprocess", "infer", "postprocess", "total")
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8", "avx_vnni")
DEFAULT_BACKENDS = ("openvino", "onnxruntime")
DEFAULT_PRECISIONS = ("f32", "bf16", "int8")
DEFAULT_SIZES = ((320, 320), (640, 640), (1280, 1280))
DEFAULT_BASELINE = "yolo11n"
INT8_PAYS = 1.05  # INT8 must reach this throughput ratio over the native float precision to be recommended
PEAK_CONV = (256, 80)  # 3x3 conv, channels in = out, square map side: 1x256x80x80 (7.55 GFLOP)
_ULTRALYTICS_BACKENDS = ("openvino", "onnxruntime")  # where Ultralytics' predict runs the same file
_FLOAT_KIND = {"openvino": "xml", "onnxruntime": "onnx", "cuda": "onnx", "torch": "pt"}


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
        return json.dumps(self.to_dict(), indent=indent, default=_json_default) + "\n"

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
        return _markdown(self)

    def plot(self, folder: str | os.PathLike) -> list[Path]:
        """Write ``latency_stages.png`` (median ms per stage, stacked, per cell) and ``scaling.png`` (inference ms
        vs pixels, ours vs stock, log-log) into ``folder``; returns their paths. Needs matplotlib."""
        return _plot(self, Path(folder))

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


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


# ------------------------------------------------------------------------------------------------ the machine
def describe_machine() -> dict[str, Any]:
    """CPU model, core counts, the ISA flags that matter for inference, OpenVINO's CPU capabilities, library
    versions and the date.

    Example:
        >>> m = describe_machine()
        >>> sorted(m["isa"]) == sorted(ISA_FLAGS) and m["cores"]["os_cpu_count"] >= 1
        True
    """
    cpu, flags = _cpuinfo()
    try:
        affinity: int | None = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        affinity = None
    caps: list[str] | None = None
    with contextlib.suppress(Exception):  # OpenVINO missing or no CPU plugin: capabilities unknown
        from edge_mlla.runtimes.openvino import _import_ov

        caps = [str(c) for c in _import_ov().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")]
    return {
        "cpu": cpu,
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "cores": {"os_cpu_count": os.cpu_count(), "affinity": affinity},
        "isa": {f: f in flags for f in ISA_FLAGS},
        "openvino_cpu_capabilities": caps,
        "versions": _versions(),
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "loadavg": _loadavg(),
    }


def _cpuinfo() -> tuple[str, set[str]]:
    name, flags = "", set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, val = line.partition(":")
        key = key.strip().lower()
        if not name and key in ("model name", "hardware", "cpu model"):
            name = val.strip()
        elif not flags and key in ("flags", "features"):
            flags = set(val.split())
    return name or platform.processor() or platform.machine() or "unknown", flags


def _versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {"edge_mlla": __version__}
    for dist in ("openvino", "onnxruntime", "torch", "ultralytics", "numpy", "nncf", "onnx"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    try:
        import cv2

        out["opencv"] = cv2.__version__
    except ImportError:  # pragma: no cover - a hard dependency
        out["opencv"] = None
    return out


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


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


def _parse_list(value: Any, what: str) -> list[str]:
    if isinstance(value, str):
        items = [v for v in re.split(r"[\s,;]+", value.strip()) if v]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        items = [v.strip() for v in value if v.strip()]
    else:
        raise ConfigError(f"{what} must be a comma-separated string or a list of names, got {value!r}")
    if not items:
        raise ConfigError(f"{what} is empty")
    return list(dict.fromkeys(items))


def _parse_backends(value: Any) -> list[str]:
    from edge_mlla.runtimes import backends

    names = [v.lower() for v in _parse_list(value, "backends")]
    known = backends()
    bad = [n for n in names if n not in known]
    if bad:
        raise ConfigError(f"unknown backend(s) {', '.join(map(repr, bad))}; known: {', '.join(sorted(known))}")
    return names


def _parse_precisions(value: Any) -> list[str]:
    from edge_mlla.modelfile import PRECISIONS, normalize_precision

    out: list[str] = []
    for v in _parse_list(value, "precisions"):
        try:
            p = normalize_precision(v)
        except ConfigError:
            raise ConfigError(f"unknown precision {v!r} in precisions; expected some of {', '.join(PRECISIONS)}") from None
        if p not in out:
            out.append(p)
    return out


def _positive_int(value: Any, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < minimum:
        raise ConfigError(f"{what} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _label(hw: Sequence[int]) -> str:
    return str(hw[0]) if hw[0] == hw[1] else f"{hw[0]}x{hw[1]}"


# ----------------------------------------------------------------------------------------------- the image
def default_image() -> Path:
    """The bundled BCCD image the bench runs on (first test image), else Ultralytics' ``bus.jpg``."""
    from edge_mlla.data import DATA_DIR

    test = sorted((DATA_DIR / "bccd" / "images" / "test").glob("*.jpg"))
    if test:
        return test[0]
    with contextlib.suppress(ImportError):
        import ultralytics

        bus = Path(ultralytics.__file__).parent / "assets" / "bus.jpg"
        if bus.is_file():
            return bus
    raise MissingFileError("no bench image: the bundled BCCD test images and ultralytics/assets/bus.jpg are missing")


def _image_for(base: np.ndarray, hw: tuple[int, int], resize: bool) -> np.ndarray:
    """The frame for one size: ``base`` resized (aspect kept) so its long side is the input's long side."""
    if not resize:
        return base
    import cv2

    h, w = base.shape[:2]
    r = max(hw) / max(h, w)
    size = (max(1, round(w * r)), max(1, round(h * r)))
    return cv2.resize(base, size, interpolation=cv2.INTER_LINEAR if r > 1 else cv2.INTER_AREA)


# ------------------------------------------------------------------------------------------------- helpers
class _NullBar:
    def update(self, n: int = 1) -> None: ...
    def set_postfix_str(self, s: str) -> None: ...
    def close(self) -> None: ...


def _require_tqdm() -> Any:
    try:
        from tqdm import tqdm
    except ImportError as e:
        raise MissingDependencyError("progress bars need tqdm: pip install tqdm (or pass progress=False)") from e
    return tqdm


def _bar(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return _NullBar()
    return _require_tqdm()(total=total, desc=desc, leave=False, dynamic_ncols=True)


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
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


def _stats(values: Sequence[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64) * 1000.0
    return {"median": round(float(np.median(arr)), 3), "p90": round(float(np.percentile(arr, 90)), 3)}


def fit_exponent(pixels: Sequence[float], times: Sequence[float]) -> float | None:
    """Growth exponent k of ``time ~ pixels**k``: least squares on log-log; None with fewer than two sizes.

    Example:
        >>> round(fit_exponent([320**2, 640**2, 1280**2], [10.0, 40.0, 160.0]), 3)
        1.0
        >>> fit_exponent([640**2], [10.0]) is None
        True
    """
    pts = [(float(p), float(t)) for p, t in zip(pixels, times) if p and t and p > 0 and t > 0]
    if len({p for p, _ in pts}) < 2:
        return None
    x = np.log([p for p, _ in pts])
    y = np.log([t for _, t in pts])
    return float(np.polyfit(x, y, 1)[0])


# ---------------------------------------------------------------------------------------- model preparation
@dataclass
class _Source:
    """What MODEL is: its kind (pt/onnx/openvino), class names, stride, and the fixed size of an exported file."""

    path: Path
    kind: str
    names: dict[int, str]
    stride: int
    static_hw: tuple[int, int] | None
    dynamic: bool
    int8: bool


def _inspect_source(model: Any) -> _Source:
    if not isinstance(model, (str, os.PathLike)):
        raise InputTypeError(f"model must be a path to a .pt, .onnx or .xml file, got {type(model).__name__}")
    p = Path(model)
    if not p.exists():
        raise MissingFileError(f"model not found: {p} (expected a .pt checkpoint or an exported .onnx / .xml)")
    if p.is_file() and p.suffix.lower() == ".pt":
        return _Source(p, "pt", {}, 32, None, False, False)  # names/stride read when the checkpoint is loaded
    from edge_mlla.modelfile import inspect_model

    mf = inspect_model(p)  # MissingFileError / ModelFileError
    info = mf.info
    hw = mf.static_hw
    return _Source(mf.path, mf.format, dict(info.names), int(info.stride or 32), hw, hw is None, mf.quantized)


class _Files:
    """Model files by (model, kind, size label); a failed preparation step leaves its reason instead."""

    def __init__(self) -> None:
        self.path: dict[tuple[str, str, str], Path] = {}
        self.error: dict[tuple[str, str, str], str] = {}

    def get(self, key: tuple[str, str, str]) -> tuple[Path | None, str]:
        if key in self.path:
            return self.path[key], ""
        return None, self.error.get(key, "no model file was prepared for this cell")


def _load_pt(path: Path) -> Any:
    from edge_mlla.nn.load import load_detector

    return load_detector(path)


def count_gflops(model: Any, sizes: Sequence[tuple[int, int]]) -> dict[str, float]:
    """GFLOPs of one batch-1 forward at each size, counted by ``torch.utils.flop_counter.FlopCounterMode``
    (2 x multiply-accumulates of convolutions and matmuls, attention matmuls included) on a ``.pt`` path or a
    loaded ``DetectionModel``. Keys are size labels (``"640"``, ``"384x640"``).

    Example:
        >>> count_gflops("edge_mlla/weights/yolo11n-mlla-bccd.pt", [(640, 640)])  # doctest: +SKIP
        {'640': 6.401}
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    m = _load_pt(Path(model)) if isinstance(model, (str, os.PathLike)) else model
    out = {}
    for hw in sizes:
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            m(torch.zeros(1, 3, *hw))
        out[_label(hw)] = round(fc.get_total_flops() / 1e9, 4)
    return out


def _build_stock(name: str, nc: int, names: dict[int, str], folder: Path) -> Path:
    """Stock Ultralytics ``name``.yaml with ``nc`` classes and random weights (seed 0), saved as a checkpoint
    our exporter and Ultralytics both load. Built offline: no weights are downloaded."""
    import edge_mlla.nn  # noqa: F401  (registers our modules; offline set-up before Ultralytics)
    from edge_mlla._env import setup_offline

    setup_offline()
    try:
        import torch
        from ultralytics.nn.tasks import DetectionModel
    except ImportError as e:
        raise MissingDependencyError(f"the stock baseline needs torch and ultralytics ({e}); pip install 'edge-mlla[train]'") from e
    cfg = name if name.endswith((".yaml", ".yml")) else f"{name}.yaml"
    torch.manual_seed(0)
    try:
        with _quiet("ultralytics"):
            model = DetectionModel(cfg, nc=nc, verbose=False)
    except Exception as e:  # FileNotFoundError for an unknown yaml, KeyError/ValueError for a malformed one
        raise ConfigError(f"baseline {name!r} is not a stock Ultralytics model yaml Ultralytics can build offline "
                          f"(e.g. yolo11n, yolo11s, yolov8n): {type(e).__name__}: {e}") from e  # fmt: skip
    model.names = dict(names)
    path = folder / f"{Path(cfg).stem}-stock.pt"
    torch.save({"model": model, "train_args": {}, "date": _dt.date.today().isoformat(), "version": "stock, random weights"},
               path)  # fmt: skip
    return path


def _calibration_images(n: int) -> list[str]:
    """``n`` BCCD train images spread evenly over the split (a list: the calibrator need not scan the folder)."""
    from edge_mlla.data import DATA_DIR

    files = sorted((DATA_DIR / "bccd" / "images" / "train").glob("*.jpg"))
    if not files:
        raise MissingFileError(f"bundled BCCD train images missing under {DATA_DIR / 'bccd'}")
    idx = np.unique(np.linspace(0, len(files) - 1, min(n, len(files))).round().astype(int))
    return [str(files[i]) for i in idx]


def _quantize(src: Path, backend: str, hw: tuple[int, int], out: Path, calib: list[str],
              progress: bool = False) -> tuple[Path, dict]:  # fmt: skip
    from edge_mlla.quantize import quantize

    if backend == "openvino":  # import NNCF before quantize() quiets its logger: importing it resets the level to INFO
        with contextlib.suppress(ImportError):
            import nncf  # noqa: F401

    report = quantize(src, calib=calib, backend=backend, subset_size=len(calib), latency_runs=0, output=out,
                      imgsz=hw, progress=progress)  # fmt: skip
    return Path(report.output), dict(report.calibration or {})


# ---------------------------------------------------------------------------------------------------- runners
class _DetectorRunner:
    """Our Detector on one file: one call = one image, stage times from its Timing."""

    runner = "detector"

    def __init__(self, cell: Cell, det: Any, image: np.ndarray) -> None:
        self.cell, self.det, self.image = cell, det, image
        self.samples: list[tuple[dict[str, float], float]] = []
        self.extra: list[dict[str, float]] = []

    def once(self) -> None:
        t0 = time.perf_counter()
        d = self.det(self.image)
        wall = time.perf_counter() - t0
        t = d.timing
        self.samples.append(({"preprocess": t.preprocess, "infer": t.infer, "postprocess": t.postprocess,
                              "total": t.total}, wall))  # fmt: skip
        self.cell.detections = len(d)

    def close(self) -> None:
        self.det.close()


class _UltralyticsRunner:
    """Ultralytics' ``YOLO(file, task="detect").predict``: stages from ``results[0].speed``, wall measured here."""

    runner = "ultralytics"

    def __init__(self, cell: Cell, yolo: Any, image: np.ndarray, conf: float, iou: float) -> None:
        self.cell, self.yolo, self.image = cell, yolo, image
        self.kw = {"imgsz": list(cell.imgsz), "conf": conf, "iou": iou, "verbose": False}
        self.samples: list[tuple[dict[str, float], float]] = []

    def once(self) -> None:
        t0 = time.perf_counter()
        r = self.yolo.predict(self.image, **self.kw)
        wall = time.perf_counter() - t0
        sp = r[0].speed
        st = {"preprocess": sp.get("preprocess", 0.0) / 1000.0, "infer": sp.get("inference", 0.0) / 1000.0,
              "postprocess": sp.get("postprocess", 0.0) / 1000.0}  # fmt: skip
        st["total"] = sum(st.values())
        self.samples.append((st, wall))
        self.cell.detections = len(r[0].boxes) if r[0].boxes is not None else 0

    def close(self) -> None:
        self.yolo = None


def _ultralytics_precision(yolo: Any, backend: str) -> str:
    """What Ultralytics' runtime computes in (it sets no OpenVINO precision hint: the device default)."""
    if backend != "openvino":
        return "f32"
    with contextlib.suppress(Exception):
        for obj in (yolo.predictor.model, getattr(yolo.predictor.model, "backend", None)):
            cm = getattr(obj, "ov_compiled_model", None)
            if cm is not None:
                from edge_mlla.modelfile import normalize_precision

                got = cm.get_property("INFERENCE_PRECISION_HINT")
                return normalize_precision(got.get_type_name() if hasattr(got, "get_type_name") else str(got)) or "f32"
    return "device default"


def _inflight(det: Any) -> int:
    """Requests the backend keeps in flight for ``submit``: OpenVINO's OPTIMAL_NUMBER_OF_INFER_REQUESTS (or its
    ``jobs``), ONNX Runtime's worker pool size, else one."""
    be = det.backend
    return max(1, int(getattr(be, "optimal_requests", 1) or 1))


def _throughput(det: Any, image: np.ndarray, n: int) -> tuple[float, int]:
    """Images per second with ``det.submit`` keeping the backend's optimal number of requests in flight."""
    k = _inflight(det)
    for _ in range(2):  # warm every request slot
        for f in [det.submit(image) for _ in range(k)]:
            f.result()
    pending: deque = deque()
    done = submitted = 0
    t0 = time.perf_counter()
    while done < n:
        while len(pending) < k and submitted < n:
            pending.append(det.submit(image))
            submitted += 1
        pending.popleft().result()
        done += 1
    return n / (time.perf_counter() - t0), k


# ------------------------------------------------------------------------------------------------- the peak
def _peak_onnx(path: Path, channels: int, side: int, int8: bool) -> None:
    """A one-conv ONNX model (3x3, channels -> channels, pad 1) built with the onnx helper API; ``int8``: QDQ
    around it (u8 activations, symmetric s8 weights), which both runtimes execute as an INT8 convolution."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = (rng.standard_normal((channels, channels, 3, 3)) * 0.05).astype(np.float32)
    inits, nodes = [], []
    conv_in, conv_w = "x", "w"
    if int8:
        ws = np.float32(np.abs(w).max() / 127.0)
        inits += [numpy_helper.from_array(np.clip(np.round(w / ws), -127, 127).astype(np.int8), "wq"),
                  numpy_helper.from_array(np.array(ws, np.float32), "ws"),
                  numpy_helper.from_array(np.array(0, np.int8), "wz"),
                  numpy_helper.from_array(np.array(1.0 / 255.0, np.float32), "xs"),
                  numpy_helper.from_array(np.array(0, np.uint8), "xz")]  # fmt: skip
        nodes += [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
                  helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
                  helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"])]  # fmt: skip
        conv_in, conv_w = "xd", "wd"
    else:
        inits.append(numpy_helper.from_array(w, "w"))
    nodes.append(helper.make_node("Conv", [conv_in, conv_w], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
    shape = [1, channels, side, side]
    graph = helper.make_graph(nodes, "peak_conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], inits)  # fmt: skip
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edge_mlla.bench")
    onnx.checker.check_model(m)
    onnx.save(m, str(path))


def measure_peak(backend: str, precision: str, runs: int = 10, warmup: int = 3, channels: int = PEAK_CONV[0],
                 side: int = PEAK_CONV[1], folder: str | os.PathLike | None = None) -> dict[str, Any]:  # fmt: skip
    """GFLOP/s this machine reaches on a large 3x3 convolution (``channels`` -> ``channels`` on
    1 x channels x side x side) in ``backend`` at ``precision`` (``f32``/``bf16``/``f16`` hint for OpenVINO;
    ``int8``: a QDQ conv), with the runtime's default threads, median of ``runs`` after ``warmup``.

    Example:
        >>> measure_peak("openvino", "f32")["gflops_per_s"]  # doctest: +SKIP
        61.2
    """
    from edge_mlla.runtimes import get_backend
    from edge_mlla.runtimes.base import call_times_ms

    flop = 2.0 * channels * channels * 9 * side * side
    int8 = precision == "int8"
    with tempfile.TemporaryDirectory(prefix="edge_mlla_peak_", dir=folder) as tmp:
        path = Path(tmp) / f"conv_{'int8' if int8 else 'f32'}.onnx"
        _peak_onnx(path, channels, side, int8)
        ask = precision if backend == "openvino" and not int8 else None
        be = get_backend(backend)(path, precision=ask)
        try:
            if int8 and getattr(be, "int8", True) is False:
                raise ConfigError(f"{backend} did not run the QDQ convolution in INT8")
            x = np.random.default_rng(0).random((1, channels, side, side), dtype=np.float32)
            times = [ms / 1000.0 for ms in call_times_ms(lambda: be.infer(x), runs, warmup)]
            run_as = "int8" if int8 else getattr(be, "precision", precision)
        finally:
            be.close()
    med = statistics.median(times)
    return {"backend": backend, "precision": run_as, "gflop": round(flop / 1e9, 3), "ms": round(med * 1000, 3),
            "gflops_per_s": round(flop / med / 1e9, 2), "runs": runs,
            "conv": f"3x3 conv {channels}->{channels} on 1x{channels}x{side}x{side}" + (" (QDQ int8)" if int8 else "")}  # fmt: skip


# ---------------------------------------------------------------------------------------------- run_bench
def run_bench(
    model: str | os.PathLike,
    backends: str | Sequence[str] = DEFAULT_BACKENDS,
    precisions: str | Sequence[str] = DEFAULT_PRECISIONS,
    imgsz: Any = None,
    baseline: str | os.PathLike | None = DEFAULT_BASELINE,
    runs: int = 50,
    warmup: int = 10,
    *,
    throughput_runs: int | None = None,
    int8: str | os.PathLike | None = None,
    calib_size: int = 32,
    image: str | os.PathLike | np.ndarray | None = None,
    ultralytics: bool = True,
    peak: bool = True,
    conf: float = 0.25,
    iou: float = 0.45,
    output: str | os.PathLike | None = None,
    keep_models: bool = False,
    progress: bool = False,
    _peak_side: int = PEAK_CONV[1],
) -> BenchResult:
    """Benchmark ``model`` over backends x precisions x sizes with a stock baseline; see the module docstring.

    Args:
        model: ``.pt`` checkpoint (exported at every size) or an exported ``.onnx`` / ``.xml`` (its own size, or
            the asked sizes when its input is dynamic).
        backends: names from :func:`edge_mlla.runtimes.backends` (``"openvino,onnxruntime"`` default); one that is
            not available here gives skipped cells with the reason.
        precisions: ``f32``, ``bf16``, ``f16``, ``int8``; a precision a backend/CPU cannot run is a skipped cell.
        imgsz: sizes (``"320,640,1280"``, ``[320, (384, 640)]``); default 320, 640, 1280 for a ``.pt``.
        baseline: stock Ultralytics yaml name built offline with random weights (``"yolo11n"``), a stock ``.pt``,
            or None / ``"none"`` for no baseline.
        runs, warmup: timed calls per cell, and untimed ones before them.
        throughput_runs: images per async throughput measurement (default ``runs``; 0: no throughput).
        int8: an INT8 model to use instead of quantizing (``.xml`` for OpenVINO, QDQ ``.onnx`` for either runtime).
        calib_size: calibration images (from the bundled BCCD train split) when quantizing.
        image: the frame to run on (path or BGR array, used as is); default a BCCD test image resized per size.
        ultralytics: also run Ultralytics' ``YOLO(file).predict`` on the same files (needs ultralytics).
        peak: measure the conv peak GFLOP/s per backend/precision for the % of peak column.
        conf, iou: detection thresholds for both our Detector and Ultralytics.
        output: folder for ``bench.json``, ``bench.md`` and the charts (checked writable first); None writes none.
        keep_models: keep the exported/quantized files under ``output/models`` instead of a temporary folder.
        progress: tqdm progress bars on stderr.

    Returns:
        :class:`BenchResult`.

    Raises:
        MissingFileError, ModelFileError (MODEL), ConfigError (backends, precisions, sizes, runs, baseline),
        OutputNotWritableError, MissingDependencyError (tqdm with ``progress``, torch/ultralytics for a ``.pt``).

    Example:
        >>> res = run_bench("best.onnx", backends="onnxruntime", precisions="f32", runs=20, baseline=None)  # doctest: +SKIP
        >>> res.cell("ours", "detector", "onnxruntime", "f32", (640, 640)).latency_ms["infer"]  # doctest: +SKIP
        {'median': 41.2, 'p90': 44.0}
    """
    # ------------------------------------------------------------------ validate everything before slow work
    src = _inspect_source(model)
    backend_list = _parse_backends(backends)
    precision_list = _parse_precisions(precisions)
    runs = _positive_int(runs, "runs")
    warmup = _positive_int(warmup, "warmup", 0)
    tp_runs = runs if throughput_runs is None else _positive_int(throughput_runs, "throughput_runs", 0)
    calib_size = _positive_int(calib_size, "calib_size")
    if imgsz is None:
        if src.kind == "pt":
            sizes = list(DEFAULT_SIZES)
        elif src.static_hw:
            sizes = [src.static_hw]
        else:
            raise ConfigError(f"{src.path.name} has a dynamic input size; give the sizes to bench (imgsz=...)")
    else:
        sizes = parse_sizes(imgsz, stride=src.stride)
    if src.static_hw and any(hw != src.static_hw for hw in sizes):
        raise ConfigError(
            f"{src.path.name} has a fixed input size {_label(src.static_hw)}; bench it at that size, or give the .pt "
            f"checkpoint to export it at {', '.join(_label(s) for s in sizes)}"
        )
    base_name = _parse_baseline(baseline)
    int8_file = _inspect_int8(int8) if int8 is not None else None
    out_dir = None
    if output is not None:
        from edge_mlla._io import ensure_writable_dir

        out_dir = ensure_writable_dir(Path(output))
    if src.kind == "pt" or (isinstance(base_name, str) and base_name):
        _need_torch(src.kind == "pt", base_name)
    if isinstance(image, np.ndarray):
        from edge_mlla.ops import as_bgr

        base_img, image_desc, resize = as_bgr(image), f"array {image.shape[1]}x{image.shape[0]}", False
    else:
        from edge_mlla.ops import read_image

        img_path = Path(image) if image is not None else default_image()
        base_img = read_image(img_path)
        image_desc, resize = str(img_path.name if image is None else img_path), image is None
    if progress:
        _require_tqdm()  # missing -> MissingDependencyError now, not after the exports

    machine = describe_machine()
    settings: dict[str, Any] = {
        "backends": backend_list, "precisions": precision_list, "imgsz": [list(s) for s in sizes],
        "runs": runs, "warmup": warmup, "throughput_runs": tp_runs, "batch": 1, "conf": conf, "iou": iou,
        "image": {"source": image_desc, "shape": list(base_img.shape[:2]),
                  "resized": "long side = input long side" if resize else "used as given"},
        "threads": "runtime defaults (all cores)", "interleaved": True,
        "int8": ({"source": "given", "file": str(int8_file)} if int8_file else
                 {"source": "quantized here", "calibration": f"{calib_size} images of the bundled BCCD train split",
                  "openvino": "NNCF post-training quantization (edge_mlla.quantize, default scope)",
                  "onnxruntime": "ONNX Runtime static QDQ (edge_mlla.quantize, default scope)"}),
    }  # fmt: skip
    notes: list[str] = []
    own_tmp = None
    if keep_models and out_dir is not None:
        work = out_dir / "models"
        work.mkdir(parents=True, exist_ok=True)
    else:
        own_tmp = work = Path(tempfile.mkdtemp(prefix="edge_mlla_bench_"))
    try:
        files, model_info, base_info = _prepare(src, backend_list, precision_list, sizes, base_name, int8_file,
                                                calib_size, work, progress, notes, settings)  # fmt: skip
        t0 = time.perf_counter()
        cells = _measure_all(src, files, backend_list, precision_list, sizes, base_img, resize, runs, warmup, tp_runs,
                             ultralytics and _has_ultralytics(), conf, iou, progress, model_info, base_info)  # fmt: skip
        if ultralytics and not _has_ultralytics():
            notes.append("Ultralytics predict not measured: ultralytics is not installed")
        LOGGER.debug("bench: measured %d cells in %.1f s", len(cells), time.perf_counter() - t0)
        t0 = time.perf_counter()
        peaks = _peaks(cells, runs, progress, _peak_side, work) if peak else []
        LOGGER.debug("bench: peaks in %.1f s", time.perf_counter() - t0)
    finally:
        if own_tmp is not None:
            shutil.rmtree(own_tmp, ignore_errors=True)
    if own_tmp is not None:  # files made in the (deleted) temporary folder: say so instead of a dangling path
        for c in cells:
            if c.file and Path(c.file).is_relative_to(own_tmp):
                c.file = f"(temporary) {Path(c.file).relative_to(own_tmp)}"
    _fill_peak_share(cells, peaks)
    machine["loadavg_end"] = _loadavg()
    res = BenchResult(model=model_info, baseline=base_info, settings=settings, machine=machine, cells=cells,
                      peaks=peaks, notes=notes)  # fmt: skip
    res.ratios = _ratios(res)
    res.scaling = _scaling(res)
    res.verdicts = _verdicts(res)
    for v in res.verdicts:
        LOGGER.info("bench: %s", v)
    if out_dir is not None:
        res.save(out_dir)
    return res


def _parse_baseline(baseline: Any) -> str | Path | bool:
    """False: no baseline; a str: a yaml name to build; a Path: a stock checkpoint."""
    if baseline is None or (isinstance(baseline, str) and baseline.strip().lower() in ("", "none", "off", "no")):
        return False
    if isinstance(baseline, os.PathLike) or (isinstance(baseline, str) and baseline.endswith(".pt")):
        p = Path(baseline)
        if not p.is_file():
            raise MissingFileError(f"baseline checkpoint not found: {p}")
        return p
    if not isinstance(baseline, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", baseline.strip()):
        raise ConfigError(f"baseline must be a stock model name like 'yolo11n', a .pt file or 'none', got {baseline!r}")
    return baseline.strip()


def _inspect_int8(path: Any) -> Path:
    from edge_mlla.modelfile import inspect_model

    if not isinstance(path, (str, os.PathLike)):
        raise InputTypeError(f"int8 must be a path to an INT8 .xml or .onnx, got {type(path).__name__}")
    mf = inspect_model(path)
    if not mf.quantized:
        raise ModelFileError(f"{mf.path.name} is not an INT8 model (no quantized ops); quantize it or leave int8 unset")
    return mf.path


def _need_torch(for_model: bool, base_name: Any) -> None:
    try:
        import torch  # noqa: F401
        import ultralytics  # noqa: F401
    except ImportError as e:
        what = "a .pt model" if for_model else f"the {base_name} baseline"
        raise MissingDependencyError(f"{what} needs torch and ultralytics ({e}): pip install 'edge-mlla[train]', "
                                     "or bench an exported .onnx/.xml with baseline='none'") from e  # fmt: skip


def _has_ultralytics() -> bool:
    try:
        import ultralytics  # noqa: F401
    except ImportError:
        return False
    return True


def _prepare(src: _Source, backends: list[str], precisions: list[str], sizes: list[tuple[int, int]],
             base_name: str | Path | bool, int8_file: Path | None, calib_size: int, work: Path, progress: bool,
             notes: list[str], settings: dict[str, Any]) -> tuple[_Files, dict[str, Any], dict[str, Any] | None]:  # fmt: skip
    """Export / quantize every file the cells need (a failed step becomes its cells' skip reason), count GFLOPs.

    Order: load MODEL, build the baseline (a bad baseline name fails here, before the slow steps), export MODEL,
    quantize it, export the baseline."""
    files = _Files()
    model_info: dict[str, Any] = {"path": str(src.path), "name": src.path.name, "kind": src.kind,
                                  "input": "dynamic" if src.dynamic else (_label(src.static_hw) if src.static_hw else None),
                                  "int8": src.int8, "gflops": {}, "gflops_method": None}  # fmt: skip
    base_info: dict[str, Any] | None = None
    float_kinds = sorted({k for k in (_float_kind(src.kind, b) for b in backends) if k})
    want_int8 = "int8" in precisions and not src.int8
    int8_backends = [b for b in backends if b in ("openvino", "onnxruntime", "cuda")] if want_int8 else []
    steps: list[tuple[str, Callable[[], None]]] = []
    loaded: dict[str, Any] = {}

    # -- MODEL: load + GFLOPs (.pt), or the exported file itself
    if src.kind == "pt":
        def load_ours() -> None:
            m = _load_pt(src.path)
            src.names = {int(k): str(v) for k, v in dict(getattr(m, "names", {}) or {}).items()}
            src.stride = int(max(int(s) for s in m.stride.tolist())) if hasattr(m, "stride") else 32
            model_info["gflops"] = count_gflops(m, sizes)
            model_info["gflops_method"] = "torch.utils.flop_counter.FlopCounterMode on the .pt, batch 1"

        steps.append(("load model, count GFLOPs", load_ours))
        files.path[("ours", "pt", "*")] = src.path
    else:
        model_info["gflops_method"] = "unknown: an exported file without its .pt"
        for hw in sizes:
            files.path[("ours", "onnx" if src.kind == "onnx" else "xml", _label(hw))] = src.path

    # -- the baseline checkpoint
    if base_name is not False:
        base_info = {"name": str(base_name) if isinstance(base_name, str) else Path(base_name).stem,
                     "weights": "random (speed only)" if isinstance(base_name, str) else str(base_name),
                     "gflops": {}, "gflops_method": "torch.utils.flop_counter.FlopCounterMode, batch 1"}  # fmt: skip

        def build_stock() -> None:
            nc = len(src.names) or 80
            names = src.names or {i: str(i) for i in range(nc)}
            if isinstance(base_name, Path):
                loaded["stock_pt"] = base_name
            else:
                (work / "stock").mkdir(parents=True, exist_ok=True)
                loaded["stock_pt"] = _build_stock(str(base_name), nc, names, work / "stock")
            m = _load_pt(loaded["stock_pt"])
            base_info["nc"] = int(getattr(m, "nc", nc) or nc)
            base_info["params"] = int(sum(p.numel() for p in m.parameters()))
            base_info["gflops"] = count_gflops(m, sizes)
            files.path[("stock", "pt", "*")] = loaded["stock_pt"]

        steps.append((f"baseline: build {base_info['name']}", build_stock))

    # -- MODEL exports
    if src.kind == "pt":
        for kind in float_kinds:
            if kind == "pt":
                continue
            for hw in sizes:
                key = ("ours", kind, _label(hw))
                steps.append((f"ours: export {kind} {_label(hw)}",
                              lambda key=key, kind=kind, hw=hw: _set(files, key, lambda: _export(src.path, kind, hw, work / "ours"))))  # fmt: skip

    # -- INT8: given, or quantized from the float export
    if int8_file is not None:
        fk = "xml" if int8_file.suffix.lower() == ".xml" else "onnx"
        mf_hw = _static_hw(int8_file)
        for hw in sizes:
            for b in int8_backends:
                key = ("ours", f"int8-{b}", _label(hw))
                if b != "openvino" and fk == "xml":
                    files.error[key] = f"{b} cannot run an OpenVINO IR ({int8_file.name}); give a QDQ .onnx as the INT8 model"
                elif mf_hw is not None and mf_hw != hw:
                    files.error[key] = f"the given INT8 model {int8_file.name} has a fixed input {_label(mf_hw)}"
                else:
                    files.path[key] = int8_file
    elif int8_backends:
        calib = _calibration_images(calib_size)
        settings["int8"]["calibration_images"] = len(calib)
        for hw in sizes:
            for b in int8_backends:
                qb = "openvino" if b == "openvino" else "onnxruntime"
                fkind = (_float_kind(src.kind, b) if b == "openvino" else "onnx") or ""

                def quant(b: str = b, qb: str = qb, fkind: str = fkind, hw: tuple[int, int] = hw) -> None:
                    key = ("ours", f"int8-{b}", _label(hw))
                    srcf, why = files.get(("ours", fkind, _label(hw)))
                    if srcf is None:
                        files.error[key] = f"no float {fkind or 'model'} file to quantize ({why})"
                        return
                    out = work / "ours" / f"int8_{qb}_{_label(hw)}"
                    _set(files, key, lambda: _quantize(srcf, qb, hw, out, calib, progress)[0])

                steps.append((f"ours: quantize {qb} {_label(hw)}", quant))

    # -- baseline exports (the same formats; one dynamic export when MODEL is dynamic)
    if base_name is not False:
        for kind in float_kinds:
            if kind == "pt":
                continue
            for hw in [sizes[0]] if src.dynamic else sizes:
                keys = [("stock", kind, _label(h)) for h in (sizes if src.dynamic else [hw])]

                def exp(kind: str = kind, hw: tuple[int, int] = hw, keys: list = keys) -> None:
                    if "stock_pt" not in loaded:
                        raise ConfigError("the baseline was not built")
                    p = _export(loaded["stock_pt"], kind, hw, work / "stock", dynamic=src.dynamic)
                    for k in keys:
                        files.path[k] = p

                steps.append((f"baseline: export {kind} {_label(hw)}", lambda exp=exp, keys=keys: _guard(files, keys, exp)))

    bar = _bar(len(steps), "bench: prepare models", progress)
    try:
        for desc, fn in steps:
            bar.set_postfix_str(desc)
            t0 = time.perf_counter()
            fn()  # loading MODEL / building the baseline raise (user input); exports and quantization record reasons
            LOGGER.debug("bench: %s: %.1f s", desc, time.perf_counter() - t0)
            bar.update(1)
    finally:
        bar.close()
    if base_info is not None:
        base_info["file_kinds"] = sorted({k for (m, k, _) in files.path if m == "stock"})
    return files, model_info, base_info


def _set(files: _Files, key: tuple[str, str, str], make: Callable[[], Path]) -> None:
    """Run one preparation step; a library error becomes the reason its cells are skipped."""
    _guard(files, [key], lambda: files.path.__setitem__(key, make()))


def _guard(files: _Files, keys: list[tuple[str, str, str]], fn: Callable[[], None]) -> None:
    try:
        fn()
    except EdgeMLLAError as e:
        LOGGER.warning("bench: %s: %s", "/".join(keys[0]), e)
        for k in keys:
            files.error[k] = f"{type(e).__name__}: {e}"


def _float_kind(src_kind: str, backend: str) -> str | None:
    """Which float file a backend runs: OpenVINO the IR (or MODEL's own .onnx), ORT/CUDA the .onnx, torch the .pt."""
    want = _FLOAT_KIND.get(backend)
    if src_kind == "pt":
        return want
    if backend == "openvino":
        return "onnx" if src_kind == "onnx" else "xml"
    if want == "onnx" and src_kind == "onnx":
        return "onnx"
    return None


def _static_hw(path: Path) -> tuple[int, int] | None:
    from edge_mlla.modelfile import inspect_model

    return inspect_model(path).static_hw


def _export(pt: Path, kind: str, hw: tuple[int, int], folder: Path, dynamic: bool = False) -> Path:
    from edge_mlla.export import export

    with _quiet("ultralytics"):
        return Path(export(pt, format="openvino" if kind == "xml" else "onnx", imgsz=hw, dynamic=dynamic,
                           output=folder / f"{kind}_{_label(hw)}"))  # fmt: skip


# -------------------------------------------------------------------------------------------------- measuring
def _measure_all(src: _Source, files: _Files, backends: list[str], precisions: list[str], sizes: list[tuple[int, int]],
                 base_img: np.ndarray, resize: bool, runs: int, warmup: int, tp_runs: int, ultralytics: bool,
                 conf: float, iou: float, progress: bool, model_info: dict, base_info: dict | None) -> list[Cell]:  # fmt: skip
    from edge_mlla.runtimes import available

    status = available()
    cells: list[Cell] = []
    groups = [(b, hw) for b in backends for hw in sizes]
    bar = _bar(len(groups) * (warmup + runs), "bench: measure", progress)
    try:
        for b, hw in groups:
            bar.set_postfix_str(f"{b} {_label(hw)}")
            img = _image_for(base_img, hw, resize)
            group = _open_group(src, files, b, hw, precisions, img, status, ultralytics, conf, iou, base_info is not None)
            cells += [c for c, _ in group]
            live = [r for _, r in group if r is not None]
            try:
                _run_interleaved(live, runs, warmup, bar)
                for r in live:
                    _summarize(r)
                for r in live:
                    if tp_runs and r.runner == "detector" and r.cell.ok:
                        bar.set_postfix_str(f"{b} {_label(hw)}: throughput {r.cell.model} {r.cell.precision}")
                        _measure_throughput(r, img, tp_runs, conf, iou, b, hw)
            finally:
                for r in live:
                    with contextlib.suppress(Exception):
                        r.close()
    finally:
        bar.close()
    gf = {"ours": model_info.get("gflops") or {}, "stock": (base_info or {}).get("gflops") or {}}
    for c in cells:
        g = gf.get(c.model, {}).get(_label(c.imgsz))
        if g is not None:
            c.gflops = g
            ms = c.infer_ms()
            if ms:
                c.gflops_per_s = round(g / (ms / 1000.0), 2)
    return cells


def _open_group(src: _Source, files: _Files, backend: str, hw: tuple[int, int], precisions: list[str],
                img: np.ndarray, status: dict, ultralytics: bool, conf: float, iou: float,
                baseline: bool) -> list[tuple[Cell, Any]]:  # fmt: skip
    """Cells of one backend x size, each with its opened runner (None when skipped)."""
    out: list[tuple[Cell, Any]] = []
    unavailable = None if status[backend].available else f"backend {backend} is not available here: {status[backend].reason}"
    lab = _label(hw)

    def detector_cell(model: str, prec: str, file_key: tuple[str, str, str]) -> None:
        cell = Cell(model, "detector", backend, prec, hw)
        out.append((cell, None))
        if unavailable:
            return _skip(cell, unavailable)
        if model == "ours" and src.int8 and prec != "int8":
            return _skip(cell, f"{src.path.name} is an INT8 model; its float ops run in the device's precision")
        path, why = files.get(file_key)
        if path is None:
            return _skip(cell, why if file_key[1] else f"{backend} cannot run {src.path.name} (a {src.kind} file)")
        cell.file = str(path)
        try:
            det = _open_detector(path, backend, None if prec in ("int8", "default") else prec, hw, conf, iou)
        except (ConfigError, BackendUnavailableError, ModelFileError) as e:
            return _skip(cell, str(e))
        except EdgeMLLAError as e:
            return _skip(cell, f"{type(e).__name__}: {e}")
        except Exception as e:  # a runtime bug or crash while loading: recorded, the run goes on
            LOGGER.debug("bench: opening %s failed", path, exc_info=True)
            return _fail(cell, e)
        if prec == "int8" and det.precision != "int8":
            det.close()
            return _skip(cell, f"{path.name} is not quantized (runs in {det.precision})")
        if tuple(det.imgsz) != tuple(hw):
            det.close()
            return _skip(cell, f"{path.name} runs at {_label(det.imgsz)}, not {lab}")
        cell.precision_run, cell.float_precision = det.precision, det.float_precision
        out[-1] = (cell, _DetectorRunner(cell, det, img))

    for prec in precisions:
        if prec == "int8":
            key = ("ours", f"int8-{backend}", lab) if not src.int8 else ("ours", _float_kind(src.kind, backend) or "", lab)
            if backend == "torch":
                cell = Cell("ours", "detector", backend, prec, hw)
                out.append((cell, None))
                _skip(cell, "the torch backend has no INT8 path; use openvino or onnxruntime")
                continue
        else:
            key = ("ours", _float_kind(src.kind, backend) or "", lab if _float_kind(src.kind, backend) != "pt" else "*")
        detector_cell("ours", prec, key)
    if baseline:
        kind = _float_kind(src.kind, backend) or ""
        detector_cell("stock", "default", ("stock", kind, lab if kind != "pt" else "*"))
    if ultralytics:
        for model in ("ours", "stock") if baseline else ("ours",):
            if model == "ours" and src.int8:
                continue
            cell = Cell(model, "ultralytics", backend, "default", hw)
            if backend not in _ULTRALYTICS_BACKENDS:
                continue  # Ultralytics runs these files through OpenVINO / ONNX Runtime only
            out.append((cell, None))
            kind = _float_kind(src.kind, backend) or ""
            path, why = files.get((model, kind, lab))
            if unavailable:
                _skip(cell, unavailable)
                continue
            if path is None:
                _skip(cell, why)
                continue
            if backend == "openvino" and path.suffix.lower() != ".xml":
                _skip(cell, "Ultralytics runs an .onnx file with ONNX Runtime, not OpenVINO; give the .pt or an .xml")
                continue
            cell.file = str(path)
            try:
                yolo = _open_ultralytics(path)
            except Exception as e:  # Ultralytics raises many kinds; record and go on
                LOGGER.debug("bench: Ultralytics could not load %s", path, exc_info=True)
                _skip(cell, f"Ultralytics could not load {path.name}: {type(e).__name__}: {e}")
                continue
            out[-1] = (cell, _UltralyticsRunner(cell, yolo, img, conf, iou))
    return out


def _skip(cell: Cell, reason: str) -> None:
    cell.status, cell.reason = "skipped", reason
    LOGGER.info("bench: skip %s %s %s %s %s: %s", cell.model, cell.runner, cell.backend, cell.precision,
                _label(cell.imgsz), reason)  # fmt: skip


def _fail(cell: Cell, e: BaseException) -> None:
    cell.status, cell.reason = "failed", f"{type(e).__name__}: {e}"
    LOGGER.warning("bench: %s %s %s %s %s failed: %s", cell.model, cell.runner, cell.backend, cell.precision,
                   _label(cell.imgsz), cell.reason)  # fmt: skip


def _open_detector(path: Path, backend: str, precision: str | None, hw: tuple[int, int], conf: float, iou: float,
                   **options: Any) -> Any:  # fmt: skip
    from edge_mlla import Detector
    from edge_mlla.modelfile import inspect_model

    kw: dict[str, Any] = {}
    if path.suffix.lower() == ".pt" or inspect_model(path).static_hw is None:
        kw["imgsz"] = hw
    return Detector(path, backend=backend, precision=precision, conf=conf, iou=iou, **kw, **options)


def _open_ultralytics(path: Path) -> Any:
    from ultralytics import YOLO

    import edge_mlla.nn  # noqa: F401  (offline set-up before Ultralytics)

    target = path.parent if path.suffix.lower() == ".xml" else path
    with _quiet("ultralytics"):
        return YOLO(str(target), task="detect")


def _run_interleaved(runners: list[Any], runs: int, warmup: int, bar: Any) -> None:
    """Warm every runner up, then time them round robin (the start rotates each round)."""
    live = list(runners)

    def call(r: Any) -> bool:
        try:
            with _quiet("ultralytics"):
                r.once()
            return True
        except Exception as e:  # one runner breaking must not lose the others' numbers
            LOGGER.debug("bench: %s failed", r.cell.key, exc_info=True)
            _fail(r.cell, e)
            return False

    for _ in range(warmup):
        live = [r for r in live if call(r)]
        bar.update(1)
    for r in live:
        r.samples.clear()
    for i in range(runs):
        k = i % len(live) if live else 0
        order = live[k:] + live[:k]
        failed = {id(r) for r in order if not call(r)}
        live = [r for r in live if id(r) not in failed]
        bar.update(1)


def _summarize(r: Any) -> None:
    c = r.cell
    if not c.ok or not r.samples:
        return
    c.runs = len(r.samples)
    c.latency_ms = {s: _stats([st[s] for st, _ in r.samples]) for s in STAGES}
    c.wall_ms = _stats([w for _, w in r.samples])
    if r.runner == "ultralytics":
        c.precision_run = _ultralytics_precision(r.yolo, c.backend)
        c.float_precision = c.precision_run
    LOGGER.info("bench: %s %s %s %s %s: infer %.2f ms, total %.2f ms", c.model, c.runner, c.backend,
                c.precision_run, _label(c.imgsz), c.latency_ms["infer"]["median"], c.latency_ms["total"]["median"])  # fmt: skip


def _measure_throughput(r: _DetectorRunner, img: np.ndarray, n: int, conf: float, iou: float, backend: str,
                        hw: tuple[int, int]) -> None:  # fmt: skip
    """Throughput on a Detector opened for it (OpenVINO: the ``throughput`` hint), after closing the latency one."""
    c = r.cell
    with contextlib.suppress(Exception):
        r.det.close()
    opts = {"hint": "throughput"} if backend == "openvino" else {}
    try:
        det = _open_detector(Path(c.file or ""), backend, None if c.precision in ("int8", "default") else c.precision,
                             hw, conf, iou, **opts)  # fmt: skip
    except EdgeMLLAError as e:
        LOGGER.warning("bench: throughput of %s not measured: %s", c.key, e)
        return
    try:
        fps, k = _throughput(det, img, n)
        c.throughput_fps, c.inflight = round(fps, 2), k
    except Exception as e:  # noqa: BLE001  (recorded, the run goes on)
        LOGGER.warning("bench: throughput of %s failed: %s: %s", c.key, type(e).__name__, e)
    finally:
        det.close()


def _peaks(cells: list[Cell], runs: int, progress: bool, side: int, work: Path) -> list[dict[str, Any]]:
    combos: list[tuple[str, str]] = []
    for c in cells:
        if c.ok and c.backend in ("openvino", "onnxruntime", "cuda") and c.precision_run:
            prec = c.precision_run if c.precision_run in ("f32", "bf16", "f16", "int8") else "f32"
            if (c.backend, prec) not in combos:
                combos.append((c.backend, prec))
    out = []
    bar = _bar(len(combos), "bench: peak GFLOP/s", progress)
    try:
        for b, p in combos:
            bar.set_postfix_str(f"{b} {p}")
            try:
                out.append(measure_peak(b, p, runs=max(3, min(runs, 20)), warmup=2, side=side, folder=work))
            except Exception as e:  # noqa: BLE001  the peak is context, not the benchmark: record why it is missing
                LOGGER.warning("bench: peak for %s %s not measured: %s", b, p, e)
                out.append({"backend": b, "precision": p, "gflops_per_s": None, "reason": f"{type(e).__name__}: {e}"})
            bar.update(1)
    finally:
        bar.close()
    return out


def _fill_peak_share(cells: list[Cell], peaks: list[dict[str, Any]]) -> None:
    peak = {(p["backend"], p["precision"]): p.get("gflops_per_s") for p in peaks}
    for c in cells:
        pk = peak.get((c.backend, c.precision_run or ""))
        if c.gflops_per_s and pk:
            c.pct_of_peak = round(100.0 * c.gflops_per_s / pk, 1)


# ------------------------------------------------------------------------------------------- derived numbers
def _native(res: BenchResult, backend: str) -> str:
    """The backend's default float precision here: OpenVINO's native (bf16 with BF16, else f32); others f32."""
    if backend == "openvino":
        from edge_mlla.runtimes.openvino import native_precision

        return native_precision("CPU", res.machine.get("openvino_cpu_capabilities") or [])
    return "f32"


def _ours_default(res: BenchResult, backend: str, hw: Sequence[int], precision_run: str | None) -> Cell | None:
    """Our Detector cell in the given float precision (the one the stock default ran in)."""
    for c in res.cells:
        if (c.ok and c.model == "ours" and c.runner == "detector" and c.backend == backend
                and tuple(c.imgsz) == tuple(hw) and c.precision != "int8" and c.precision_run == precision_run):
            return c
    return None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def _ratios(res: BenchResult) -> list[dict[str, Any]]:
    out = []
    for b in res.settings["backends"]:
        for hw in [tuple(s) for s in res.settings["imgsz"]]:
            stock = res.cell("stock", "detector", b, "default", hw)
            prec = stock.precision_run if stock and stock.ok else _native(res, b)
            ours = _ours_default(res, b, hw, prec)
            ul_s = res.cell("stock", "ultralytics", b, "default", hw)
            ul_o = res.cell("ours", "ultralytics", b, "default", hw)

            def wall(c: Cell | None) -> float | None:
                return c.wall_ms.get("median") if c is not None and c.ok else None

            def stage(c: Cell | None, s: str) -> float | None:
                return c.latency_ms.get(s, {}).get("median") if c is not None and c.ok else None

            row = {
                "backend": b, "imgsz": list(hw), "precision": prec,
                "detector_vs_ultralytics_stock": _ratio(wall(stock), wall(ul_s)),
                "detector_vs_ultralytics_ours": _ratio(wall(ours), wall(ul_o)),
                "mlla_vs_stock_infer": _ratio(stage(ours, "infer"), stage(stock, "infer")),
                "mlla_vs_stock_total": _ratio(stage(ours, "total"), stage(stock, "total")),
                "ms": {"ours_detector_wall": wall(ours), "stock_detector_wall": wall(stock),
                       "ours_ultralytics_wall": wall(ul_o), "stock_ultralytics_wall": wall(ul_s),
                       "ours_infer": stage(ours, "infer"), "stock_infer": stage(stock, "infer")},
            }  # fmt: skip
            missing = [k for k in ("detector_vs_ultralytics_stock", "detector_vs_ultralytics_ours", "mlla_vs_stock_infer")
                       if row[k] is None]  # fmt: skip
            if missing:
                row["missing"] = {k: _why_missing(res, b, hw, k, prec) for k in missing}
            out.append(row)
    return out


def _why_missing(res: BenchResult, b: str, hw: tuple[int, int], key: str, prec: str) -> str:
    if res.baseline is None and key != "detector_vs_ultralytics_ours":
        return "no baseline (baseline='none')"
    need = {"detector_vs_ultralytics_stock": [("stock", "detector"), ("stock", "ultralytics")],
            "detector_vs_ultralytics_ours": [("ours", "detector"), ("ours", "ultralytics")],
            "mlla_vs_stock_infer": [("ours", "detector"), ("stock", "detector")]}[key]  # fmt: skip
    for model, runner in need:
        if model == "ours" and runner == "detector":
            if _ours_default(res, b, hw, prec) is None:
                return f"our model has no {prec} cell on {b} at {_label(hw)} (add {prec} to the precisions)"
            continue
        c = res.cell(model, runner, b, "default", hw)
        if c is None:
            return f"{model} {runner} not run" + (" (Ultralytics not measured)" if runner == "ultralytics" else "")
        if not c.ok:
            return f"{model} {runner}: {c.reason}"
    return "not measured"


def _scaling(res: BenchResult) -> list[dict[str, Any]]:
    series: dict[tuple[str, str, str, str], list[Cell]] = {}
    for c in res.cells:
        if c.ok and c.infer_ms():
            series.setdefault((c.model, c.runner, c.backend, c.precision), []).append(c)
    out = []
    for (model, runner, b, prec), cs in series.items():
        cs.sort(key=lambda c: c.imgsz[0] * c.imgsz[1])
        pts = [{"imgsz": list(c.imgsz), "pixels": c.imgsz[0] * c.imgsz[1], "infer_ms": c.infer_ms(),
                "total_ms": c.latency_ms["total"]["median"]} for c in cs]  # fmt: skip
        k = fit_exponent([p["pixels"] for p in pts], [p["infer_ms"] for p in pts])
        out.append({"model": model, "runner": runner, "backend": b, "precision": prec,
                    "precision_run": cs[0].precision_run, "points": pts,
                    "exponent": None if k is None else round(k, 3),
                    **({"reason": "fewer than two sizes"} if k is None else {})})  # fmt: skip
    return out


def _verdicts(res: BenchResult) -> list[str]:
    out = []
    for b in res.settings["backends"]:
        native = _native(res, b)
        ratios, basis = [], ""
        for hw in [tuple(s) for s in res.settings["imgsz"]]:
            q = res.cell("ours", "detector", b, "int8", hw)
            f = next((c for c in res.cells if c.ok and c.model == "ours" and c.runner == "detector" and c.backend == b
                      and tuple(c.imgsz) == hw and c.precision != "int8" and c.precision_run == native), None)  # fmt: skip
            if q is None or not q.ok or f is None:
                continue
            if q.throughput_fps and f.throughput_fps:
                ratios.append(q.throughput_fps / f.throughput_fps)
                basis = "throughput"
            elif q.infer_ms() and f.infer_ms():
                ratios.append(f.infer_ms() / q.infer_ms())
                basis = basis or "inference latency"
        if not ratios:
            continue
        r = math.exp(sum(math.log(x) for x in ratios) / len(ratios))
        sizes = f" over {len(ratios)} sizes" if len(ratios) > 1 else ""
        if r < INT8_PAYS:
            out.append(f"{b}: INT8 is not faster than {native} on this CPU ({r:.2f}x {basis}{sizes}): use {native}")
        else:
            out.append(f"{b}: INT8 runs {r:.2f}x the {basis} of {native} on this CPU{sizes}: use INT8")
    best: dict[str, tuple[float, Cell]] = {}
    for c in res.cells:
        if c.ok and c.model == "ours" and c.runner == "detector" and c.throughput_fps:
            lab = _label(c.imgsz)
            if lab not in best or c.throughput_fps > best[lab][0]:
                best[lab] = (c.throughput_fps, c)
    if best:
        parts = [f"{lab}: {c.backend} {c.precision_run} ({fps:.1f} FPS)" for lab, (fps, c) in best.items()]
        out.append("fastest here (async throughput): " + "; ".join(parts))
    return out


# ------------------------------------------------------------------------------------------------- markdown
def _f(x: float | None, nd: int | None = None) -> str:
    if x is None:
        return "-"
    if nd is None:
        nd = 1 if abs(x) >= 10 else 2
    return f"{x:.{nd}f}"


def _mp(st: dict[str, float] | None) -> str:
    if not st:
        return "-"
    return f"{_f(st.get('median'))} / {_f(st.get('p90'))}"


def _markdown(res: BenchResult) -> str:
    m, s = res.machine, res.settings
    lines = [f"# edge-mlla bench: {res.model.get('name')}", ""]
    cores = m.get("cores", {})
    isa = m.get("isa", {})
    have = [f for f, v in isa.items() if v]
    lack = [f for f, v in isa.items() if not v]
    vers = ", ".join(f"{k} {v}" for k, v in (m.get("versions") or {}).items() if v)
    lines += [
        f"**Machine**: {m.get('cpu')} ({m.get('machine')}), {cores.get('os_cpu_count')} CPUs"
        f" ({cores.get('affinity')} usable); ISA: {', '.join(have) or 'none of'}"
        + (f" (no {', '.join(lack)})" if lack else "")
        + f"; OpenVINO CPU capabilities: {', '.join(m.get('openvino_cpu_capabilities') or ['unknown'])}; "
        f"load average {m.get('loadavg')} at start, {m.get('loadavg_end')} at end; {m.get('date')}.",
        "",
        f"**Versions**: {vers}.",
        "",
        (f"**Method**: batch 1, one image ({s['image']['source']}, {s['image']['shape'][1]}x{s['image']['shape'][0]}, "
        f"{s['image']['resized']}); median / p90 ms over {s['runs']} calls after {s['warmup']} warm-up, the cells of "
        f"one backend and size interleaved round robin; runtime threads: defaults; FPS: async throughput with "
        f"`Detector.submit()` keeping the backend's optimal number of requests in flight ({s['throughput_runs']} "
        f"images; OpenVINO with the throughput hint). Stages are the Detector's own Timing (Ultralytics: "
        f"`results[0].speed`); e2e wall is the whole call timed outside it."),
        "",
    ]
    i8 = s.get("int8") or {}
    if i8.get("source") == "given":
        lines += [f"**INT8**: the given model {Path(i8['file']).name}.", ""]
    elif "int8" in s.get("precisions", []):
        lines += [(f"**INT8**: quantized here from the float export with {i8.get('calibration_images', '?')} images of "
                  f"the bundled BCCD train split (OpenVINO: NNCF; ONNX Runtime: static QDQ; edge_mlla.quantize "
                  f"default scope)."), ""]  # fmt: skip
    if res.baseline:
        lines += [(f"**Baseline**: stock {res.baseline['name']} ({res.baseline.get('weights')}, "
                  f"{res.baseline.get('nc', '?')} classes), exported the same way, run through our Detector and through "
                  f"Ultralytics' `YOLO(file).predict`, each at its default precision."), ""]  # fmt: skip
    if res.verdicts:
        lines += ["**Verdict**:", ""] + [f"- {v}" for v in res.verdicts] + [""]

    lines += ["## Latency per stage (ms, median / p90)", "",
              ("| model | runner | backend | precision | imgsz | preprocess | infer | postprocess | total | e2e wall | "
              "FPS async (in flight) | GFLOPs | GFLOP/s | % of peak |"),
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    name = {"ours": res.model.get("name", "ours"), "stock": (res.baseline or {}).get("name", "stock")}
    for c in sorted((c for c in res.cells if c.ok), key=_order):
        prec = c.precision_run or c.precision
        if c.precision_run == "int8" and c.float_precision:
            prec = f"int8 ({c.float_precision} float ops)"
        fps = f"{_f(c.throughput_fps)} ({c.inflight})" if c.throughput_fps else "-"
        lines.append(
            f"| {name[c.model]} | {c.runner} | {c.backend} | {prec} | {_label(c.imgsz)} | "
            + " | ".join(_mp(c.latency_ms.get(st)) for st in STAGES)
            + f" | {_mp(c.wall_ms)} | {fps} | {_f(c.gflops)} | {_f(c.gflops_per_s)} | {_f(c.pct_of_peak, 1)} |"
        )
    lines.append("")

    if res.ratios and (res.baseline or any(r.get("detector_vs_ultralytics_ours") for r in res.ratios)):
        lines += ["## Baseline ratios (lower is better for ours)", "",
                  ("| backend | imgsz | precision | Detector / Ultralytics e2e, stock | Detector / Ultralytics e2e, "
                  "MLLA | MLLA / stock infer | MLLA / stock total |"),
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in res.ratios:
            lines.append(f"| {r['backend']} | {_label(r['imgsz'])} | {r['precision']} | "
                         + " | ".join(f"{_f(r[k], 2)}x" if r[k] is not None else "-" for k in
                                      ("detector_vs_ultralytics_stock", "detector_vs_ultralytics_ours",
                                       "mlla_vs_stock_infer", "mlla_vs_stock_total")) + " |")  # fmt: skip
        lines.append("")

    sc = [x for x in res.scaling if x["runner"] == "detector"]
    if sc:
        labels = [_label(hw) for hw in sorted((tuple(h) for h in s["imgsz"]), key=lambda hw: hw[0] * hw[1])]
        lines += ["## Resolution scaling (inference ms, median)", "",
                  f"| model | backend | precision | {' | '.join(labels)} | growth exponent (ms ~ pixels^k) |",
                  "|---|---|---|" + "---|" * len(labels) + "---|"]  # fmt: skip
        for x in sorted(sc, key=lambda x: (x["backend"], x["model"] != "ours", x["precision"])):
            by = {_label(p["imgsz"]): p["infer_ms"] for p in x["points"]}
            lines.append(f"| {name[x['model']]} | {x['backend']} | {x['precision_run'] or x['precision']} | "
                         + " | ".join(_f(by.get(lab)) for lab in labels) + f" | {_f(x['exponent'], 2)} |")  # fmt: skip
        lines += ["", "An exponent of 1 means inference time grows in proportion to the pixel count.", ""]

    if res.peaks:
        lines += ["## Hardware limit", "",
                  "| backend | precision | peak GFLOP/s | measured on |", "|---|---|---|---|"]  # fmt: skip
        for p in res.peaks:
            lines.append(f"| {p['backend']} | {p['precision']} | {_f(p.get('gflops_per_s'))} | "
                         f"{p.get('conv') or p.get('reason', '-')} |")  # fmt: skip
        g = res.model.get("gflops") or {}
        lines += ["", f"Model GFLOPs ({res.model.get('gflops_method')}): "
                  + (", ".join(f"{k}: {v:.2f}" for k, v in g.items()) if g else "unknown")
                  + (f"; {res.baseline['name']}: " + ", ".join(f"{k}: {v:.2f}" for k, v in (res.baseline.get('gflops') or {}).items())
                     if res.baseline and res.baseline.get("gflops") else "")
                  + ". % of peak = the model's GFLOP/s at its median inference time / the conv peak in the same "
                  "runtime and precision.", ""]  # fmt: skip

    skipped = [c for c in res.cells if not c.ok]
    if skipped:
        lines += ["## Not measured", ""]
        grouped: dict[tuple[str, str, str, str, str, str], list[str]] = {}
        for c in skipped:
            grouped.setdefault((c.model, c.runner, c.backend, c.precision, c.status, c.reason), []).append(_label(c.imgsz))
        for (model, runner, b, p, st, why), labs in grouped.items():
            lines.append(f"- {name[model]} {runner} {b} {p} ({', '.join(labs)}): {st}: {why}")
        lines.append("")
    if res.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in res.notes] + [""]
    return "\n".join(lines)


def _order(c: Cell) -> tuple:
    prec_rank = {"f32": 0, "bf16": 1, "f16": 2, "int8": 3, "default": 4}
    return (c.imgsz[0] * c.imgsz[1], c.backend, c.model != "ours", c.runner != "detector", prec_rank.get(c.precision, 9))


# --------------------------------------------------------------------------------------------------- charts
def _plot(res: BenchResult, folder: Path) -> list[Path]:
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise MissingDependencyError("bench charts need matplotlib: pip install matplotlib") from e
    from edge_mlla._env import setup_offline
    from edge_mlla._io import ensure_writable_dir

    setup_offline()  # MPLCONFIGDIR writable
    folder = ensure_writable_dir(folder)
    return [_plot_stages(res, folder / "latency_stages.png", Figure), _plot_scaling(res, folder / "scaling.png", Figure)]


def _plot_stages(res: BenchResult, path: Path, Figure: Any) -> Path:
    name = {"ours": res.model.get("name", "ours"), "stock": (res.baseline or {}).get("name", "stock")}
    sizes = sorted({tuple(c.imgsz) for c in res.cells}, key=lambda hw: hw[0] * hw[1])
    per = {hw: sorted((c for c in res.cells if c.ok and tuple(c.imgsz) == hw), key=_order) for hw in sizes}
    rows = max([len(v) for v in per.values()] + [1])
    fig = Figure(figsize=(10, 1.0 + 0.32 * rows * max(1, len(sizes)) + 0.6 * len(sizes)))
    axes = fig.subplots(max(1, len(sizes)), 1, squeeze=False)[:, 0]
    colors = {"preprocess": "#4C72B0", "infer": "#DD8452", "postprocess": "#55A868"}
    for ax, hw in zip(axes, sizes or [(0, 0)]):
        cs = per.get(hw, [])
        labels = [f"{name[c.model]} {'UL ' if c.runner == 'ultralytics' else ''}{c.backend} {c.precision_run or c.precision}"
                  for c in cs]  # fmt: skip
        left = np.zeros(len(cs))
        for st in ("preprocess", "infer", "postprocess"):
            vals = np.array([c.latency_ms[st]["median"] for c in cs]) if cs else np.zeros(0)
            ax.barh(range(len(cs)), vals, left=left, color=colors[st], label=st)
            left += vals
        for i, c in enumerate(cs):
            ax.text(left[i], i, f" {left[i]:.1f}", va="center", fontsize=7)
        ax.set_yticks(range(len(cs)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(f"imgsz {_label(hw)}" if cs else "no measured cells", fontsize=9)
        ax.set_xlabel("median ms per image (batch 1)", fontsize=8)
        ax.margins(x=0.12)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"Latency per stage: {res.model.get('name')} on {res.machine.get('cpu')}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _plot_scaling(res: BenchResult, path: Path, Figure: Any) -> Path:
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    name = {"ours": res.model.get("name", "ours"), "stock": (res.baseline or {}).get("name", "stock")}
    palette = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
    color: dict[str, str] = {}
    ticks: dict[float, str] = {}
    plotted = 0
    for x in res.scaling:
        if x["runner"] != "detector" or (x["model"] == "ours" and x["precision"] == "int8"):
            continue
        px = np.array([p["pixels"] for p in x["points"]], float) / 1e6
        ms = np.array([p["infer_ms"] for p in x["points"]], float)
        ticks.update({p["pixels"] / 1e6: _label(p["imgsz"]) for p in x["points"]})
        k = x.get("exponent")
        prec = x["precision_run"] or x["precision"]
        label = f"{name[x['model']]} {x['backend']} {prec}" + (f" (k={k:.2f})" if k is not None else "")
        c = color.setdefault(f"{x['backend']} {prec}", palette[len(color) % len(palette)])
        ax.plot(px, ms, "o-" if x["model"] == "ours" else "s--", color=c, label=label)
        plotted += 1
    ax.set_xscale("log")
    ax.set_yscale("log")
    if ticks:
        from matplotlib.ticker import NullLocator, ScalarFormatter

        ax.set_xticks(sorted(ticks), [ticks[t] for t in sorted(ticks)])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(ScalarFormatter())
    ax.set_xlabel("input size (log pixel count)")
    ax.set_ylabel("median inference ms")
    ax.set_title("Resolution scaling: ours vs stock (ms ~ pixels^k)", fontsize=10)
    if plotted:
        ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
