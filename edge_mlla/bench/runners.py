"""Measuring the cells: our :class:`~edge_mlla.Detector` and Ultralytics' ``YOLO(file).predict`` on the same
files, the cells of one backend and size interleaved round robin, then async throughput per Detector cell.

Example:
    >>> from edge_mlla.bench.runners import measure_cells  # used by run_bench  # doctest: +SKIP

Imports inside functions: Ultralytics, OpenCV, the runtimes and the model side load only when a cell runs, so that
importing the bench stays light.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_mlla.bench.measure import requests_in_flight, summarize_ms, throughput
from edge_mlla.bench.options import MeasureOptions, bar, quiet
from edge_mlla.bench.options import label as _label
from edge_mlla.bench.prepare import Files, Source, float_kind
from edge_mlla.bench.result import STAGES, Cell
from edge_mlla.errors import BackendUnavailableError, ConfigError, EdgeMLLAError, ModelFileError

LOGGER = logging.getLogger("edge_mlla")
_ULTRALYTICS_BACKENDS = ("openvino", "onnxruntime")  # where Ultralytics' predict runs the same file


class DetectorRunner:
    """Our Detector on one file: one call = one image, stage times from its Timing."""

    runner = "detector"

    def __init__(self, cell: Cell, det: Any, image: np.ndarray) -> None:
        self.cell, self.det, self.image = cell, det, image
        self.samples: list[tuple[dict[str, float], float]] = []

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


class UltralyticsRunner:
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


def ultralytics_precision(yolo: Any, backend: str) -> str:
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


def open_detector(path: Path, backend: str, precision: str | None, hw: tuple[int, int], conf: float, iou: float,
                  **options: Any) -> Any:  # fmt: skip
    """A Detector on ``path`` at ``hw`` (passed only where the file's size is not fixed)."""
    from edge_mlla import Detector
    from edge_mlla.modelfile import inspect_model

    kw: dict[str, Any] = {}
    if path.suffix.lower() == ".pt" or inspect_model(path).static_hw is None:
        kw["imgsz"] = hw
    return Detector(path, backend=backend, precision=precision, conf=conf, iou=iou, **kw, **options)


def open_ultralytics(path: Path) -> Any:
    """``YOLO(file)`` (an IR by its folder, as Ultralytics loads it), quietly."""
    from ultralytics import YOLO

    import edge_mlla.nn  # noqa: F401  (offline set-up before Ultralytics)

    target = path.parent if path.suffix.lower() == ".xml" else path
    with quiet("ultralytics"):
        return YOLO(str(target), task="detect")


def skip(cell: Cell, reason: str) -> None:
    """Mark ``cell`` skipped (not possible here) with the reason."""
    cell.status, cell.reason = "skipped", reason
    LOGGER.info("bench: skip %s %s %s %s %s: %s", cell.model, cell.runner, cell.backend, cell.precision,
                _label(cell.imgsz), reason)  # fmt: skip


def fail(cell: Cell, e: BaseException) -> None:
    """Mark ``cell`` failed with the error."""
    cell.status, cell.reason = "failed", f"{type(e).__name__}: {e}"
    LOGGER.warning("bench: %s %s %s %s %s failed: %s", cell.model, cell.runner, cell.backend, cell.precision,
                   _label(cell.imgsz), cell.reason)  # fmt: skip


@dataclass
class _Group:
    """The cells of one backend x size, opened together and timed interleaved."""

    src: Source
    files: Files
    backend: str
    hw: tuple[int, int]
    img: np.ndarray
    opts: MeasureOptions
    unavailable: str | None

    def __post_init__(self) -> None:
        self.out: list[tuple[Cell, Any]] = []

    def detector_cell(self, model: str, prec: str, file_key: tuple[str, str, str]) -> None:
        cell = Cell(model, "detector", self.backend, prec, self.hw)
        self.out.append((cell, None))
        src = self.src
        if self.unavailable:
            return skip(cell, self.unavailable)
        if model == "ours" and src.int8 and prec != "int8":
            return skip(cell, f"{src.path.name} is an INT8 model; its float ops run in the device's precision")
        path, why = self.files.get(file_key)
        if path is None:
            return skip(cell, why if file_key[1] else f"{self.backend} cannot run {src.path.name} (a {src.kind} file)")
        cell.file = str(path)
        try:
            det = open_detector(path, self.backend, None if prec in ("int8", "default") else prec, self.hw,
                                self.opts.conf, self.opts.iou)  # fmt: skip
        except (ConfigError, BackendUnavailableError, ModelFileError) as e:
            return skip(cell, str(e))
        except EdgeMLLAError as e:
            return skip(cell, f"{type(e).__name__}: {e}")
        except Exception as e:  # a runtime bug or crash while loading: recorded, the run goes on
            LOGGER.debug("bench: opening %s failed", path, exc_info=True)
            return fail(cell, e)
        if prec == "int8" and det.precision != "int8":
            det.close()
            return skip(cell, f"{path.name} is not quantized (runs in {det.precision})")
        if tuple(det.imgsz) != tuple(self.hw):
            det.close()
            return skip(cell, f"{path.name} runs at {_label(det.imgsz)}, not {_label(self.hw)}")
        cell.precision_run, cell.float_precision = det.precision, det.float_precision
        self.out[-1] = (cell, DetectorRunner(cell, det, self.img))

    def ultralytics_cell(self, model: str) -> None:
        b, lab = self.backend, _label(self.hw)
        if b not in _ULTRALYTICS_BACKENDS:
            return  # Ultralytics runs these files through OpenVINO / ONNX Runtime only
        cell = Cell(model, "ultralytics", b, "default", self.hw)
        self.out.append((cell, None))
        path, why = self.files.get((model, float_kind(self.src.kind, b) or "", lab))
        if self.unavailable:
            return skip(cell, self.unavailable)
        if path is None:
            return skip(cell, why)
        if b == "openvino" and path.suffix.lower() != ".xml":
            return skip(cell, "Ultralytics runs an .onnx file with ONNX Runtime, not OpenVINO; give the .pt or an .xml")
        cell.file = str(path)
        try:
            yolo = open_ultralytics(path)
        except Exception as e:  # Ultralytics raises many kinds; record and go on
            LOGGER.debug("bench: Ultralytics could not load %s", path, exc_info=True)
            return skip(cell, f"Ultralytics could not load {path.name}: {type(e).__name__}: {e}")
        self.out[-1] = (cell, UltralyticsRunner(cell, yolo, self.img, self.opts.conf, self.opts.iou))


def _open_group(g: _Group, precisions: list[str], baseline: bool, ultralytics: bool) -> list[tuple[Cell, Any]]:
    """Cells of one backend x size, each with its opened runner (None when skipped)."""
    src, b, lab = g.src, g.backend, _label(g.hw)
    fk = float_kind(src.kind, b) or ""
    for prec in precisions:
        if prec == "int8" and b == "torch":
            cell = Cell("ours", "detector", b, prec, g.hw)
            g.out.append((cell, None))
            skip(cell, "the torch backend has no INT8 path; use openvino or onnxruntime")
        elif prec == "int8":
            g.detector_cell("ours", prec, ("ours", f"int8-{b}", lab) if not src.int8 else ("ours", fk, lab))
        else:
            g.detector_cell("ours", prec, ("ours", fk, lab if fk != "pt" else "*"))
    if baseline:
        g.detector_cell("stock", "default", ("stock", fk, lab if fk != "pt" else "*"))
    if ultralytics:
        for model in ("ours", "stock") if baseline else ("ours",):
            if not (model == "ours" and src.int8):
                g.ultralytics_cell(model)
    return g.out


def run_interleaved(runners: list[Any], runs: int, warmup: int, pbar: Any) -> None:
    """Warm every runner up, then time them round robin (the start rotates each round)."""
    live = list(runners)

    def call(r: Any) -> bool:
        try:
            with quiet("ultralytics"):
                r.once()
            return True
        except Exception as e:  # one runner breaking must not lose the others' numbers
            LOGGER.debug("bench: %s failed", r.cell.key, exc_info=True)
            fail(r.cell, e)
            return False

    for _ in range(warmup):
        live = [r for r in live if call(r)]
        pbar.update(1)
    for r in live:
        r.samples.clear()
    for i in range(runs):
        k = i % len(live) if live else 0
        order = live[k:] + live[:k]
        failed = {id(r) for r in order if not call(r)}
        live = [r for r in live if id(r) not in failed]
        pbar.update(1)


def summarize(r: Any) -> None:
    """A runner's samples into its cell: median / p90 per stage and of the wall time."""
    c = r.cell
    if not c.ok or not r.samples:
        return
    c.runs = len(r.samples)
    c.latency_ms = {s: summarize_ms([st[s] * 1000.0 for st, _ in r.samples]) for s in STAGES}
    c.wall_ms = summarize_ms([w * 1000.0 for _, w in r.samples])
    if r.runner == "ultralytics":
        c.precision_run = ultralytics_precision(r.yolo, c.backend)
        c.float_precision = c.precision_run
    LOGGER.info("bench: %s %s %s %s %s: infer %.2f ms, total %.2f ms", c.model, c.runner, c.backend,
                c.precision_run, _label(c.imgsz), c.latency_ms["infer"]["median"], c.latency_ms["total"]["median"])  # fmt: skip


def measure_throughput(r: DetectorRunner, img: np.ndarray, n: int, opts: MeasureOptions) -> None:
    """Throughput on a Detector opened for it (OpenVINO: the ``throughput`` hint), after closing the latency one."""
    c = r.cell
    with contextlib.suppress(Exception):
        r.det.close()
    extra = {"hint": "throughput"} if c.backend == "openvino" else {}
    try:
        det = open_detector(Path(c.file or ""), c.backend, None if c.precision in ("int8", "default") else c.precision,
                            tuple(c.imgsz), opts.conf, opts.iou, **extra)  # fmt: skip
    except EdgeMLLAError as e:
        LOGGER.warning("bench: throughput of %s not measured: %s", c.key, e)
        return
    try:
        k = requests_in_flight(det)
        c.throughput_fps, c.inflight = round(throughput(lambda: det.submit(img), inflight=k, n=n), 2), k
    except Exception as e:  # noqa: BLE001  (recorded, the run goes on)
        LOGGER.warning("bench: throughput of %s failed: %s: %s", c.key, type(e).__name__, e)
    finally:
        det.close()


def image_for(base: np.ndarray, hw: tuple[int, int], resize: bool) -> np.ndarray:
    """The frame for one size: ``base`` resized (aspect kept) so its long side is the input's long side."""
    if not resize:
        return base
    import cv2

    h, w = base.shape[:2]
    r = max(hw) / max(h, w)
    size = (max(1, round(w * r)), max(1, round(h * r)))
    return cv2.resize(base, size, interpolation=cv2.INTER_LINEAR if r > 1 else cv2.INTER_AREA)


@dataclass
class Grid:
    """What to measure: MODEL, its prepared files, and the backends x precisions x sizes."""

    src: Source
    files: Files
    backends: list[str]
    precisions: list[str]
    sizes: list[tuple[int, int]]
    baseline: bool


def measure_cells(grid: Grid, base_img: np.ndarray, resize: bool, opts: MeasureOptions, ultralytics: bool,
                  gflops: dict[str, dict[str, float]], progress: bool = False) -> list[Cell]:  # fmt: skip
    """Every cell of ``grid``: latency interleaved per backend x size, then throughput, then GFLOP/s."""
    from edge_mlla.runtimes import available

    status = available()
    cells: list[Cell] = []
    groups = [(b, hw) for b in grid.backends for hw in grid.sizes]
    pbar = bar(len(groups) * (opts.warmup + opts.runs), "bench: measure", progress)
    try:
        for b, hw in groups:
            pbar.set_postfix_str(f"{b} {_label(hw)}")
            img = image_for(base_img, hw, resize)
            why = None if status[b].available else f"backend {b} is not available here: {status[b].reason}"
            group = _open_group(_Group(grid.src, grid.files, b, hw, img, opts, why), grid.precisions, grid.baseline,
                                ultralytics)  # fmt: skip
            cells += [c for c, _ in group]
            live = [r for _, r in group if r is not None]
            try:
                run_interleaved(live, opts.runs, opts.warmup, pbar)
                for r in live:
                    summarize(r)
                for r in live:
                    if opts.throughput_n and r.runner == "detector" and r.cell.ok:
                        pbar.set_postfix_str(f"{b} {_label(hw)}: throughput {r.cell.model} {r.cell.precision}")
                        measure_throughput(r, img, opts.throughput_n, opts)
            finally:
                for r in live:
                    with contextlib.suppress(Exception):
                        r.close()
    finally:
        pbar.close()
    for c in cells:
        g = gflops.get(c.model, {}).get(_label(c.imgsz))
        if g is not None:
            c.gflops = g
            ms = c.infer_ms()
            if ms:
                c.gflops_per_s = round(g / (ms / 1000.0), 2)
    return cells
