"""Run a study: every (model, seed) with one recipe, a queue that survives a kill, one record per finished run, and
the report rebuilt after each (torch is imported only to find GPUs, when asked to).

Runs go to CUDA GPUs when there are any (several per GPU when its free memory allows), else one at a time on the
CPU; each run is its own process (``python -m edge_mlla.study.worker``), logging to ``<runs>/<name>.log``.
A killed study resumes where it stopped: finished runs are never redone, a run in flight resumes from its last.pt.

Example:
    >>> from edge_mlla.study import study
    >>> rep = study(["yolo11n.yaml", "yolo11n-mlla.yaml"], data="bccd", seeds="0-3", epochs=50)  # doctest: +SKIP
    >>> print(rep.summary())  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from edge_mlla.errors import ConfigError
from edge_mlla.study.plan import Recipe, RunSpec, check_recipe, data_name, epochs_done, parse_seeds, plan
from edge_mlla.study.records import ImageStats, add_record, arm_of, load_image_stats, read_records
from edge_mlla.study.report import StudyReport, build_report, write_report
from edge_mlla.study.verdict import REPS

LOGGER = logging.getLogger("edge_mlla")
PER_RUN_GIB = 6.0  # GPU memory set aside per concurrent run (a nano model at batch 16 needs 2-3 GiB)
MAX_PER_GPU = 4
POLL_S = 5.0
WORKER = (sys.executable, "-m", "edge_mlla.study.worker")  # + SPEC.json RESULT.json


def slots(device: str | None = None, jobs: int | None = None) -> list[str]:
    """The device of each concurrent run: every CUDA GPU (``device=None``), as many runs per GPU as its free memory
    allows (:data:`PER_RUN_GIB` each, at most :data:`MAX_PER_GPU`, and at most half the CPU cores in all, which
    feed the data loaders), else one CPU run; ``jobs`` overrides the count."""
    text = "" if device is None else str(device).strip().lower()
    if text in ("", "auto"):
        import torch

        ids = [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    elif text == "cpu":
        ids = []
    else:
        ids = [x.strip().removeprefix("cuda:") for x in text.split(",")]
        if not all(x.isdigit() for x in ids):
            raise ConfigError(f"device must be cpu, a CUDA index (0) or a list (0,1), got {device!r}")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ConfigError(f"jobs must be a positive int (runs at a time), got {jobs!r}")
    if not ids:
        return ["cpu"] * (jobs or 1)
    if jobs is None:
        import torch

        per = [max(1, min(MAX_PER_GPU, int(torch.cuda.mem_get_info(int(i))[0] / 2**30 // PER_RUN_GIB))) for i in ids]
        out = [i for i, k in zip(ids, per) for _ in range(k)]
        return out[: max(len(ids), (os.cpu_count() or 2) // 2)]
    return [ids[k % len(ids)] for k in range(jobs)]


class _Progress:
    """One tqdm bar over every epoch still to train, with an ETA; runs report their epochs done."""

    def __init__(self, items: Sequence[tuple[RunSpec, str]], enabled: bool) -> None:
        self.done = {s.name: min(epochs_done(s.run_dir), s.recipe.epochs) for s, st in items if st in ("resume", "train")}
        total = sum(s.recipe.epochs for s, st in items if st in ("resume", "train"))
        self.bar = None
        if enabled and total:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=sum(self.done.values()), unit="epoch", desc="study", dynamic_ncols=True)

    def set(self, name: str, n: int) -> None:
        old = self.done.get(name, 0)
        self.done[name] = max(old, n)
        if self.bar is not None and n > old:
            self.bar.update(n - old)

    def note(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


Done = Callable[[RunSpec, dict, "ImageStats | None"], None]


def _run_here(items: Sequence[RunSpec], progress: _Progress, done: Done) -> list[str]:
    """One run after another in this process (``jobs=0``: for debugging and tests). A KeyboardInterrupt stops the
    queue as a kill would; any other error fails that run only."""
    from edge_mlla.study.worker import execute

    failed = []
    for spec in items:
        progress.note(spec.name)
        try:
            rec, st = execute(spec, on_epoch=lambda n, name=spec.name: progress.set(name, n))
        except KeyboardInterrupt:
            raise
        except Exception as e:  # one run's failure must not stop the others
            LOGGER.error("study: %s failed: %s: %s", spec.name, type(e).__name__, e)
            failed.append(spec.name)
            continue
        done(spec, rec, st)
    return failed


def _launch(spec: RunSpec) -> tuple[subprocess.Popen, Path, Any]:
    runs = Path(spec.runs)
    runs.mkdir(parents=True, exist_ok=True)
    spec_file, result = runs / f".{spec.name}.spec.json", runs / f".{spec.name}.result.json"
    spec_file.write_text(spec.to_json())
    result.unlink(missing_ok=True)
    log = open(runs / f"{spec.name}.log", "a")  # noqa: SIM115 - closed when the run ends
    proc = subprocess.Popen([*WORKER, str(spec_file), str(result)], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=child_env(spec.jobs))  # fmt: skip
    return proc, result, log


def child_env(jobs: int) -> dict[str, str]:
    """A run's environment: the CPU cores shared out between the ``jobs`` runs at a time (``OMP_NUM_THREADS``,
    unless the user set it). Without it every run's torch took all the cores for its CPU-side work (building the
    model, counting its FLOPs, scoring), and ten runs on the H200 machine (16 cores) spent 2.5 minutes at a load of 160
    before their first epoch."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, jobs))))
    return env


