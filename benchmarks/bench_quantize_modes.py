"""``bench_quantize.py --study modes``: edge-mlla quantize's fast and thorough modes next to Ultralytics' INT8 export
of the same checkpoint, in one run (see bench_quantize.py's docstring). Writes ``bench_quantize.{json,md,png}``."""

from __future__ import annotations

import json
import logging
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

LOGGER = logging.getLogger("bench_quantize")
SWEEP = (32, 64, 128, 1000)  # calibration images; 1000 = every train image


def _ultralytics_int8(pt: Path, data: str, imgsz: int, work: Path) -> tuple[Path, float]:
    import edge_mlla.nn  # noqa: F401  (offline set-up before Ultralytics)
    from ultralytics import YOLO

    from edge_mlla.data import validate_dataset
    from edge_mlla.train import _resolved_yaml

    yml = _resolved_yaml(validate_dataset(data, splits=("train", "val")), work)
    copy = work / "ultralytics" / pt.name
    copy.parent.mkdir(parents=True)
    shutil.copy(pt, copy)
    t0 = time.perf_counter()
    folder = YOLO(str(copy)).export(format="openvino", imgsz=imgsz, int8=True, data=str(yml), verbose=False)
    from edge_mlla.modelfile import resolve_model_file

    return resolve_model_file(Path(folder), (".xml",)), time.perf_counter() - t0


def _quantize(xml: Path, data: str, out: Path, **kw: Any) -> tuple[Any, float]:
    from edge_mlla.quantize import quantize

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fewer train images than a sweep point: all are used, said in the report
        rep = quantize(xml, calib=data, output=out, progress=False, **kw)
    return rep, time.perf_counter() - t0


def run_modes(a: Any) -> int:
    from edge_mlla.bench.machine import describe_machine
    from edge_mlla.bench.measure import interleaved
    from edge_mlla.bench.vs_ultralytics import benchmark_app_fps
    from edge_mlla.eval import evaluate
    from edge_mlla.export import export
    from edge_mlla.nn.load import load_detector, train_imgsz

    pt = Path(a.model)
    imgsz = a.imgsz or train_imgsz(load_detector(pt)) or 640
    work = Path(tempfile.mkdtemp(prefix="bench_quantize_modes_"))
    res: dict[str, Any] = {"machine": describe_machine(), "model": str(pt), "imgsz": imgsz, "data": a.data}
    xml = Path(export(pt, format="openvino", imgsz=imgsz, output=work / "ours"))
    ul_xml, ul_s = _ultralytics_int8(pt, a.data, imgsz, work)
    fast, fast_s = _quantize(xml, a.data, work / "fast")
    thorough, thorough_s = _quantize(xml, a.data, work / "thorough", mode="thorough")
    ul_map = evaluate(ul_xml, data=a.data, split=a.split, backend="openvino", progress=False)["mAP50-95"]
    res["runs"] = {
        "ultralytics int8 export": {"seconds": round(ul_s, 1), "map50_95": ul_map, "file": ul_xml.name},
        **{f"edge-mlla quantize ({m})": {"seconds": round(s, 1), "map50_95": r.int8.map50_95,
                                         "float_map50_95": r.fp32.map50_95, "drop_points": round(100 * r.map_drop, 3),
                                         "chosen": r.reason, "parts": r.timings, "budget": r.budget}
           for m, r, s in (("fast", fast, fast_s), ("thorough", thorough, thorough_s))},
    }  # fmt: skip
    files = {"ultralytics int8": ul_xml, "edge-mlla fast": Path(fast.output), "edge-mlla thorough": Path(thorough.output),
             "float (ours)": xml}  # fmt: skip
    thr = interleaved([lambda r, f=f: benchmark_app_fps(f, 3.0) for f in files.values()], a.rounds, combine=list)
    res["throughput_fps"] = {k: {"median": round(statistics.median(v), 1), "rounds": [round(x, 1) for x in v]}
                             for k, v in zip(files, thr)}  # fmt: skip
    ul_r = thr[0]
    res["throughput_vs_ultralytics"] = {k: round(statistics.median(x / y for x, y in zip(v, ul_r)), 3)
                                        for k, v in zip(files, thr)}  # fmt: skip
    res["calibration_sweep"] = []
    for n in SWEEP:
        rep, s = _quantize(xml, a.data, work / f"sweep_{n}", subset_size=n, latency_runs=0)
        res["calibration_sweep"].append({"requested": n, "used": rep.calibration.get("used"), "seconds": round(s, 1),
                                         "drop_points": round(100 * rep.map_drop, 3), "parts": rep.timings})  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_quantize.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    md = _markdown(res)
    (out / "bench_quantize.md").write_text(md)
    _plot(res, out / "bench_quantize.png")
    print(md)
    return 0


