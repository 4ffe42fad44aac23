"""Our deploy path against Ultralytics' on one checkpoint, measured in one process, in interleaved rounds.

The comparison a user makes when choosing a deploy stack: the same ``best.pt`` taken to a CPU both ways,

* **Ultralytics**: ``YOLO(pt).export(format="openvino")`` (float) and ``export(format="openvino", int8=True,
  data=D)`` (NNCF, their defaults), run with ``YOLO(ir).predict`` (images) and ``predict(source=clip,
  stream=True)`` (video);
* **ours**: ``edge-mlla export`` (re-parameterized, graph cleaned) and ``edge-mlla quantize`` (its default mode),
  run with :class:`~edge_mlla.Detector` (images) and :class:`~edge_mlla.stream.StreamRunner` (video),

and for each path x precision (float: the device's default, bf16 on CPUs with BF16; INT8): the time to make the
model, mAP50-95 / mAP50 on the dataset's val split (one scorer for all four files: :func:`edge_mlla.eval.evaluate`,
Ultralytics' metric), end-to-end latency at batch 1 on one image, model throughput (``benchmark_app``, throughput
hint, same for all four files) and stream FPS on a clip (every frame, no drawing). Latency, throughput and stream
FPS are measured in ``rounds`` interleaved rounds (each path once per round, the start rotating) and reported as
medians over rounds, so the ratios are one comparison on a shared machine.

Example:
    >>> from edge_mlla.bench.vs_ultralytics import compare
    >>> res = compare("best.pt", data="bccd", output="runs/vs_ultralytics")  # doctest: +SKIP
    >>> print(res.table())                                                   # doctest: +SKIP

Imports inside functions: the export, quantize, training and stream sides (torch, Ultralytics, NNCF) load only in
the step that uses them (start-up time).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_mlla.bench.measure import interleaved
from edge_mlla.bench.options import bar, quiet
from edge_mlla.bench.vs_report import Row, VsResult
from edge_mlla.errors import ConfigError, EdgeMLLAError, MissingFileError, SourceError

LOGGER = logging.getLogger("edge_mlla")
CONF, IOU = 0.25, 0.45  # the same thresholds for both predictors
MODES = ("fast", "thorough")


@dataclass(frozen=True)
class VsOptions:
    """What :func:`compare` measures and how long.

    ``imgsz``: export size (None: the checkpoint's training size); ``rounds``: interleaved rounds; ``runs``: timed
    calls per latency measurement per round; ``frames``: clip frames per stream measurement; ``throughput_s``:
    seconds of ``benchmark_app`` per model per round (0: throughput not measured); ``clip``: the video (None: the bundled ``bccd_pan.mp4``);
    ``val_limit``: score only the first N val images; ``calib_size``: calibration images for both INT8 paths (None:
    each tool's default: Ultralytics the whole val split, ours its own choice); ``mode``: our quantize mode.

    Example:
        >>> VsOptions.build(rounds=2).rounds
        2
    """

    imgsz: int | str | None = None
    rounds: int = 3
    runs: int = 30
    frames: int = 150
    throughput_s: float = 3.0
    clip: str | None = None
    val_limit: int | None = None
    calib_size: int | None = None
    mode: str = "fast"

    @classmethod
    def build(cls, base: VsOptions | None = None, **overrides: Any) -> VsOptions:
        """``base`` (or the defaults) with the overrides that are not None, checked."""
        names = {f.name for f in fields(cls)}
        bad = sorted(set(overrides) - names)
        if bad:
            raise ConfigError(f"unknown option(s) {', '.join(bad)}; expected some of {', '.join(sorted(names))}")
        o = replace(base or cls(), **{k: v for k, v in overrides.items() if v is not None})
        for name in ("rounds", "runs", "frames"):
            v = getattr(o, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be an int >= 1, got {v!r}")
        for name in ("val_limit", "calib_size"):
            v = getattr(o, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ConfigError(f"{name} must be an int >= 1 or None, got {v!r}")
        if not isinstance(o.throughput_s, (int, float)) or isinstance(o.throughput_s, bool) or o.throughput_s < 0:
            raise ConfigError(f"throughput_s must be a number of seconds >= 0 (0: no throughput), got {o.throughput_s!r}")
        if o.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {o.mode!r}")
        return o


def compare(checkpoint: str | os.PathLike, data: str | os.PathLike = "bccd", options: VsOptions | None = None,
            output: str | os.PathLike | None = None, progress: bool = True, **overrides: Any) -> VsResult:  # fmt: skip
    """Both deploy paths on ``checkpoint``: make the models, score them, time them (see the module docstring).

    Args:
        checkpoint: an Ultralytics ``.pt`` (ours or stock).
        data: data.yaml or bundled dataset name: calibration images for INT8 and the val split for mAP.
        options: :class:`VsOptions`; ``**overrides`` set its fields by name (``compare(pt, rounds=2)``).
        output: folder for ``vs_ultralytics.md`` / ``.json`` / ``.png`` (None: none written).
        progress: a progress bar on stderr.

    Returns:
        :class:`~edge_mlla.bench.vs_report.VsResult` (``.table()``, ``.rows``, ``.ratios``, ``.goals``).

    Raises:
        MissingFileError (checkpoint, clip), SourceError (a clip that is not a readable video), DatasetError (data),
        ConfigError (options), MissingDependencyError (ultralytics, openvino, nncf).
    """
    from edge_mlla.bench.run import need_torch
    from edge_mlla.data import validate_dataset

    opts = VsOptions.build(options, **overrides)
    pt = Path(checkpoint)
    if not pt.is_file() or pt.suffix.lower() != ".pt":
        raise MissingFileError(f"checkpoint not found or not a .pt: {pt} (give the trained best.pt)")
    need_torch(True, None)
    d = validate_dataset(data, splits=("train", "val"))
    clip = _clip(opts.clip)
    out_dir = None
    if output is not None:
        from edge_mlla._io import ensure_writable_dir

        out_dir = ensure_writable_dir(Path(output))
    with tempfile.TemporaryDirectory(prefix="edge_mlla_vs_") as tmp:
        work = Path(tmp)
        hw, trained = _size(pt, opts.imgsz)
        rows = _make_models(pt, d, hw, opts, work, progress)
        _score(rows, data, opts, progress)
        _time_all(rows, hw, clip, opts, progress)
        res = VsResult.build(rows, checkpoint=pt, data=str(d["yaml"]), imgsz=hw, trained=trained, clip=clip,
                             options=opts)  # fmt: skip
    if out_dir is not None:
        res.save(out_dir)
    return res


# ------------------------------------------------------------------------------------------------ the models
def _clip(clip: str | None) -> Path:
    if clip is None:
        from edge_mlla.clips import bundled_clip

        return bundled_clip()
    p = Path(clip)
    if not p.is_file():
        raise MissingFileError(f"clip not found: {p} (a video file for the stream FPS)")
    from edge_mlla.stream.sources import open_source

    cap, _ = open_source(p)  # SourceError when it is not a video: before minutes of making and scoring models
    try:
        ok, frame = cap.read()
    finally:
        cap.release()
    if not ok or frame is None:
        raise SourceError(f"{p}: no frame could be read from it (a video file for the stream FPS)")
    return p


def _size(pt: Path, imgsz: Any) -> tuple[tuple[int, int], int | None]:
    """The export size (the training size unless given; square: Ultralytics' export takes one int) and the
    training size."""
    from edge_mlla.nn.load import load_detector
    from edge_mlla.ops import parse_imgsz

    try:
        from edge_mlla.nn.load import train_imgsz
    except ImportError:  # an older nn.load
        def train_imgsz(m: Any) -> int | None:  # noqa: ANN001
            size = (getattr(m, "args", None) or {}).get("imgsz") if isinstance(getattr(m, "args", None), dict) else None
            return int(size) if isinstance(size, int) else None

    trained = train_imgsz(load_detector(pt))
    hw = parse_imgsz(imgsz if imgsz is not None else (trained or 640))
    if hw[0] != hw[1]:
        raise ConfigError(f"--vs-ultralytics compares square exports (Ultralytics' export takes one size), got {hw}")
    return hw, trained


def _ultralytics_yaml(d: dict[str, Any], work: Path) -> Path:
    from edge_mlla.train import _resolved_yaml

    return _resolved_yaml(d, work)


def _make_models(pt: Path, d: dict[str, Any], hw: tuple[int, int], opts: VsOptions, work: Path,
                 progress: bool) -> list[Row]:  # fmt: skip
    """The four model files, each step timed: Ultralytics' float and INT8 exports, our export and quantize."""
    import edge_mlla.nn  # noqa: F401  (registers our modules; offline set-up before Ultralytics)
    from ultralytics import YOLO

    from edge_mlla.data import split_images
    from edge_mlla.export import export
    from edge_mlla.quantize import quantize

    ul_pt = work / "ultralytics" / pt.name
    ul_pt.parent.mkdir(parents=True)
    shutil.copy(pt, ul_pt)  # Ultralytics writes its exports beside the checkpoint
    yml = _ultralytics_yaml(d, work)
    n_val = len(split_images(d, "val"))
    calib_kw = {} if opts.calib_size is None else {"fraction": min(1.0, opts.calib_size / max(n_val, 1))}
    pbar = bar(4, "vs ultralytics: make models", progress)
    rows: list[Row] = []
    try:
        with quiet("ultralytics"):
            t0 = time.perf_counter()
            f = YOLO(str(ul_pt)).export(format="openvino", imgsz=hw[0], verbose=False)
            rows.append(Row("ultralytics", "float", _xml(f), make_s=time.perf_counter() - t0,
                            how="YOLO(pt).export(format='openvino')"))  # fmt: skip
            pbar.update(1)
            t0 = time.perf_counter()
            f = YOLO(str(ul_pt)).export(format="openvino", imgsz=hw[0], int8=True, data=str(yml), verbose=False,
                                        **calib_kw)  # fmt: skip
            rows.append(Row("ultralytics", "int8", _xml(f), make_s=time.perf_counter() - t0,
                            how="YOLO(pt).export(format='openvino', int8=True, data=D)"))  # fmt: skip
            pbar.update(1)
        t0 = time.perf_counter()
        xml = Path(export(pt, format="openvino", imgsz=hw, output=work / "ours"))
        rows.append(Row("ours", "float", xml, make_s=time.perf_counter() - t0, how="edge-mlla export"))
        pbar.update(1)
        t0 = time.perf_counter()
        q_kw: dict[str, Any] = {"mode": opts.mode} if opts.mode != "fast" else {}
        if opts.calib_size is not None:
            q_kw["subset_size"] = opts.calib_size
        rep = quantize(xml, calib=str(d["yaml"]), output=work / "ours_int8", progress=False, **q_kw)
        rows.append(Row("ours", "int8", Path(rep.output), make_s=time.perf_counter() - t0,
                        how=f"edge-mlla quantize ({opts.mode})", notes=rep.reason))  # fmt: skip
        pbar.update(1)
    finally:
        pbar.close()
    return rows


def _xml(folder: Any) -> Path:
    """The .xml of an IR folder Ultralytics wrote (modelfile resolves folders)."""
    from edge_mlla.modelfile import resolve_model_file

    return resolve_model_file(Path(str(folder)), (".xml",))


# ------------------------------------------------------------------------------------------------- measuring
def _score(rows: list[Row], data: Any, opts: VsOptions, progress: bool) -> None:
    from edge_mlla.eval import evaluate

    pbar = bar(len(rows), "vs ultralytics: mAP", progress)
    try:
        for r in rows:
            m = evaluate(r.file, data=data, split="val", backend="openvino", limit=opts.val_limit, progress=False)
            r.map50_95, r.map50, r.precision = m["mAP50-95"], m["mAP50"], m["precision"]
            r.float_precision = m.get("float_precision")
            pbar.update(1)
    finally:
        pbar.close()


class _Predictor:
    """One path's image and video runner: ``once(image)`` (one call, batch 1) and ``stream(clip, n)`` -> FPS."""

    def __init__(self, row: Row, hw: tuple[int, int]) -> None:
        self.row, self.hw = row, hw
        if row.path == "ultralytics":
            from edge_mlla.bench.runners import open_ultralytics

            self.yolo = open_ultralytics(row.file)
            self.kw = {"imgsz": hw[0], "conf": CONF, "iou": IOU, "verbose": False}
        else:
            from edge_mlla import Detector

            self.det = Detector(row.file, conf=CONF, iou=IOU)
            self.det_stream = Detector(row.file, conf=CONF, iou=IOU, hint="throughput")

    def once(self, image: np.ndarray) -> None:
        if self.row.path == "ultralytics":
            with quiet("ultralytics"):
                self.yolo.predict(image, **self.kw)
        else:
            self.det(image)

    def stream(self, clip: Path, frames: int) -> float:
        n = 0
        t0 = time.perf_counter()
        if self.row.path == "ultralytics":
            with quiet("ultralytics"):
                for _ in self.yolo.predict(source=str(clip), stream=True, **self.kw):
                    n += 1
                    if n >= frames:
                        break
        else:
            from edge_mlla.stream import StreamRunner

            with StreamRunner(self.det_stream, clip, max_frames=frames) as run:
                for _ in run:
                    n += 1
        return n / (time.perf_counter() - t0)

    def close(self) -> None:
        if self.row.path == "ours":
            self.det.close()
            self.det_stream.close()
        else:
            self.yolo = None


def benchmark_app_fps(xml: Path, seconds: float, hint: str = "throughput", precision: str | None = None) -> float:
    """``benchmark_app`` throughput (FPS) of an IR on CPU with ``hint``, in its own process (the OpenVINO tool
    users quote), at the device's default precision or ``precision`` (``f32``/``bf16``). Raises EdgeMLLAError when
    it fails or prints no throughput."""
    code = "import sys; from openvino.tools.benchmark.main import main; sys.argv[0] = 'benchmark_app'; sys.exit(main())"
    cmd = [sys.executable, "-c", code, "-m", str(xml), "-d", "CPU", "-hint", hint, "-t", f"{max(1, round(seconds))}"]
    if precision is not None:
        cmd += ["-infer_precision", precision]
    env = {**os.environ, "OPENVINO_TELEMETRY_OPT_OUT": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120 + 4 * seconds, env=env)
    m = re.search(r"Throughput:\s*([\d.]+)\s*FPS", out.stdout + out.stderr)
    if out.returncode != 0 or not m:
        raise EdgeMLLAError(f"benchmark_app failed on {xml.name} (exit {out.returncode}): {(out.stderr or out.stdout)[-300:]}")
    return float(m.group(1))


def _latency_round(preds: list[_Predictor], image: np.ndarray, runs: int, r: int) -> list[float]:
    """One round of batch-1 latency: ``runs`` cycles, each calling every path once (the order rotating), so a change
    in the shared machine's speed lands on all paths alike; per path, the median of its calls in ms. (Blocks of calls
    per path, as before, let one path's block fall into a slow minute: a 0.80x ratio measured 0.67-1.0x by round.)"""
    times: list[list[float]] = [[] for _ in preds]
    for k in range(runs):
        for j in range(len(preds)):
            i = (j + k + r) % len(preds)
            t = time.perf_counter()
            preds[i].once(image)
            times[i].append((time.perf_counter() - t) * 1e3)
    return [float(np.median(t)) for t in times]


def _time_all(rows: list[Row], hw: tuple[int, int], clip: Path, opts: VsOptions, progress: bool) -> None:
    """Latency, throughput and stream FPS of every row, in interleaved rounds."""
    from edge_mlla.bench.run import default_image
    from edge_mlla.ops import read_image

    image = read_image(default_image())
    preds = [_Predictor(r, hw) for r in rows]
    pbar = bar(3 * opts.rounds * len(rows), "vs ultralytics: time", progress)

    def step(fn: Any) -> Any:
        def run(r: int) -> float:
            v = fn(r)
            pbar.update(1)
            return v

        return run

    try:
        for p in preds:  # warm-up outside the rounds (first calls compile kernels, Ultralytics sets up)
            for _ in range(3):
                p.once(image)
        keep = list  # every round's number: the ratios are medians of per-round ratios (paired in time)
        per_round = []
        for r in range(opts.rounds):
            per_round.append(_latency_round(preds, image, opts.runs, r))
            pbar.update(len(preds))
        lat = [[rnd[i] for rnd in per_round] for i in range(len(preds))]  # per row: its median call of each round
        fps = interleaved([step(lambda r, p=p: p.stream(clip, opts.frames)) for p in preds], opts.rounds, combine=keep)
    finally:
        for p in preds:
            p.close()
    try:
        thr = interleaved([step(lambda r, row=row: benchmark_app_fps(row.file, opts.throughput_s)) for row in rows],
                          opts.rounds, combine=keep) if opts.throughput_s else [[] for _ in rows]  # fmt: skip
    except EdgeMLLAError as e:
        LOGGER.warning("vs ultralytics: throughput not measured: %s", e)
        thr = [[] for _ in rows]
    finally:
        pbar.close()
    for r, ms, f, t in zip(rows, lat, fps, thr):
        r.rounds = {"latency_ms": [round(v, 3) for v in ms], "stream_fps": [round(v, 2) for v in f],
                    "throughput_fps": [round(v, 2) for v in t]}  # fmt: skip
        r.latency_ms, r.stream_fps = round(float(np.median(ms)), 2), round(float(np.median(f)), 1)
        r.throughput_fps = round(float(np.median(t)), 1) if t else None