def _run_processes(items: Sequence[RunSpec], where: list[str], progress: _Progress, done: Done) -> list[str]:
    """Up to ``len(where)`` runs at a time, each in its own process on its slot's device (polled every
    :data:`POLL_S` seconds)."""
    pending, active, failed = list(items), {}, []
    free = list(range(len(where)))
    old_term = _term_as_interrupt()
    try:
        while pending or active:
            while pending and free:
                k = free.pop(0)
                spec = replace(pending.pop(0), device=where[k], jobs=len(where))
                active[k] = (spec, *_launch(spec))
            progress.note(", ".join(s.name for s, *_ in active.values()))
            time.sleep(POLL_S)
            for k, (spec, proc, result, log) in list(active.items()):
                progress.set(spec.name, epochs_done(spec.run_dir))
                if proc.poll() is None:
                    continue
                log.close()
                del active[k]
                free.append(k)
                if proc.returncode == 0 and result.is_file():
                    done(spec, json.loads(result.read_text()), None)
                    result.unlink()
                else:
                    LOGGER.error("study: %s failed (exit %s); its log: %s", spec.name, proc.returncode, log.name)
                    failed.append(spec.name)
    except KeyboardInterrupt:
        for spec, proc, _, log in active.values():  # SIGTERM: a background job ignores SIGINT; the worker stops
            with contextlib.suppress(subprocess.TimeoutExpired, ProcessLookupError):  # between two statements
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
            if proc.poll() is None:
                proc.kill()
            log.close()
        raise
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    return failed


def _term_as_interrupt() -> Any:
    """While runs are in flight, a SIGTERM (``kill``) stops the study as Ctrl-C does: the children are told to stop
    and waited for, instead of training on as orphans. Returns the previous handler (None off the main thread)."""

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: leave signals alone
        return None


def check_model(model: str) -> None:
    """An arm must be a model yaml Ultralytics or we can build (ours, its own, or a file) or an existing ``.pt``:
    checked before any run starts (a misspelt name otherwise failed each of its runs, one log per seed)."""
    from edge_mlla.errors import MissingFileError

    p = Path(model)
    if p.suffix.lower() == ".pt":
        if not p.is_file():
            raise MissingFileError(f"checkpoint not found: {p}")
        return
    if p.suffix.lower() not in (".yaml", ".yml"):
        raise ConfigError(f"a study arm is a model yaml (e.g. yolo11n-mlla.yaml) or a .pt checkpoint, got {model!r}")
    import edge_mlla.nn  # noqa: F401  (our yamls: Ultralytics' yaml loader finds them)
    import ultralytics.nn.tasks as tasks

    try:
        d = tasks.yaml_model_load(model)  # reads the yaml only: no model is built
    except FileNotFoundError as e:
        raise MissingFileError(f"model {model!r} not found: neither one of our yamls, Ultralytics' nor a file ({e})") from e
    except ConfigError:
        raise
    except Exception as e:  # not yaml at all
        raise ConfigError(f"model {model!r} could not be read: {type(e).__name__}: {e}") from e
    if not isinstance(d, dict) or not {"backbone", "head"} <= set(d):
        raise ConfigError(f"{model!r} is not a model yaml (it has no backbone and head), e.g. yolo11n-mlla.yaml")