def _markdown(res: dict[str, Any]) -> str:
    from edge_mlla.bench.machine import machine_line

    m = res["machine"]
    r = res["runs"]
    lines = [f"# INT8: edge-mlla quantize (fast, thorough) vs Ultralytics' INT8 export, {Path(res['model']).name} at "
             f"{res['imgsz']}", "", f"**Machine**: {machine_line(m)}; OpenVINO {m['versions'].get('openvino')}, NNCF "
             f"{m['versions'].get('nncf')}, Ultralytics {m['versions'].get('ultralytics')}; {m['date']}.", "",
             "**Command**: `.venv/bin/python benchmarks/bench_quantize.py --study modes` (under `/work/bin/quiet`: "
             "nothing else running). mAP50-95 on BCCD val through `edge_mlla.eval` (Ultralytics' metric); throughput: "
             "`benchmark_app -hint throughput`, interleaved rounds, median; ratios: median of per-round ratios.", "",
             "| run | wall s | mAP50-95 | drop (points) | benchmark_app FPS | vs Ultralytics INT8 |",
             "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    thr, rel = res["throughput_fps"], res["throughput_vs_ultralytics"]
    for label, key in (("Ultralytics `export(format='openvino', int8=True)`", "ultralytics int8"),
                       ("edge-mlla quantize (fast, default)", "edge-mlla fast"),
                       ("edge-mlla quantize (thorough)", "edge-mlla thorough")):  # fmt: skip
        run = r["ultralytics int8 export"] if key.startswith("ultra") else r[f"edge-mlla quantize ({key.split()[-1]})"]
        drop = run.get("drop_points")
        lines.append(f"| {label} | {run['seconds']:.1f} | {run['map50_95']:.4f} | "
                     f"{'-' if drop is None else f'{drop:+.2f}'} | {thr[key]['median']:.1f} | {rel[key]:.3f}x |")  # fmt: skip
    lines.append(f"| float model (ours, device default precision) | - | {r['edge-mlla quantize (fast)']['float_map50_95']:.4f} | "
                 f"- | {thr['float (ours)']['median']:.1f} | {rel['float (ours)']:.3f}x |")  # fmt: skip
    for mode in ("fast", "thorough"):
        run = r[f"edge-mlla quantize ({mode})"]
        parts = ", ".join(f"{k} {v:.1f} s" for k, v in run["parts"].items())
        lines += ["", f"{mode}: {parts}; chosen: {run['chosen']}; budget {run['budget']}."]
    lines += ["", "Calibration sweep (fast mode, one candidate, no timing):", "",
              "| images requested | used | wall s | drop (points) |", "|---:|---:|---:|---:|"]  # fmt: skip
    for s in res["calibration_sweep"]:
        lines.append(f"| {s['requested']} | {s['used']} | {s['seconds']:.1f} | {s['drop_points']:+.2f} |")
    return "\n".join(lines) + "\n"


def _plot(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = res["runs"]
    keys = [("Ultralytics", "ultralytics int8 export", "ultralytics int8"), ("fast", "edge-mlla quantize (fast)",
            "edge-mlla fast"), ("thorough", "edge-mlla quantize (thorough)", "edge-mlla thorough")]  # fmt: skip
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    panels = [("time to INT8 (s)", [r[k]["seconds"] for _, k, _ in keys]),
              ("mAP50-95", [r[k]["map50_95"] for _, k, _ in keys]),
              ("benchmark_app FPS", [res["throughput_fps"][t]["median"] for _, _, t in keys])]  # fmt: skip
    for ax, (title, vals) in zip(axes, panels):
        ax.bar([n for n, _, _ in keys], vals, color=["#8c8c8c", "#1f77b4", "#2ca02c"])
        for i, v in enumerate(vals):
            ax.text(i, v, f"{v:.3g}", ha="center", va="bottom", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.margins(y=0.15)
    fig.suptitle(f"INT8 of {Path(res['model']).name} at {res['imgsz']} on {res['machine']['cpu']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
