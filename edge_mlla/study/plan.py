"""What a study will do (torch-free): its recipe, its runs, and where each run stands on disk.

A run is one (model, seed) trained with the study's recipe in ``<runs>/<model stem>-s<seed>/`` (Ultralytics'
layout; the folders ``benchmarks/train_study.py`` wrote are picked up as they are). Its state:

* ``done``: recorded with per-image statistics, or with a pooled score and its weights are gone (seed level only);
* ``rescore``: recorded without per-image statistics (an imported run) and its weights are there: score again;
  an imported row without a pooled score and without weights (quoted from elsewhere) is trained again (``train``),
  the row kept beside the new run;
* ``resume``: a ``last.pt`` is there: resume training from it (or only score, when training had finished);
* ``train``: nothing yet.

Example:
    >>> parse_seeds("0-2,5")
    [0, 1, 2, 5]

Imports inside functions: yaml and the dataset reader load only when a dataset is resolved.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge_mlla.errors import ConfigError
from edge_mlla.study.records import arm_of, preference, recipe_of, run_name

STATES = ("done", "rescore", "resume", "train")


def parse_seeds(text: str | int | list[int] | tuple[int, ...] | range) -> list[int]:
    """``"0-4"``, ``"0,2,5"``, ``"0-2,7"``, an int or a list of ints -> sorted distinct seeds (>= 0)."""
    if isinstance(text, bool):
        raise ConfigError(f"seeds must be like 0-4 or 0,1,2, got {text!r}")
    if isinstance(text, int):
        text = [text]
    if isinstance(text, (list, tuple, range)):
        seeds = list(text)
    else:
        seeds = []
        try:
            for part in str(text).replace(" ", "").split(","):
                lo, sep, hi = part.partition("-")
                seeds += list(range(int(lo), int(hi) + 1)) if sep else [int(lo)]
        except ValueError:
            raise ConfigError(f"seeds must be like 0-4 or 0,1,2 (non-negative integers), got {text!r}") from None
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ConfigError(f"seeds must be non-negative integers, at least one, got {text!r}")
    return sorted(set(seeds))


def seeds_text(seeds: list[int]) -> str:
    """The inverse of :func:`parse_seeds`: ``[0, 1, 2, 5]`` -> ``"0-2,5"``."""
    parts, run = [], [seeds[0]] if seeds else []
    for s in seeds[1:]:
        if s == run[-1] + 1:
            run.append(s)
        else:
            parts.append(run)
            run = [s]
    parts += [run] if run else []
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 2 else ",".join(map(str, r)) for r in parts)


@dataclass(frozen=True)
class Recipe:
    """One recipe for every arm: from scratch, amp off, deterministic, Ultralytics' defaults otherwise. ``workers``
    is pinned so that a seed replays the same augmentation stream on the same kind of device (the loader's worker
    count decides which worker's RNG augments which batch; Ultralytics uses 0 on a CPU whatever is asked)."""

    data: str = "bccd"
    imgsz: int = 416
    batch: int = 16
    epochs: int = 50
    workers: int = 2
    val_batch: int = 32

    def __post_init__(self) -> None:
        for key in ("imgsz", "batch", "epochs", "workers", "val_batch"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if key == "workers" else 1):
                raise ConfigError(f"{key} must be a positive int, got {v!r}")

    def args(self, seed: int) -> dict[str, Any]:
        """The record's ``args``: what makes two runs comparable, plus the seed."""
        return {"data": self.data, "imgsz": self.imgsz, "batch": self.batch, "epochs": self.epochs, "amp": False,
                "deterministic": True, "workers": self.workers, "seed": seed}  # fmt: skip

    def val_args(self) -> dict[str, Any]:
        return {"imgsz": self.imgsz, "batch": self.val_batch, "rect": True}


@dataclass(frozen=True)
class RunSpec:
    """One run of a study, as handed to a worker process (JSON)."""

    model: str
    seed: int
    recipe: Recipe
    out: str  # the study folder: records and per-image statistics
    runs: str  # the run folders' parent
    device: str = "cpu"  # Ultralytics' device string: "cpu" or a CUDA index
    jobs: int = 1  # runs sharing this machine at the same time (recorded)
    rescore_of: dict | None = field(default=None, compare=False)  # the imported record a re-score replaces

    @property
    def name(self) -> str:
        return run_name(self.model, self.seed)

    @property
    def run_dir(self) -> Path:
        return Path(self.runs) / self.name

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @staticmethod
    def from_json(text: str) -> RunSpec:
        d = json.loads(text)
        return RunSpec(**{**d, "recipe": Recipe(**d["recipe"])})


def epochs_done(run_dir: Path) -> int:
    """Epochs in the run's results.csv (0 when there is none)."""
    csv = run_dir / "results.csv"
    if not csv.is_file():
        return 0
    return max(0, sum(1 for ln in csv.read_text().splitlines() if ln.strip()) - 1)


def data_name(data: str | os.PathLike) -> str:
    """How a record names its dataset: the bundled name, or the data.yaml's absolute path."""
    from edge_mlla.data import BUNDLED, resolve_data

    p = resolve_data(data).resolve()
    return next((k for k, v in BUNDLED.items() if v.resolve() == p), str(p))


def _data_or_raw(data: Any) -> Any:
    """:func:`data_name` of a recorded dataset, or the recorded text when it no longer resolves."""
    try:
        return data_name(data) if data is not None else None
    except (OSError, ValueError):
        return data


def check_run_dir(spec: RunSpec) -> None:
    """A run folder that is there must have been started with this recipe and seed (its args.yaml says so)."""
    import yaml

    f = spec.run_dir / "args.yaml"
    if not f.is_file():
        return
    a = yaml.safe_load(f.read_text()) or {}
    want = {"seed": spec.seed, "epochs": spec.recipe.epochs, "imgsz": spec.recipe.imgsz, "batch": spec.recipe.batch,
            "amp": False, "deterministic": True}  # fmt: skip
    bad = {k: (a.get(k), v) for k, v in want.items() if a.get(k) != v}
    if a.get("data") and _data_or_raw(a["data"]) != spec.recipe.data:
        bad["data"] = (a["data"], spec.recipe.data)
    if bad:
        diff = ", ".join(f"{k} {got!r} (this study: {w!r})" for k, (got, w) in bad.items())
        raise ConfigError(f"{spec.run_dir} was started with another recipe: {diff}; pass another --runs folder "
                          "(run folders are named <model>-s<seed>)")  # fmt: skip


def check_recipe(records: list[dict], recipe: Recipe) -> None:
    """The records already in a study folder must share this recipe (ignoring seed and workers)."""
    want = {k: v for k, v in recipe.args(0).items() if k not in ("seed", "workers")}
    for r in records:
        got = recipe_of(r)
        got["data"] = _data_or_raw(got.get("data"))
        bad = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
        if bad:
            diff = ", ".join(f"{k} {g!r} (asked: {w!r})" for k, (g, w) in bad.items())
            raise ConfigError(f"this study folder already holds runs with another recipe ({arm_of(r)} seed {r['seed']}: "
                              f"{diff}); use another --out for a new recipe")  # fmt: skip


def state(spec: RunSpec, records: list[dict]) -> str:
    """Where a run stands (one of :data:`STATES`), from the records and the run folder."""
    mine = [r for r in records if arm_of(r) == arm_of(spec.model) and int(r["seed"]) == spec.seed]
    best = max(mine, key=preference) if mine else None
    weights = spec.run_dir / "weights"
    if best is not None and best.get("per_image"):
        return "done"
    owns = best is not None and Path(str(best.get("weights") or "x/x/x")).parent.parent.name == spec.name
    if owns and (weights / "best.pt").is_file():
        return "rescore"
    if best is not None and best.get("pooled") and not any((weights / f).is_file() for f in ("best.pt", "last.pt")):
        return "done"
    return "resume" if (weights / "last.pt").is_file() else "train"


def plan(models: list[str], seeds: list[int], recipe: Recipe, out: str | os.PathLike, runs: str | os.PathLike,
         records: list[dict]) -> list[tuple[RunSpec, str]]:  # fmt: skip
    """Every (model, seed) of the study with its state, in the order they will run: re-scores and resumes first
    (work already paid for), then new runs seed by seed (seed 0 of every arm, then seed 1, ...), so a study cut short
    stays balanced across arms. Run folders that exist are checked against the recipe first."""
    out_s, runs_s = str(Path(out).resolve()), str(Path(runs).resolve())
    items = []
    for seed in seeds:
        for model in models:
            spec = RunSpec(model, seed, recipe, out_s, runs_s)
            st = state(spec, records)
            if st != "done":
                check_run_dir(spec)
            if st == "rescore":
                old = max((r for r in records if arm_of(r) == arm_of(model) and int(r["seed"]) == seed), key=preference)
                spec = RunSpec(model, seed, recipe, out_s, runs_s, rescore_of=old)
            items.append((spec, st))
    return sorted(items, key=lambda it: _ORDER[it[1]])  # stable: finish what is started, then seed by seed


_ORDER = {"rescore": 0, "resume": 1, "train": 2, "done": 3}