def plan_study(models: Sequence[str] | str, data: str = "bccd", seeds: str | int | Sequence[int] = "0-3", *,
               epochs: int = 50, imgsz: int = 416, batch: int = 16, out: str | os.PathLike = "runs/study",
               runs: str | os.PathLike | None = None) -> tuple[list[dict], list[tuple[RunSpec, str]]]:  # fmt: skip
    """The study's records so far and each of its runs with its state (done, rescore, resume, train), after
    checking the recipe against the records and the run folders already there; :func:`study` runs this plan."""
    models = [m.strip() for m in models.split(",")] if isinstance(models, str) else list(models)
    if not models or not all(isinstance(m, str) and m for m in models) or len({arm_of(m) for m in models}) != len(models):
        raise ConfigError(f"models must be distinct model yamls, e.g. yolo11n.yaml,yolo11n-mlla.yaml, got {models!r}")
    for m in models:
        check_model(m)
    recipe = Recipe(data_name(data), imgsz, batch, epochs)
    records = read_records(out)
    check_recipe(records, recipe)
    return records, plan(models, parse_seeds(seeds), recipe, out, Path(runs if runs is not None else "runs/study"), records)


def study(models: Sequence[str] | str, data: str = "bccd", seeds: str | int | Sequence[int] = "0-3", *, epochs: int = 50,
          imgsz: int = 416, batch: int = 16, out: str | os.PathLike = "runs/study", runs: str | os.PathLike | None = None,
          device: str | None = None, jobs: int | None = None, progress: bool = True) -> StudyReport:  # fmt: skip
    """Train every model with every seed under one recipe (from scratch, amp off, deterministic), score each best.pt
    with Ultralytics' validator on val, test and both pooled, and return the report with a verdict on each pair.

    Args:
        models: the arms, model yamls (or a comma-separated string), e.g. ``["yolo11n.yaml", "yolo11n-mlla.yaml"]``.
        data: bundled dataset name or data.yaml; seeds: ``"0-4"``, ``"0,2"``, an int or a list.
        epochs, imgsz, batch: the recipe.
        out: the study folder: ``records.jsonl``, ``perimage/``, ``report.md``, ``verdicts.json``, ``study.png``.
        runs: the run folders' parent (default ``runs/study``): ``<runs>/<model stem>-s<seed>/``.
        device: ``cpu``, a CUDA index or list; None: every CUDA GPU, else the CPU.
        jobs: runs at a time (default: by GPU memory, 1 on CPU); 0 runs them in this process, one after another.
        progress: a tqdm bar over the epochs to train, with an ETA.

    Example:
        >>> rep = study("yolo11n.yaml,yolo11n-mlla.yaml", seeds="0-3", epochs=50)  # doctest: +SKIP
        >>> rep.verdicts[0].outcome  # doctest: +SKIP
        'no measurable difference'
    """
    records, items = plan_study(models, data, seeds, epochs=epochs, imgsz=imgsz, batch=batch, out=out, runs=runs)
    todo = [s for s, st in items if st != "done"]
    stats = load_image_stats(out, records)
    arms = list(dict.fromkeys([arm_of(s.model) for s, _ in items] + [arm_of(r) for r in records]))  # ours first
    failed: list[str] = []

    def done(spec: RunSpec, rec: dict, st: ImageStats | None) -> None:
        nonlocal records
        records = add_record(out, rec, records, spec.rescore_of)
        stats[rec["per_image"]] = st if st is not None else ImageStats.load(Path(out) / rec["per_image"])
        write_report(out, build_report(records, stats, arms))
        LOGGER.info("study: %s done: pooled mAP50-95 %.4f", spec.name, rec["pooled"][0])

    bar = _Progress(items, progress)
    try:
        if todo:
            where = slots(device, jobs or None)
            if jobs == 0:
                failed = _run_here([replace(s, device=where[0]) for s in todo], bar, done)
            else:
                failed = _run_processes(todo, where, bar, done)
    finally:
        bar.close()
    rep = build_report(records, stats, arms, REPS)
    rep.failed = failed
    write_report(out, rep)
    return rep
