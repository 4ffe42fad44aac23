"""One run of a study (training side: torch and Ultralytics): train or resume with the study's recipe, score best.pt
with Ultralytics' validator on val, test and both pooled, keep the pooled split's per-image match statistics, and
return the run's record.

:mod:`edge_mlla.study.runner` starts one process per run (a fresh Ultralytics state; a crash costs one run):

    python -m edge_mlla.study.worker SPEC.json RESULT.json

Imports inside functions: torch, ultralytics, yaml are optional or slow to import; our modules edge_mlla,
bench.machine, data, nn ... pull in more than importing this module needs, so they load when the function that uses
them runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from edge_mlla.errors import ConfigError
from edge_mlla.study.plan import RunSpec
from edge_mlla.study.records import PERIMAGE, TOOL, ImageStats, arm_of, write_atomic

OnEpoch = Callable[[int], None]  # called with the run's epochs done so far


@contextlib.contextmanager
def _run_lock(spec: RunSpec) -> Iterator[None]:
    """Hold ``<runs>/.<name>.lock`` while the run trains: a second study (or a parent that was killed while its
    child trains on) cannot train the same run twice at once."""
    path = Path(spec.runs) / f".{spec.name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        try:
            import fcntl

            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - not POSIX: no lock
            pass
        except OSError:
            raise ConfigError(f"{spec.name} is being trained by another process (lock {path}); let it finish") from None
        yield


def _checkpoint_epochs(last: Path) -> int | None:
    """Epochs a last.pt holds, or None when training finished (Ultralytics strips the optimizer at the end)."""
    from ultralytics.utils.patches import torch_load

    ckpt = torch_load(last, map_location="cpu")
    return None if ckpt.get("optimizer") is None else int(ckpt.get("epoch", -1)) + 1


def _train(spec: RunSpec, on_epoch: OnEpoch | None) -> int | None:
    """Train (or resume from last.pt) until the recipe's epochs are done; return the epochs already done when an
    unfinished run was resumed, else None."""
    from edge_mlla.data import validate_dataset
    from edge_mlla.train import _load_model, _resolved_yaml

    last = spec.run_dir / "weights" / "last.pt"
    resumed = None
    if spec.rescore_of is not None and (spec.run_dir / "weights" / "best.pt").is_file() and not last.is_file():
        return None  # an imported run's weights, kept without last.pt: score only
    if last.is_file():
        resumed = _checkpoint_epochs(last)
        if resumed is None:
            return None
        from ultralytics import YOLO

        yolo = YOLO(str(last))
        kwargs: dict[str, Any] = {"resume": True, "device": spec.device, "workers": spec.recipe.workers}
    else:
        d = validate_dataset(spec.recipe.data, splits=("train", "val"))
        yolo = _load_model(spec.model)
        r = spec.recipe
        kwargs = {"data": str(_resolved_yaml(d, Path(spec.runs))), "seed": spec.seed, "project": spec.runs,
                  "name": spec.name, "exist_ok": True, "device": spec.device, "imgsz": r.imgsz, "batch": r.batch,
                  "epochs": r.epochs, "workers": r.workers, "amp": False, "deterministic": True, "plots": False}  # fmt: skip
    if on_epoch is not None:
        yolo.add_callback("on_fit_epoch_end", lambda tr: on_epoch(min(tr.epoch + 1, tr.epochs)))
    yolo.train(**kwargs)
    return resumed


def _pooled_yaml(d: dict, runs: Path) -> Path | None:
    """A data.yaml whose val split is val and test together (None when the dataset has no test split)."""
    import yaml

    raw = yaml.safe_load(Path(d["yaml"]).read_text()) or {}
    if not raw.get("test"):
        return None
    as_list = lambda v: list(v) if isinstance(v, (list, tuple)) else [v]  # noqa: E731
    tag = hashlib.sha1(str(Path(d["yaml"]).resolve()).encode()).hexdigest()[:8]
    out = runs / ".data" / f"{Path(d['yaml']).stem}-{tag}-pooled.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    body = {"path": str(d["root"]), "train": raw["train"], "val": as_list(raw["val"]) + as_list(raw["test"]),
            "names": d["names"]}  # fmt: skip
    write_atomic(out, yaml.safe_dump(body, sort_keys=False))
    return out


def _validate(best: Path, data: Path, split: str, spec: RunSpec, tag: str) -> tuple[list[float], int, ImageStats]:
    """Ultralytics' ``val`` of best.pt on one split: ([mAP50-95, mAP50], images, per-image statistics). The
    statistics are the validator's own (its matching, its ranking), kept before it clears them."""
    from ultralytics import YOLO
    from ultralytics.models.yolo.detect import DetectionValidator

    kept: dict[str, Any] = {}

    class Keep(DetectionValidator):
        def init_metrics(self, model: Any) -> None:
            super().init_metrics(model)
            names = kept["names"] = []
            update = self.metrics.update_stats

            def record(stat: dict) -> None:
                names.append(stat["im_name"])
                update(stat)

            self.metrics.update_stats = record

        def get_stats(self) -> dict:
            kept["stats"] = {k: list(v) for k, v in self.metrics.stats.items()}
            kept["nc"] = len(self.names)
            return super().get_stats()

    m = YOLO(str(best)).val(validator=Keep, data=str(data), split=split, plots=False, verbose=False, device=spec.device,
                            project=str(spec.run_dir), name=f"val-{tag}", exist_ok=True, **spec.recipe.val_args())  # fmt: skip
    s = kept["stats"]
    st = ImageStats.from_validator(kept["names"], s["tp"], s["conf"], s["pred_cls"], s["target_cls"], kept["nc"])
    return [round(float(m.box.map), 6), round(float(m.box.map50), 6)], st.n_images, st


