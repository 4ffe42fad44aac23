"""The controlled training study of issue 12 (superseded by `edge-mlla study`; results: docs/accuracy.md).

One recipe for every model: from scratch on bundled BCCD train, imgsz 416, batch 16, 50 epochs,
amp off, deterministic, Ultralytics defaults otherwise. ``best.pt`` is scored with Ultralytics'
own ``val`` (imgsz 416, batch 32, rect) on BCCD val (87 images), test (72) and val+test pooled
(159), which lowers the seed noise.

Every finished run appends one JSON line to ``benchmarks/results/train_study.jsonl`` and rewrites
``train_study.md`` (per-run rows plus mean and spread per model), so a session that ends mid-queue
loses only the run in flight. Runs already recorded are skipped.

    python benchmarks/train_study.py yolo11n-mlla.yaml:0 yolo11n-mlla-p4.yaml:0   # queue, one after another
    python benchmarks/train_study.py --table                                       # rewrite the table only

Each run is ~70-105 min on 2 cores (a run cut off by a session's end resumes from its last.pt); start the queue with ``nohup ... &``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
JSONL = RESULTS / "train_study.jsonl"
TABLE = RESULTS / "train_study.md"
RUNS = ROOT / "runs" / "study"
RECIPE = dict(imgsz=416, batch=16, epochs=50, amp=False, deterministic=True)
VAL = dict(imgsz=416, batch=32, rect=True)

# Rows measured by an earlier session with exactly this recipe (issue 12); no pooled score was kept.
QUOTED = [
    {"model": "yolo11n.yaml", "seed": 0, "val": [0.527, 0.827], "test": [0.526, 0.855], "source": "issue 12"},
    {"model": "yolo11n.yaml", "seed": 1, "val": [0.560, 0.861], "test": [0.541, 0.845], "source": "issue 12"},
    {"model": "yolo26n.yaml", "seed": 0, "val": [0.509, 0.848], "test": [0.507, 0.841], "source": "issue 12"},
]


def _records() -> list[dict]:
    if not JSONL.is_file():
        return []
    return [json.loads(line) for line in JSONL.read_text().splitlines() if line.strip()]


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run_one(model: str, seed: int) -> dict:
    """Train ``model`` with the recipe and ``seed``; score best.pt; return the record."""
    import edge_mlla.nn  # noqa: F401  registers C2MLLA and our yamls, sets up offline mode
    import ultralytics
    import yaml
    from ultralytics import YOLO
    from ultralytics.utils.torch_utils import get_flops

    from edge_mlla.data import resolve_data

    data = resolve_data("bccd")
    name = f"{Path(model).stem}-s{seed}"
    RUNS.mkdir(parents=True, exist_ok=True)
    last = RUNS / name / "weights" / "last.pt"
    t0 = time.time()
    if last.is_file():
        # a session ended mid-run: Ultralytics resumes from the epoch, optimizer and EMA in last.pt
        print(f"resuming {name} from {last}", flush=True)
        yolo = YOLO(str(last))
        yolo.train(resume=True)
    else:
        yolo = YOLO(model)
        yolo.train(data=str(data), seed=seed, project=str(RUNS), name=name, exist_ok=True, plots=False, **RECIPE)
    # training wall time from Ultralytics' own cumulative clock (survives a resume)
    wall = _train_seconds(Path(yolo.trainer.save_dir) / "results.csv") or (time.time() - t0)
    best = Path(yolo.trainer.best)
    epochs_done = len((Path(yolo.trainer.save_dir) / "results.csv").read_text().strip().splitlines()) - 1

    pooled = RUNS / "bccd_pooled.yaml"
    d = yaml.safe_load(data.read_text())
    root = data.parent.resolve()
    pooled.write_text(yaml.safe_dump({"path": str(root), "train": d["train"], "val": [d["val"], d["test"]],
                                      "names": d["names"]}))
    scores = {}
    for split, yml in (("val", data), ("test", data), ("pooled", pooled)):
        m = YOLO(str(best))
        r = m.val(data=str(yml), split="val" if split == "pooled" else split, plots=False, verbose=False,
                  project=str(RUNS / name), name=f"val-{split}", exist_ok=True, **VAL)
        scores[split] = [round(float(r.box.map), 4), round(float(r.box.map50), 4)]
    m = YOLO(str(best)).model
    params = sum(p.numel() for p in m.parameters())
    gflops = _profiler_gflops(m, 640)
    return {
        "model": model, "seed": seed, **{k: scores[k] for k in ("val", "test", "pooled")},
        "epochs": epochs_done, "best_epoch": _best_epoch(Path(yolo.trainer.save_dir) / "results.csv"),
        "wall_min": round(wall / 60, 1), "params": params, "gflops640": round(float(gflops), 2),
        "gflops640_thop": round(float(get_flops(m, 640)), 2),
        "args": {**RECIPE, "seed": seed, "data": "bccd"}, "weights": str(best.relative_to(ROOT)),
        "cpu": _cpu(), "cores": os.cpu_count(), "ultralytics": ultralytics.__version__,
        "torch": __import__("torch").__version__, "date": time.strftime("%Y-%m-%d"), "source": "this script",
    }


def _profiler_gflops(model, imgsz: int) -> float:
    """GFLOPs of one 1x3ximgszximgsz forward counted by torch's profiler (thop misses matmuls)."""
    import copy

    import torch

    m = copy.deepcopy(model).float().eval()
    x = torch.zeros(1, 3, imgsz, imgsz)
    with torch.no_grad(), torch.profiler.profile(with_flops=True) as prof:
        m(x)
    return sum(e.flops for e in prof.key_averages()) / 1e9


