"""A study's records (torch-free): one JSON line per training run in ``<out>/records.jsonl``, the run's per-image
match statistics in ``<out>/perimage/<model>-s<seed>.npz``, and the import of earlier records.

A record (one line) holds:

* ``model`` (the yaml or checkpoint; its file name names the arm), ``seed``, ``args`` (the recipe: data, imgsz,
  batch, epochs, amp, deterministic, workers, seed) and ``val_args`` (the validator's protocol);
* ``val``, ``test``, ``pooled``: ``[mAP50-95, mAP50]`` from Ultralytics' validator on best.pt (pooled = val+test
  scored as one set), ``images`` per split;
* ``epochs`` (trained), ``best_epoch``, ``wall_min`` (training time), ``params``, ``gflops640`` (torch profiler) and
  ``gflops640_thop``;
* where it ran: ``device`` (``cpu`` / ``cuda:N``), ``cpu`` (model name), ``cores``, ``gpu``, ``jobs`` (runs sharing
  the machine), ``threads`` (torch's CPU threads in the run), library versions and ``date``;
* ``per_image`` (the .npz, relative to ``<out>``; null for imported runs whose weights are gone), ``run_dir``,
  ``weights``, ``resumed_at`` (epochs already done when the run was picked up), ``source`` and ``note``.

Example:
    >>> st = ImageStats.from_arrays(names=["a.jpg"], img=[0, 0], classes=[0, 1], tp=[[1] * 10, [0] * 10],
    ...                             counts=[[1, 0]])
    >>> st.n_images, st.n_predictions
    (1, 2)
"""

from __future__ import annotations

import ast
import json
import io
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from edge_mlla.errors import ConfigError, MissingFileError

RECORDS = "records.jsonl"
PERIMAGE = "perimage"
SPLITS = ("val", "test", "pooled")
TOOL = "edge-mlla study"
RECIPE_KEYS = ("data", "imgsz", "batch", "epochs", "amp", "deterministic")  # what makes two runs comparable


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write a file through a temporary one beside it and a rename: a kill leaves the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)
    return path