def _score(spec: RunSpec) -> tuple[dict[str, Any], ImageStats]:
    """val, test and pooled scores of best.pt (pooled = val when there is no test split), images per split, and
    the pooled split's per-image statistics."""
    from edge_mlla.data import validate_dataset

    best = spec.run_dir / "weights" / "best.pt"
    if not best.is_file():
        raise ConfigError(f"{spec.name}: training ended without {best}")
    d = validate_dataset(spec.recipe.data, splits=("val",))
    data = Path(d["yaml"])
    out: dict[str, Any] = {"images": {}}
    out["val"], out["images"]["val"], st = _validate(best, data, "val", spec, "val")
    pooled = _pooled_yaml(d, Path(spec.runs))
    if pooled is not None:
        out["test"], out["images"]["test"], _ = _validate(best, data, "test", spec, "test")
        out["pooled"], out["images"]["pooled"], st = _validate(best, pooled, "val", spec, "pooled")
    else:
        out["pooled"], out["images"]["pooled"] = out["val"], out["images"]["val"]
    return out, st


def _results(run_dir: Path) -> dict[str, Any]:
    """Epochs, best epoch (Ultralytics' fitness: mAP50-95, the last epoch that reached its maximum) and training wall
    time (results.csv's ``time`` is cumulative per training process: a resume restarts it, so the segments add up;
    a segment's last row may be dropped above, which under-counts at most the epoch a kill cut short)."""
    import csv

    f = run_dir / "results.csv"
    rows = list(csv.DictReader(f.open())) if f.is_file() else []
    if rows:  # an epoch logged but not checkpointed before a kill is trained and logged again: keep its last row
        key = next(k for k in rows[0] if k.strip() == "epoch")
        rows = list({int(float(r[key])): r for r in rows}.values())
    if not rows:
        return {"epochs": None, "best_epoch": None, "wall_min": None}
    col = {k.strip(): k for k in rows[0]}
    fit = [float(r[col["metrics/mAP50-95(B)"]]) for r in rows]
    best = max(i for i, f in enumerate(fit) if f == max(fit)) + 1
    times = [float(r[col["time"]]) for r in rows] if "time" in col else []
    wall = sum(a for a, b in zip(times, [*times[1:], 0.0]) if b < a)
    return {"epochs": len(rows), "best_epoch": best, "wall_min": round(wall / 60, 1) if times else None}


_SIZES: dict[str, dict[str, Any]] = {}  # arm -> its size: every seed of an arm has the same architecture