def _train_seconds(csv: Path) -> float | None:
    import csv as _csv

    rows = list(_csv.DictReader(csv.open()))
    key = next((k for k in rows[0] if k.strip() == "time"), None) if rows else None
    if key is None:
        return None
    # cumulative per training process: a resumed run restarts the clock, so add up each segment's last value
    times = [float(r[key]) for r in rows]
    return sum(a for a, b in zip(times, times[1:] + [0.0]) if b < a)


def _best_epoch(csv: Path) -> int:
    import csv as _csv

    rows = list(_csv.DictReader(csv.open()))
    key = next(k for k in rows[0] if k.strip() == "metrics/mAP50-95(B)")
    fit = [0.1 * float(r[key.replace("mAP50-95", "mAP50")]) + 0.9 * float(r[key]) for r in rows]
    return 1 + max(range(len(fit)), key=fit.__getitem__)


def _fmt(vals: list[float]) -> str:
    if not vals:
        return "-"
    if len(vals) == 1:
        return f"{vals[0]:.3f}"
    return f"{statistics.mean(vals):.3f} ± {statistics.stdev(vals):.3f} ({min(vals):.3f}-{max(vals):.3f})"


def write_table() -> str:
    recs = QUOTED + _records()
    lines = [
        "# Training study: BCCD, from scratch, imgsz 416, batch 16, 50 epochs, amp off, deterministic",
        "",
        "Scored with Ultralytics `val` of best.pt (imgsz 416, batch 32, rect). mAP50-95 / mAP50.",
        "Pooled = val+test (159 images). GFLOPs at 640 from the torch profiler (counts MLLA's matmuls; thop's figure is in the JSONL).",
        "Reproduce a row: `python benchmarks/train_study.py MODEL:SEED`.",
        "",
        "## Runs",
        "",
        "| model | seed | val | test | pooled | best/epochs | wall min | params | GFLOPs | CPU | source |",
        "|---|---:|---|---|---|---|---:|---:|---:|---|---|",
    ]
    for r in recs:
        pair = lambda k: f"{r[k][0]:.3f} / {r[k][1]:.3f}" if k in r else "-"  # noqa: E731
        lines.append(
            f"| {r['model']} | {r['seed']} | {pair('val')} | {pair('test')} | {pair('pooled')} | "
            f"{r.get('best_epoch', '-')}/{r.get('epochs', 50)} | {r.get('wall_min', '-')} | "
            f"{r.get('params', '-')} | {r.get('gflops640', '-')} | {r.get('cpu', '-')} | {r['source']} |"
        )
    lines += ["", "## Per model: mean ± sample std (min-max) of mAP50-95 over seeds", "",
              "| model | runs | val | test | pooled |", "|---|---:|---|---|---|"]
    for model in dict.fromkeys(r["model"] for r in recs):
        rs = [r for r in recs if r["model"] == model]
        col = lambda k: _fmt([r[k][0] for r in rs if k in r])  # noqa: E731
        lines.append(f"| {model} | {len(rs)} | {col('val')} | {col('test')} | {col('pooled')} |")
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    TABLE.write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*", help="MODEL:SEED, e.g. yolo11n-mlla.yaml:0")
    ap.add_argument("--table", action="store_true", help="only rewrite the markdown table")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # internal: run in this process
    a = ap.parse_args(argv)
    if a.table:
        print(write_table())
        return 0
    for spec in a.runs:
        model, _, seed = spec.partition(":")
        seed = int(seed or 0)
        if any(r["model"] == model and r["seed"] == seed for r in _records()):
            print(f"skip {model} seed {seed}: already recorded", flush=True)
            continue
        if a.one:
            rec = run_one(model, seed)
            with JSONL.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            write_table()
            continue
        # one process per run: a fresh Ultralytics state, and a crash costs one run only
        print(f"{time.strftime('%H:%M:%S')} start {model} seed {seed}", flush=True)
        rc = subprocess.call([sys.executable, __file__, "--one", spec], cwd=ROOT)
        print(f"{time.strftime('%H:%M:%S')} done {model} seed {seed}: rc={rc}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
