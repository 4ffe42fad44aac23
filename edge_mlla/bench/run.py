"""``run_bench``: check everything, prepare the model files, measure the cells and the peaks, derive the ratios,
scaling and verdicts, save the report.

Example:
    >>> from edge_mlla.bench import run_bench
    >>> res = run_bench("best.onnx", backends="onnxruntime", precisions="f32", runs=20, baseline=None)  # doctest: +SKIP

Imports inside functions: torch, Ultralytics and our heavier modules load only in the step that needs them, so that
importing the bench stays light.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_mlla.bench import analysis
from edge_mlla.bench.machine import describe_machine, loadavg
from edge_mlla.bench.options import (
    MeasureOptions,
    label,
    parse_backends,
    parse_precisions,
    parse_sizes,
    positive_int,
    require_tqdm,
)
from edge_mlla.bench.peak import fill_peak_share, measure_peaks
from edge_mlla.bench.prepare import Source, inspect_source, prepare
from edge_mlla.bench.result import BenchResult
from edge_mlla.bench.runners import Grid, measure_cells
from edge_mlla.errors import ConfigError, InputTypeError, MissingDependencyError, MissingFileError, ModelFileError

LOGGER = logging.getLogger("edge_mlla")

DEFAULT_BACKENDS = ("openvino", "onnxruntime")
DEFAULT_PRECISIONS = ("f32", "bf16", "int8")
DEFAULT_SIZES = ((320, 320), (640, 640), (1280, 1280))
DEFAULT_BASELINE = "yolo11n"


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


@dataclass
class _Checked:
    """The arguments of :func:`run_bench`, checked."""

    src: Source
    backends: list[str]
    precisions: list[str]
    sizes: list[tuple[int, int]]
    baseline: str | Path | bool
    int8_file: Path | None
    calib_size: int
    out_dir: Path | None
    image: np.ndarray
    image_desc: str
    resize: bool


def run_bench(
    model: str | os.PathLike,
    backends: str | Sequence[str] = DEFAULT_BACKENDS,
    precisions: str | Sequence[str] = DEFAULT_PRECISIONS,
    imgsz: Any = None,
    baseline: str | os.PathLike | None = DEFAULT_BASELINE,
    *,
    options: MeasureOptions | None = None,
    int8: str | os.PathLike | None = None,
    calib_size: int = 32,
    image: str | os.PathLike | np.ndarray | None = None,
    output: str | os.PathLike | None = None,
    keep_models: bool = False,
    progress: bool = False,
    **measure: Any,
) -> BenchResult:
    """Benchmark ``model`` over backends x precisions x sizes with a stock baseline; see :mod:`edge_mlla.bench`.

    Args:
        model: ``.pt`` checkpoint (exported at every size) or an exported ``.onnx`` / ``.xml`` (its own size, or
            the asked sizes when its input is dynamic).
        backends: names from :func:`edge_mlla.runtimes.backends` (``"openvino,onnxruntime"`` default); one that is
            not available here gives skipped cells with the reason.
        precisions: ``f32``, ``bf16``, ``f16``, ``int8``; a precision a backend/CPU cannot run is a skipped cell.
        imgsz: sizes (``"320,640,1280"``, ``[320, (384, 640)]``); default 320, 640, 1280 for a ``.pt``.
        baseline: stock Ultralytics yaml name built offline with random weights (``"yolo11n"``), a stock ``.pt``,
            or None / ``"none"`` for no baseline.
        options: how each cell is measured (:class:`~edge_mlla.bench.options.MeasureOptions`: runs, warmup,
            throughput_runs, ultralytics, peak, conf, iou); ``**measure`` overrides its fields by name
            (``run_bench(m, runs=20, peak=False)``).
        int8: an INT8 model to use instead of quantizing (``.xml`` for OpenVINO, QDQ ``.onnx`` for either runtime).
        calib_size: calibration images (from the bundled BCCD train split) when quantizing.
        image: the frame to run on (path or BGR array, used as is); default a BCCD test image resized per size.
        output: folder for ``bench.json``, ``bench.md`` and the charts (checked writable first); None writes none.
        keep_models: keep the exported/quantized files under ``output/models`` instead of a temporary folder.
        progress: tqdm progress bars on stderr.

    Returns:
        :class:`~edge_mlla.bench.result.BenchResult`.

    Raises:
        MissingFileError, ModelFileError (MODEL), ConfigError (backends, precisions, sizes, runs, baseline, an
        unknown option), OutputNotWritableError, MissingDependencyError (tqdm with ``progress``, torch/ultralytics
        for a ``.pt``).

    Example:
        >>> res = run_bench("best.onnx", backends="onnxruntime", precisions="f32", runs=20, baseline=None)  # doctest: +SKIP
        >>> res.cell("ours", "detector", "onnxruntime", "f32", (640, 640)).latency_ms["infer"]  # doctest: +SKIP
        {'median': 41.2, 'p90': 44.0}
    """
    opts = MeasureOptions.build(options, **measure)
    a = _check(model, backends, precisions, imgsz, baseline, int8, calib_size, image, output, progress)
    machine = describe_machine()
    settings = _settings(a, opts)
    notes: list[str] = []
    with _workdir(a.out_dir if keep_models else None) as (work, temporary):
        prep = prepare(a.src, a.backends, a.precisions, a.sizes, a.baseline, a.int8_file, a.calib_size, work,
                       progress, settings)  # fmt: skip
        ul = opts.ultralytics and _has_ultralytics()
        if opts.ultralytics and not ul:
            notes.append("Ultralytics predict not measured: ultralytics is not installed")
        grid = Grid(a.src, prep.files, a.backends, a.precisions, a.sizes, prep.base_info is not None)
        gflops = {"ours": prep.model_info.get("gflops") or {}, "stock": (prep.base_info or {}).get("gflops") or {}}
        cells = measure_cells(grid, a.image, a.resize, opts, ul, gflops, progress)
        peaks = measure_peaks(cells, opts.runs, progress, opts.peak_side, work) if opts.peak else []
        for c in cells if temporary else []:  # files in the deleted temporary folder: say so, not a dangling path
            if c.file and Path(c.file).is_relative_to(work):
                c.file = f"(temporary) {Path(c.file).relative_to(work)}"
    fill_peak_share(cells, peaks)
    machine["loadavg_end"] = loadavg()
    res = BenchResult(model=prep.model_info, baseline=prep.base_info, settings=settings, machine=machine, cells=cells,
                      peaks=peaks, notes=notes)  # fmt: skip
    res.ratios, res.scaling, res.verdicts = analysis.ratios(res), analysis.scaling(res), analysis.verdicts(res)
    for v in res.verdicts:
        LOGGER.info("bench: %s", v)
    if a.out_dir is not None:
        res.save(a.out_dir)
    return res


@contextlib.contextmanager
def _workdir(out_dir: Path | None) -> Iterator[tuple[Path, bool]]:
    """``out_dir/models`` (kept), or a temporary folder removed at the end; yields (folder, temporary)."""
    if out_dir is not None:
        (out_dir / "models").mkdir(parents=True, exist_ok=True)
        yield out_dir / "models", False
        return
    tmp = Path(tempfile.mkdtemp(prefix="edge_mlla_bench_"))
    try:
        yield tmp, True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check(model: Any, backends: Any, precisions: Any, imgsz: Any, baseline: Any, int8: Any, calib_size: Any,
           image: Any, output: Any, progress: bool) -> _Checked:  # fmt: skip
    """Validate everything before slow work."""
    src = inspect_source(model)
    backend_list, precision_list = parse_backends(backends), parse_precisions(precisions)
    calib_size = positive_int(calib_size, "calib_size")
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
            f"{src.path.name} has a fixed input size {label(src.static_hw)}; bench it at that size, or give the .pt "
            f"checkpoint to export it at {', '.join(label(s) for s in sizes)}"
        )
    base_name = parse_baseline(baseline)
    int8_file = _inspect_int8(int8) if int8 is not None else None
    out_dir = None
    if output is not None:
        from edge_mlla._io import ensure_writable_dir

        out_dir = ensure_writable_dir(Path(output))
    if src.kind == "pt" or (isinstance(base_name, str) and base_name):
        need_torch(src.kind == "pt", base_name)
    if isinstance(image, np.ndarray):
        from edge_mlla.ops import as_bgr

        base_img, desc, resize = as_bgr(image), f"array {image.shape[1]}x{image.shape[0]}", False
    else:
        from edge_mlla.ops import read_image

        img_path = Path(image) if image is not None else default_image()
        base_img = read_image(img_path)
        desc, resize = str(img_path.name if image is None else img_path), image is None
    if progress:
        require_tqdm()  # missing -> MissingDependencyError now, not after the exports
    return _Checked(src, backend_list, precision_list, sizes, base_name, int8_file, calib_size, out_dir, base_img,
                    desc, resize)  # fmt: skip


def _settings(a: _Checked, opts: MeasureOptions) -> dict[str, Any]:
    return {
        "backends": a.backends, "precisions": a.precisions, "imgsz": [list(s) for s in a.sizes],
        "runs": opts.runs, "warmup": opts.warmup, "throughput_runs": opts.throughput_n, "batch": 1,
        "conf": opts.conf, "iou": opts.iou,
        "image": {"source": a.image_desc, "shape": list(a.image.shape[:2]),
                  "resized": "long side = input long side" if a.resize else "used as given"},
        "threads": "runtime defaults (all cores)", "interleaved": True,
        "int8": ({"source": "given", "file": str(a.int8_file)} if a.int8_file else
                 {"source": "quantized here", "calibration": f"{a.calib_size} images of the bundled BCCD train split",
                  "openvino": "NNCF post-training quantization (edge_mlla.quantize, default scope)",
                  "onnxruntime": "ONNX Runtime static QDQ (edge_mlla.quantize, default scope)"}),
    }  # fmt: skip


def parse_baseline(baseline: Any) -> str | Path | bool:
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


def need_torch(for_model: bool, base_name: Any) -> None:
    """torch and Ultralytics, or a MissingDependencyError saying what needs them."""
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