def _model_size(best: Path, arm: str) -> dict[str, Any]:
    """Parameters and GFLOPs of one 640x640 forward: torch's profiler (counts MLLA's matmuls) and thop's."""
    if arm in _SIZES:
        return _SIZES[arm]
    import torch
    from ultralytics import YOLO
    from ultralytics.utils.torch_utils import get_flops

    m = YOLO(str(best)).model.float().eval()
    with torch.no_grad(), torch.profiler.profile(with_flops=True) as prof:
        m(torch.zeros(1, 3, 640, 640))
    _SIZES[arm] = {"params": sum(p.numel() for p in m.parameters()),
                   "gflops640": round(sum(e.flops for e in prof.key_averages()) / 1e9, 2),
                   "gflops640_thop": round(float(get_flops(m, 640)), 2)}  # fmt: skip
    return _SIZES[arm]


def machine(device: str) -> dict[str, Any]:
    """Where a run ran: ``device`` (``cpu`` / ``cuda:N``), CPU model, cores and GPU name."""
    import torch

    from edge_mlla.bench.machine import _cpuinfo  # the one owner of CPU naming (describe_machine also loads OpenVINO)

    cuda = device != "cpu" and torch.cuda.is_available()
    index = int(str(device).split(",")[0].removeprefix("cuda:") or 0) if cuda else None
    return {"device": f"cuda:{index}" if cuda else "cpu", "cpu": _cpuinfo()[0], "cores": os.cpu_count(),
            "gpu": torch.cuda.get_device_name(index) if cuda else None}  # fmt: skip


def execute(spec: RunSpec, on_epoch: OnEpoch | None = None) -> tuple[dict, ImageStats]:
    """Do one run to its end (train, resume, or only score) and return its record and per-image statistics; the
    statistics are also written to ``<out>/perimage/<name>.npz``."""
    import torch
    import ultralytics

    import edge_mlla.nn  # noqa: F401  registers C2MLLA and our yamls, sets up offline mode
    from edge_mlla import __version__

    with _run_lock(spec):
        resumed = _train(spec, on_epoch)
        scores, st = _score(spec)
    rel = f"{PERIMAGE}/{spec.name}.npz"
    st.save(Path(spec.out) / rel)
    best = spec.run_dir / "weights" / "best.pt"
    rec: dict[str, Any] = {"model": spec.model, "seed": spec.seed, "args": spec.recipe.args(spec.seed),
                           "val_args": spec.recipe.val_args(), **scores, **_results(spec.run_dir), **_model_size(best, arm_of(spec.model)),
                           **machine(spec.device), "jobs": spec.jobs, "threads": torch.get_num_threads(), "ultralytics": ultralytics.__version__,
                           "torch": torch.__version__, "edge_mlla": __version__, "date": time.strftime("%Y-%m-%d"),
                           "source": TOOL, "per_image": rel, "run_dir": _rel(spec.run_dir), "weights": _rel(best),
                           "resumed_at": resumed, "python": platform.python_version()}  # fmt: skip
    if spec.rescore_of is not None:  # training happened elsewhere: keep what the import knew of it
        old = spec.rescore_of
        rec["scored_on"] = {k: rec[k] for k in ("device", "cpu", "cores", "gpu", "threads")}
        rec["threads"] = old.get("threads")  # the training's, when the import knew it
        rec.update({k: old[k] for k in _TRAINING_FACTS if old.get(k) is not None and (rec.get(k) is None or k in _WHERE)})
        rec["source"] = f"{old.get('source', 'imported')}, re-scored by {TOOL}"
        rec["note"] = f"re-scored from its weights; trained by {old.get('source', 'an earlier tool')}"
    return rec, st


_WHERE = ("device", "cpu", "cores", "gpu", "jobs", "date", "ultralytics", "torch")
_TRAINING_FACTS = ("epochs", "best_epoch", "wall_min", *_WHERE)


def _rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def _stop(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """``python -m edge_mlla.study.worker SPEC.json RESULT.json``: run, then write the record to RESULT.json."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m edge_mlla.study.worker SPEC.json RESULT.json", file=sys.stderr)
        return 2
    spec = RunSpec.from_json(Path(args[0]).read_text())
    signal.signal(signal.SIGTERM, _stop)  # the runner stops a run with SIGTERM: end like Ctrl-C, never mid-write
    rec, _ = execute(spec)
    write_atomic(args[1], json.dumps(rec))
    return 0


if __name__ == "__main__":
    sys.exit(main())