# ------------------------------------------------------------------------------------------ per-image statistics
@dataclass(frozen=True)
class ImageStats:
    """Per-image match statistics of one run on one split: every prediction the validator kept, in its ranking order
    (descending confidence, as Ultralytics' ``ap_per_class`` sorts), with the image it came from, its class and
    whether it is a true positive at each IoU threshold 0.50:0.05:0.95; plus ground-truth boxes per image and class.
    Enough to recompute the validator's mAP on any resample of the images (:func:`edge_mlla.study.stats.map_of`)."""

    names: np.ndarray  # (n_img,) image file names
    img: np.ndarray  # (n_pred,) index into names
    cls: np.ndarray  # (n_pred,) predicted class
    tp: np.ndarray  # (n_pred, 10) bool
    counts: np.ndarray  # (n_img, nc) ground-truth boxes

    def __post_init__(self) -> None:
        n_img, n_pred = len(self.names), len(self.img)
        shapes = {"cls": (self.cls.shape, (n_pred,)), "tp": (self.tp.shape[:1], (n_pred,)),
                  "counts": (self.counts.shape[:1], (n_img,))}  # fmt: skip
        for key, (got, want) in shapes.items():
            if got != want:
                raise ConfigError(f"per-image statistics: {key} has shape {got}, expected {want}")
        if n_pred and (self.img.min() < 0 or self.img.max() >= n_img):
            raise ConfigError(f"per-image statistics: image index outside 0..{n_img - 1}")

    @cached_property
    def by_class(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Predicted class -> (tp as (10, n) in ranking order, image index (n,)): what mAP needs per class."""
        return {int(c): (np.ascontiguousarray(self.tp[self.cls == c].T), self.img[self.cls == c]) for c in np.unique(self.cls)}

    @property
    def n_images(self) -> int:
        return len(self.names)

    @property
    def n_predictions(self) -> int:
        return len(self.img)

    @staticmethod
    def from_arrays(names: Sequence[str], img: Any, classes: Any, tp: Any, counts: Any) -> ImageStats:
        """From plain lists or arrays already in ranking order."""
        return ImageStats(np.asarray(names, str), np.asarray(img, np.int64).reshape(-1),
                          np.asarray(classes, np.int64).reshape(-1), np.asarray(tp, bool).reshape(-1, 10),
                          np.asarray(counts, np.int64).reshape(len(names), -1))  # fmt: skip

    @classmethod
    def from_validator(cls, names: Sequence[str], tp: Sequence[np.ndarray], conf: Sequence[np.ndarray],
                       pred_cls: Sequence[np.ndarray], target_cls: Sequence[np.ndarray], nc: int) -> ImageStats:  # fmt: skip
        """From the per-image lists of Ultralytics' ``DetMetrics.stats`` (one entry per image), ranked exactly as
        ``ap_per_class`` ranks them (``np.argsort(-conf)`` of the concatenation)."""
        n = [len(c) for c in conf]
        conf_all = np.concatenate(conf) if n else np.zeros(0)
        order = np.argsort(-conf_all)
        img = np.repeat(np.arange(len(n)), n)[order]
        tp_all = np.concatenate(tp).astype(bool).reshape(-1, 10)[order] if n else np.zeros((0, 10), bool)
        cls_all = np.concatenate(pred_cls).astype(np.int64)[order] if n else np.zeros(0, np.int64)
        counts = np.stack([np.bincount(np.asarray(t, np.int64), minlength=nc)[:nc] for t in target_cls])
        return ImageStats(np.asarray(names, str), img, cls_all, tp_all, counts)

    def save(self, path: str | os.PathLike) -> Path:
        """Write a compressed .npz (tp bit-packed; about 1.5 bytes per prediction), atomically."""
        small = np.uint16 if max(self.n_images, int(self.cls.max(initial=0)) + 1) < 2**16 else np.uint32
        arrays = {"names": self.names, "img": self.img.astype(small), "cls": self.cls.astype(small),
                  "tp": np.packbits(self.tp, axis=1), "counts": self.counts.astype(np.uint32)}  # fmt: skip
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        return write_atomic(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike) -> ImageStats:
        """Read a file written by :meth:`save`."""
        if not Path(path).is_file():
            raise MissingFileError(f"per-image statistics not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as z:
                tp = np.unpackbits(z["tp"], axis=1, count=10).astype(bool)
                return ImageStats(z["names"].astype(str), z["img"].astype(np.int64), z["cls"].astype(np.int64), tp,
                                  z["counts"].astype(np.int64))  # fmt: skip
        except (OSError, KeyError, ValueError) as e:
            raise ConfigError(f"{path}: not a per-image statistics file ({type(e).__name__}: {e})") from e


def aligned(runs: Sequence[ImageStats]) -> list[np.ndarray]:
    """For each run, the index of each of its images in one common image order (sorted names), so that one
    resample of the images means the same images for every run. Runs must hold the same images."""
    ref = runs[0].names
    if len(set(ref)) == len(ref):
        common = np.sort(ref)
        out = []
        for st in runs:
            if len(st.names) != len(common) or not np.array_equal(np.sort(st.names), common):
                raise ConfigError(f"per-image statistics cover different images ({len(st.names)} vs {len(common)}); "
                                  "runs compared image by image must be scored on the same split")  # fmt: skip
            out.append(np.searchsorted(common, st.names))
        return out
    for st in runs:  # repeated file names (folders with the same names): the validator's order must match
        if not np.array_equal(st.names, ref):
            raise ConfigError("per-image statistics with repeated image names must list the images in the same order")
    return [np.arange(len(ref)) for _ in runs]


# ------------------------------------------------------------------------------------------------- records
def arm_of(rec_or_model: dict | str) -> str:
    """The arm a record (or model) belongs to: the model's file name, e.g. ``yolo11n-mlla.yaml``."""
    model = rec_or_model["model"] if isinstance(rec_or_model, dict) else rec_or_model
    return Path(str(model)).name


def run_name(model: str, seed: int) -> str:
    """``<model stem>-s<seed>``: the run folder and the per-image file's name."""
    return f"{Path(model).stem}-s{seed}"


def read_records(out: str | os.PathLike) -> list[dict]:
    """Every record of the study in ``out`` (an empty list when there is none yet)."""
    f = Path(out) / RECORDS
    if not f.is_file():
        return []
    recs = []
    for i, line in enumerate(f.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{f}, line {i}: not JSON ({e}); fix or delete that line") from e
        if not isinstance(rec, dict) or not {"model", "seed"} <= set(rec):
            raise ConfigError(f"{f}, line {i}: a record needs at least 'model' and 'seed'")
        recs.append(rec)
    return recs


def write_records(out: str | os.PathLike, records: Iterable[dict]) -> Path:
    """Rewrite ``records.jsonl`` atomically (a kill leaves the old or the new file, never half of one)."""
    return write_atomic(Path(out) / RECORDS, "".join(json.dumps(r) + "\n" for r in records))


def add_record(out: str | os.PathLike, rec: dict, records: list[dict] | None = None, replaces: dict | None = None) -> list[dict]:
    """Add a run's record to ``records`` (default: those on disk), dropping ``replaces`` (the imported record a
    re-score supersedes), write them, and return the new list."""
    have = read_records(out) if records is None else records
    new = [r for r in have if r != replaces] + [rec]
    write_records(out, new)
    return new


def load_image_stats(out: str | os.PathLike, records: Iterable[dict]) -> dict[str, ImageStats]:
    """The per-image statistics of every record that has them, keyed by the record's ``per_image`` path."""
    return {r["per_image"]: ImageStats.load(Path(out) / r["per_image"]) for r in records if r.get("per_image")}


def preference(rec: dict) -> tuple:
    """How much a record can say: per-image statistics first, then a pooled score, then this tool's, then newest."""
    return bool(rec.get("per_image")), "pooled" in rec, rec.get("source") == TOOL, str(rec.get("date", ""))


def select(records: Sequence[dict], arms: Sequence[str] | None = None) -> tuple[dict[str, dict[int, dict]], list[dict]]:
    """One record per arm and seed (the most informative, :func:`preference`), arms in ``arms`` order (default:
    first appearance); and the records set aside (a second run of the same seed)."""
    order = list(dict.fromkeys(arms or [arm_of(r) for r in records]))
    chosen: dict[str, dict[int, dict]] = {a: {} for a in order}
    aside = []
    for r in records:
        a = arm_of(r)
        if a not in chosen:
            continue
        old = chosen[a].get(int(r["seed"]))
        if old is None or preference(r) > preference(old):
            chosen[a][int(r["seed"])] = r
            r = old
        if r is not None:
            aside.append(r)
    return {a: dict(sorted(s.items())) for a, s in chosen.items()}, aside


def recipe_of(rec: dict) -> dict:
    """The part of a record's ``args`` that must agree between runs of one study."""
    return {k: rec.get("args", {}).get(k) for k in RECIPE_KEYS}


# --------------------------------------------------------------------------------------------------- import
def _legacy_rows(src: Path) -> list[dict]:
    """Rows of benchmarks/train_study.py's JSONL, or of a Python file's module-level ``QUOTED`` list (read with
    ``ast.literal_eval``, never executed)."""
    if not src.is_file():
        raise MissingFileError(f"nothing to import: {src} does not exist")
    if src.suffix == ".py":
        for node in ast.parse(src.read_text()).body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "QUOTED" for t in node.targets):
                return list(ast.literal_eval(node.value))
        raise ConfigError(f"{src}: no module-level QUOTED = [...] list to import")
    return read_records(src.parent) if src.name == RECORDS else [json.loads(ln) for ln in src.read_text().splitlines() if ln.strip()]


def _from_legacy(row: dict, args: dict | None) -> dict:
    rec = {k: v for k, v in row.items() if k not in ("cpu", "cores")}
    rec["seed"] = int(row["seed"])
    if "args" not in rec:
        if args is None:
            raise ConfigError(f"imported row {row.get('model')} seed {row.get('seed')} has no 'args' and no other row "
                              "gives the recipe; import it together with rows that have one")  # fmt: skip
        rec["args"] = {**args, "seed": rec["seed"]}
        rec["note"] = (rec.get("note", "") + " recipe assumed from the rows imported with it").strip()
    rec["source"] = "benchmarks/train_study.py" if row.get("source") == "this script" else row.get("source", "imported")
    rec.update(device="cpu" if row.get("cpu") else None, cpu=row.get("cpu"), cores=row.get("cores"), gpu=None,
               per_image=None)  # fmt: skip
    return rec


def _import_key(rec: dict) -> tuple:
    """What identifies an imported run, also after it was re-scored (source "X, re-scored by ...", more digits)."""
    val = rec.get("val") or [None]
    return (arm_of(rec), int(rec["seed"]), str(rec.get("source", "")).split(",")[0],
            None if val[0] is None else round(float(val[0]), 4))  # fmt: skip


def import_legacy(out: str | os.PathLike, sources: Sequence[str | os.PathLike]) -> int:
    """Add earlier runs (benchmarks/train_study.py's JSONL, its ``QUOTED`` rows) to the study in ``out``, without
    per-image statistics (marked ``per_image: null``: they enter verdicts at seed level only). Rows already there
    (same model, seed, source and scores) are skipped; returns how many were added.

    Example:
        >>> import_legacy("benchmarks/results/study/bccd", ["benchmarks/train_study.py",
        ...               "benchmarks/results/train_study.jsonl"])  # doctest: +SKIP
        10
    """
    rows = [r for s in sources for r in _legacy_rows(Path(s))]
    recipes = {json.dumps({k: v for k, v in r["args"].items() if k != "seed"}, sort_keys=True) for r in rows if "args" in r}
    args = json.loads(next(iter(recipes))) if len(recipes) == 1 else None
    have = read_records(out)
    seen = {_import_key(r) for r in have}
    new = []
    for row in rows:
        rec = _from_legacy(row, args)
        key = _import_key(rec)
        if key not in seen:
            seen.add(key)
            new.append(rec)
    if new:
        write_records(out, [*have, *new])
    return len(new)
