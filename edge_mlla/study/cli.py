"""``edge-mlla study``: parsing and printing only; the work is in :mod:`edge_mlla.study`.

Each command imports what it runs inside its handler, so that `--help` and every other command start without loading
torch, OpenVINO, NNCF or Ray."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_mlla.study.verdict import REPS


def _cmd_study(a: argparse.Namespace) -> int:
    from edge_mlla.errors import ConfigError
    from edge_mlla.study import import_legacy, report, study

    arms = [m.strip() for m in a.models.split(",")] if a.models else None
    if a.import_:
        added = import_legacy(a.out, a.import_)
        print(f"imported {added} record(s) into {Path(a.out) / 'records.jsonl'}")
        rep = report(a.out, arms, a.reps)
    elif a.report:
        rep = report(a.report, arms, a.reps)
    else:
        if not arms:
            raise ConfigError("--models is required to run a study, e.g. --models yolo11n.yaml,yolo11n-mlla.yaml "
                              "(or --report DIR to rebuild a report)")  # fmt: skip
        if a.plan:
            return _print_plan(a, arms)
        rep = study(arms, data=a.data, seeds=a.seeds, epochs=a.epochs, imgsz=a.imgsz, batch=a.batch, out=a.out,
                    runs=a.runs, device=a.device, jobs=a.jobs, progress=not a.no_progress)  # fmt: skip
    folder = Path(a.report or a.out)
    print(rep.summary())
    print(f"report: {folder / 'report.md'}  plot: {folder / 'study.png'}  verdicts: {folder / 'verdicts.json'}")
    if rep.failed:
        print(f"failed: {', '.join(rep.failed)} (see <runs>/<name>.log); run the same command again to retry them")
        return 1
    return 0


def _print_plan(a: argparse.Namespace, arms: list[str]) -> int:
    from edge_mlla.study.plan import epochs_done
    from edge_mlla.study.runner import plan_study

    _, items = plan_study(arms, data=a.data, seeds=a.seeds, epochs=a.epochs, imgsz=a.imgsz, batch=a.batch, out=a.out,
                          runs=a.runs)  # fmt: skip
    for spec, state in items:  # a finished run is in the records (its run folder may be gone): no epoch count
        where = "(recorded)" if state == "done" else f"{epochs_done(spec.run_dir)}/{spec.recipe.epochs} epochs"
        print(f"{spec.name:32s} {state:8s} {where:14s} {spec.run_dir}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``study`` on the ``edge-mlla`` parser."""
    p = sub.add_parser("study", help="seed-controlled A/B training of model yamls, with a statistical verdict",
                       description="Train every model with every seed under one recipe (from scratch, amp off, "
                       "deterministic), score each with Ultralytics' validator, and say for each pair whether one is "
                       "better, worse or not measurably different, and how many seeds would settle it. Run the same "
                       "command again after a kill: finished runs are kept, a run in flight resumes from last.pt.")  # fmt: skip
    p.add_argument("--models", help="the arms: comma-separated model yamls, e.g. yolo11n.yaml,yolo11n-mlla.yaml "
                   "(with --report: which arms, in which order)")  # fmt: skip
    p.add_argument("--data", default="bccd", help="bundled dataset name or data.yaml (default: bccd)")
    p.add_argument("--seeds", default="0-3", help="e.g. 0-4 or 0,2,5 (default: 0-3)")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--imgsz", type=int, default=416, help="square training and validation size (default: 416)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--out", default="runs/study", help="study folder: records.jsonl, perimage/, report.md, study.png")
    p.add_argument("--runs", default=None, help="parent of the run folders <model>-s<seed>/ (default: runs/study)")
    p.add_argument("--device", default=None, help="cpu, 0 or 0,1 (default: every CUDA GPU, else the CPU)")
    p.add_argument("--jobs", type=int, default=None, help="runs at a time (default: by GPU memory; 1 on CPU)")
    p.add_argument("--report", metavar="DIR", help="only rebuild report.md, verdicts.json and study.png from DIR's records")
    p.add_argument("--import", dest="import_", nargs="+", metavar="FILE",
                   help="add earlier records to --out (benchmarks/train_study.py's JSONL, or a .py with QUOTED rows)")  # fmt: skip
    p.add_argument("--reps", type=int, default=REPS, help=f"image resamples for the image-noise term (default: {REPS})")
    p.add_argument("--plan", action="store_true", help="only print each run's state (done, rescore, resume, train)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(fn=_cmd_study)
