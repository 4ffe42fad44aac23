"""edge-mlla study: a queue that survives a kill and repeats nothing, records that rebuild the live report, per-image
statistics that reproduce Ultralytics' validator, and verdict arithmetic checked by hand and against scipy.

One module-scoped study on 4 BCCD images (2 arms x 2 seeds, 2 epochs, imgsz 128, in this process) serves the
training tests; the arithmetic tests use fixed numbers."""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_mlla.errors import ConfigError
from edge_mlla.eval import MeanAP
from edge_mlla.study import records as rec_mod
from edge_mlla.study import runner, worker
from edge_mlla.study.plan import Recipe, RunSpec, check_run_dir, parse_seeds, seeds_text
from edge_mlla.study.records import ImageStats, import_legacy, read_records
from edge_mlla.study.report import report
from edge_mlla.study.stats import bootstrap_maps, map_of, seeds_needed, t_ppf, welch
from edge_mlla.study.verdict import compare

ROOT = Path(__file__).resolve().parents[1]
BCCD = ROOT / "edge_mlla" / "data" / "bccd"
PT = ROOT / "edge_mlla" / "weights" / "yolo11n-mlla-bccd.pt"  # fine-tuned: a non-zero mAP within 2 epochs
ARMS = ["yolo11n.yaml", str(PT)]
KILLED = "yolo11n-mlla-bccd-s0"  # the second run of the queue (seeds first): stopped after its first epoch


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    for split, n in (("train", 4), ("val", 2), ("test", 2)):
        for kind in ("images", "labels"):
            (root / kind / split).mkdir(parents=True)
        for f in sorted((BCCD / "images" / split).glob("*.jpg"))[:n]:
            shutil.copy(f, root / "images" / split / f.name)
            shutil.copy(BCCD / "labels" / split / f"{f.stem}.txt", root / "labels" / split / f"{f.stem}.txt")
    (root / "data.yaml").write_text("train: images/train\nval: images/val\ntest: images/test\n"
                                    "names: {0: RBC, 1: WBC, 2: Platelets}\n")  # fmt: skip
    return root


@pytest.fixture(scope="module")
def trained(tiny):
    """The study run four times: killed after the first epoch of its second run; resumed to the end; again after one
    record was turned into an imported one (no per-image statistics, weights on disk); and once more."""
    out, runs = tiny / "out", tiny / "runs"
    kw = dict(data=str(tiny / "data.yaml"), seeds="0-1", epochs=2, imgsz=128, batch=2, out=out, runs=runs, jobs=0,
              progress=False)  # fmt: skip
    mp = pytest.MonkeyPatch()
    set_epoch = runner._Progress.set

    def kill_once(self, name, n):  # what a kill does: the process stops with last.pt of epoch 1 on disk
        set_epoch(self, name, n)
        if name == KILLED and n == 1 and not (runs / KILLED / "killed").exists():
            (runs / KILLED / "killed").touch()
            raise KeyboardInterrupt

    trains, real_train = [], worker._train
    mp.setattr(runner._Progress, "set", kill_once)
    mp.setattr(worker, "_train", lambda spec, on_epoch: trains.append(spec.name) or real_train(spec, on_epoch))
    with pytest.raises(KeyboardInterrupt):
        runner.study(ARMS, **kw)
    calls = [{"records": read_records(out), "rows": _epochs(runs / KILLED), "trains": list(trains)}]
    for k in range(3):
        trains.clear()
        rep = runner.study(ARMS, **kw)
        calls.append({"rep": rep, "trains": list(trains), "records": (out / "records.jsonl").read_bytes()})
        if k == 0:  # yolo11n-s1 as an import would have it: no per-image statistics, weights still in its folder
            recs = read_records(out)
            i = next(j for j, r in enumerate(recs) if Path(r["run_dir"]).name == "yolo11n-s1")
            (out / recs[i]["per_image"]).unlink()
            recs[i] = {**recs[i], "per_image": None, "source": "benchmarks/train_study.py"}
            rec_mod.write_records(out, recs)
    mp.undo()
    return {"out": out, "runs": runs, "calls": calls}


def _epochs(run_dir: Path) -> list[int]:
    import csv

    return [int(float(r["epoch"])) for r in csv.DictReader((run_dir / "results.csv").open())]


# ------------------------------------------------------------------------------------------------ the queue
def test_a_killed_study_resumes_and_repeats_nothing(trained):
    kill, second, rescore, last = trained["calls"]
    assert [r["seed"] for r in kill["records"]] == [0] and kill["trains"] == ["yolo11n-s0", KILLED]
    assert kill["rows"] == [1]  # the kill came after epoch 1 was saved
    assert second["trains"] == [KILLED, "yolo11n-s1", "yolo11n-mlla-bccd-s1"]  # yolo11n-s0 is not touched again
    recs = read_records(trained["out"])
    assert sorted((Path(r["model"]).name, r["seed"]) for r in recs) == sorted(
        (Path(m).name, s) for m in ARMS for s in (0, 1))
    killed = next(r for r in recs if Path(r["run_dir"]).name == KILLED)
    assert killed["resumed_at"] == 1 and killed["epochs"] == 2
    assert _epochs(trained["runs"] / KILLED) == [1, 2]  # epoch 1 not trained twice
    assert last["trains"] == [] and last["records"] == rescore["records"]  # a finished study does nothing
    assert last["rep"].markdown == rescore["rep"].markdown


def test_an_imported_run_with_weights_is_rescored_not_retrained(trained):
    _, second, rescore, _ = trained["calls"]
    assert rescore["trains"] == ["yolo11n-s1"] and _epochs(trained["runs"] / "yolo11n-s1") == [1, 2]
    before = {(r["run_dir"], r["seed"]): r for r in map(json.loads, second["records"].decode().splitlines())}
    after = read_records(trained["out"])
    again = next(r for r in after if Path(r["run_dir"]).name == "yolo11n-s1")
    assert again["source"] == "benchmarks/train_study.py, re-scored by edge-mlla study" and again["per_image"]
    assert again["pooled"] == before[(again["run_dir"], 1)]["pooled"] and len(after) == 4  # replaced, not added
    # where it was scored is kept apart from where it trained (the import's threads, or None when it did not say)
    assert again["scored_on"]["threads"] >= 1 and again["threads"] == before[(again["run_dir"], 1)].get("threads")


def test_records_hold_the_run_and_where_it_ran(trained):
    for r in read_records(trained["out"]):
        assert r["args"] == {"data": r["args"]["data"], "imgsz": 128, "batch": 2, "epochs": 2, "amp": False,
                             "deterministic": True, "workers": 2, "seed": r["seed"]}  # fmt: skip
        assert r["device"] == "cpu" and r["cpu"] and r["cores"] >= 1 and r["gpu"] is None
        assert 1 <= r["threads"] <= r["cores"]
        assert r["params"] > 2_000_000 and r["gflops640"] > 5 and 1 <= r["best_epoch"] <= 2 and r["wall_min"] >= 0
        assert r["images"] == {"val": 2, "test": 2, "pooled": 4}
        assert (trained["out"] / r["per_image"]).stat().st_size < 20_000


def test_per_image_statistics_reproduce_the_validator(trained):
    """The stored matches give back the validator's pooled mAP, and an independent AP (edge_mlla.eval.MeanAP) agrees."""
    scores = []
    for r in read_records(trained["out"]):
        st = ImageStats.load(trained["out"] / r["per_image"])
        assert map_of(st) == pytest.approx(tuple(r["pooled"]), abs=1e-6)
        m = MeanAP(tp=[st.tp], conf=[-np.arange(st.n_predictions, dtype=float)], pred_cls=[st.cls],
                   target_cls=[np.repeat(np.tile(np.arange(st.counts.shape[1]), st.n_images), st.counts.reshape(-1))])
        assert m.compute()["mAP50-95"] == pytest.approx(map_of(st)[0], abs=1e-12)
        scores.append(r["pooled"][0])
    assert max(scores) > 0.05  # the fine-tuned arm detects: the check above is not 0 == 0


def test_the_report_rebuilt_from_records_equals_the_live_one(trained):
    live = trained["calls"][-1]["rep"]
    rebuilt = report(trained["out"])  # every arm in the folder, ours first: what the live report covers
    assert rebuilt.markdown == live.markdown
    assert [v.as_dict() for v in rebuilt.verdicts] == [v.as_dict() for v in live.verdicts]
    v = live.verdicts[0]
    assert (v.metric, v.n_a, v.n_b, v.image_runs) == ("pooled", 2, 2, (2, 2)) and v.se_image is not None
    import cv2

    img = cv2.imread(str(trained["out"] / "study.png"))
    assert img is not None and img.shape[0] > 200


def test_the_cli_rebuilds_a_report_without_torch(trained):
    code = ("import sys; from edge_mlla.cli import main; rc = main(['study', '--report', sys.argv[1]]); "
            "print(rc, sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'ultralytics'}))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code, str(trained["out"])], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "0 []"
    assert "vs yolo11n.yaml, pooled mAP50-95" in out.stdout


def test_a_run_folder_of_another_recipe_is_refused(tmp_path):
    spec = RunSpec("yolo11n.yaml", 0, Recipe(epochs=50), str(tmp_path), str(tmp_path))
    spec.run_dir.mkdir()
    (spec.run_dir / "args.yaml").write_text("seed: 0\nepochs: 150\nimgsz: 416\nbatch: 16\namp: false\ndeterministic: true\n")
    with pytest.raises(ConfigError, match=r"epochs 150 \(this study: 50\)"):
        check_run_dir(spec)


# ------------------------------------------------------------------------------------------------ arithmetic
def test_welch_interval_by_hand_and_against_scipy():
    a, b = [0.50, 0.52, 0.54], [0.53, 0.56, 0.58, 0.57]
    va, vb = statistics.variance(a) / 3, statistics.variance(b) / 4  # 0.0004/3, 0.0014/3/4
    assert (va, vb) == pytest.approx((0.0004 / 3, 0.0014 / 12))
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 3)  # Welch-Satterthwaite
    w = welch(a, b)
    assert (w.diff, w.var, w.df) == pytest.approx((0.04, 0.00025, df)) and df == pytest.approx(4.6552, abs=1e-4)
    low, high, dfi = w.interval()
    scipy_stats = pytest.importorskip("scipy.stats")
    ci = scipy_stats.ttest_ind(b, a, equal_var=False).confidence_interval(0.95)
    assert (low, high, dfi) == pytest.approx((ci.low, ci.high, df), abs=1e-9)
    # with a known image-noise variance: only the numerator of the df grows
    low2, high2, df2 = w.interval(extra_var=0.0001)
    assert df2 == pytest.approx(0.00035**2 / (va**2 / 2 + vb**2 / 3))
    assert high2 - 0.04 == pytest.approx(scipy_stats.t.ppf(0.975, df2) * math.sqrt(0.00035), abs=1e-9)
    v = compare("A", dict(enumerate(a)), "B", dict(enumerate(b)))
    assert v.outcome == "no measurable difference" and v.low < 0 < v.high
    assert compare("A", dict(enumerate(a)), "B", {i: x + 0.05 for i, x in enumerate(b)}).outcome == "better"
    assert compare("A", {0: 0.5}, "B", dict(enumerate(b))).outcome == "not enough runs"


def test_t_quantiles_and_seed_planning_against_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    for df in (1, 1.5, 2, 3, 4.6552, 10, 57.3, 400):
        for p in (0.8, 0.975, 0.025, 0.5):
            assert t_ppf(p, df) == pytest.approx(scipy_stats.t.ppf(p, df), abs=1e-8)
    sd, delta = 0.02, 0.015
    brute = next(n for n in range(2, 1000) if (scipy_stats.t.ppf(0.975, 2 * n - 2) + scipy_stats.t.ppf(0.8, 2 * n - 2))
                 * math.sqrt(2 * sd**2 / n) <= delta)  # fmt: skip
    assert seeds_needed(delta, sd) == brute
    assert 2 * (1.96 + 0.8416) ** 2 * sd**2 / delta**2 < brute < 2 * (1.96 + 0.8416) ** 2 * sd**2 / delta**2 + 3
    assert parse_seeds("0-2,5") == [0, 1, 2, 5] and seeds_text([0, 1, 2, 5]) == "0-2,5"
    with pytest.raises(ConfigError):
        parse_seeds("a-b")


def _toy(conf_tp_cls_img: list[tuple[float, bool, int, int]], counts: list[list[int]]) -> tuple[ImageStats, list]:
    """A run as per-image lists (validator style) and as ImageStats."""
    per_img = [[x for x in conf_tp_cls_img if x[3] == i] for i in range(len(counts))]
    lists = [(np.array([x[0] for x in p]), np.array([[x[1]] * 10 for x in p], bool).reshape(-1, 10),
              np.array([x[2] for x in p]), np.repeat(np.arange(len(c)), c)) for p, c in zip(per_img, counts)]  # fmt: skip
    st = ImageStats.from_validator(["a", "b", "c"], [x[1] for x in lists], [x[0] for x in lists], [x[2] for x in lists],
                                   [x[3] for x in lists], nc=2)  # fmt: skip
    return st, lists


def test_image_bootstrap_equals_literal_resampling():
    """bootstrap_maps (multiplicities, no re-sort) against resampling by hand: the drawn images' predictions listed
    again and scored by edge_mlla.eval.MeanAP, with the same random draws."""
    runs = [_toy([(0.9, True, 0, 0), (0.8, False, 0, 1), (0.7, True, 1, 2), (0.6, True, 0, 1), (0.3, False, 1, 0)],
                 [[1, 0], [2, 0], [0, 1]]),
            _toy([(0.95, False, 0, 2), (0.85, True, 0, 0), (0.5, True, 1, 2), (0.4, True, 0, 1)],
                 [[1, 0], [2, 0], [0, 1]])]  # fmt: skip
    got = bootstrap_maps([st for st, _ in runs], reps=6, seed=3)
    rng = np.random.default_rng(3)
    for b in range(6):
        draw = rng.integers(0, 3, 3)
        for r, (_, lists) in enumerate(runs):
            m = MeanAP()
            for i in draw:
                conf, tp, cls, tcls = lists[i]
                m.tp.append(tp), m.conf.append(conf), m.pred_cls.append(cls), m.target_cls.append(tcls)
            assert got[b, r] == pytest.approx(m.compute()["mAP50-95"], abs=1e-12)


def test_legacy_records_import_at_seed_level(tmp_path):
    sources = [ROOT / "benchmarks" / "train_study.py", ROOT / "benchmarks" / "results" / "train_study.jsonl"]
    lines = [ln for ln in sources[1].read_text().splitlines() if ln.strip()]
    assert import_legacy(tmp_path, sources) == len(lines) + 3  # + the 3 QUOTED rows of issue 12
    assert import_legacy(tmp_path, sources) == 0
    rep = report(tmp_path, arms=["yolo11n.yaml", "yolo11n-mlla.yaml"], plot=False)
    assert all(v.se_image is None and v.bootstrap is None for v in rep.verdicts)
    assert "Without per-image statistics" in rep.markdown and "seed level only" in rep.markdown
    quoted = [r for r in read_records(tmp_path) if r["source"] == "issue 12"]
    assert len(quoted) == 3 and all(r["args"]["epochs"] == 50 and r["per_image"] is None for r in quoted)
    assert json.loads((tmp_path / "verdicts.json").read_text())[0]["metric"] == "pooled"
    assert rec_mod.select(read_records(tmp_path))[1][0]["source"] == "issue 12"  # seed 0 of stock twice: one set aside
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    one = report(tmp_path, arms=["yolo11n.yaml", "yolo11n-mlla-p4.yaml"], write=False)  # reading a verdict writes nothing
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    assert [(v.a, v.b) for v in one.verdicts if v.metric == "pooled"] == [("yolo11n.yaml", "yolo11n-mlla-p4.yaml")]


def test_the_process_queue_runs_jobs_side_by_side_and_reports_failures(tmp_path, monkeypatch):
    """The queue's own machinery with a stand-in worker process (the real one trains: covered in-process above)."""
    fake = tmp_path / "fake_worker.py"
    fake.write_text("import json, os, sys\nspec = json.load(open(sys.argv[1]))\n"
                    "if spec['seed'] == 2: sys.exit(3)\n"
                    "json.dump({'model': spec['model'], 'seed': spec['seed'], 'device': spec['device'], "
                    "'jobs': spec['jobs'], 'omp': os.environ.get('OMP_NUM_THREADS')}, open(sys.argv[2], 'w'))\n")  # fmt: skip
    monkeypatch.setattr(runner, "WORKER", (sys.executable, str(fake)))
    monkeypatch.setattr(runner, "POLL_S", 0.05)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # conftest pins it; a user's setting would win (below)
    specs = [RunSpec("yolo11n.yaml", s, Recipe(), str(tmp_path), str(tmp_path / "runs")) for s in (0, 1, 2)]
    done = []
    failed = runner._run_processes(specs, ["cpu", "cpu"], runner._Progress([], False), lambda s, r, st: done.append(r))
    assert failed == ["yolo11n-s2"]
    assert sorted(r["seed"] for r in done) == [0, 1] and {(r["device"], r["jobs"]) for r in done} == {("cpu", 2)}
    assert (tmp_path / "runs" / "yolo11n-s2.log").is_file()
    # the two runs at a time share the cores: each child's torch gets half of them (at least one)
    assert {r["omp"] for r in done} == {str(max(1, (os.cpu_count() or 1) // 2))}


def test_a_users_thread_setting_wins_over_the_share(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert runner.child_env(8)["OMP_NUM_THREADS"] == "3"
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert runner.child_env(1)["OMP_NUM_THREADS"] == str(os.cpu_count() or 1)


def test_device_slots():
    assert runner.slots("cpu") == ["cpu"] and runner.slots("cpu", 2) == ["cpu", "cpu"]
    assert runner.slots("0,1", 3) == ["0", "1", "0"] and runner.slots("cuda:1", 1) == ["1"]
    for bad in (("gpu", None), ("cpu", 0), ("0", -1)):
        with pytest.raises(ConfigError):
            runner.slots(*bad)


def test_image_term_separates_the_arms_image_by_image_part_from_run_noise():
    """Synthetic resample matrix with known parts: shared by all runs (var 1), by the arm (B - A: var 0.25), by the
    run alone (var 0.5), plus a constant seed effect per run. Only the arm part survives seeds and is not already in
    the seed spread: image_term must recover 0.25, and say so."""
    from edge_mlla.study.verdict import image_term

    rng = np.random.default_rng(0)
    reps, ka, kb = 20000, 3, 2
    common = rng.normal(0, 1, (reps, 1))
    arm_a, arm_b = rng.normal(0, math.sqrt(0.125), (reps, 1)), rng.normal(0, math.sqrt(0.125), (reps, 1))
    own = rng.normal(0, math.sqrt(0.5), (reps, ka + kb))
    maps = common + np.hstack([np.repeat(arm_a, ka, 1), np.repeat(arm_b, kb, 1)]) + own + rng.normal(0, 3, ka + kb)
    v, split = image_term(maps, range(ka), range(ka, ka + kb))
    assert split and v == pytest.approx(0.25, rel=0.08)
    v1, split1 = image_term(maps, [0], [ka])  # one run per arm: the run parts cannot be told apart
    assert not split1 and v1 == pytest.approx(0.25 + 2 * 0.5, rel=0.08)


@pytest.mark.parametrize(
    "arm,err,needle",
    [
        ("nope.yaml", "MissingFileError", "model 'nope.yaml' not found"),
        ("yolo11q-mlla.yaml", "ConfigError", "unknown model scale 'q'"),
        ("{notmodel}", "ConfigError", "is not a model yaml"),
        ("{missing_pt}", "MissingFileError", "checkpoint not found"),
        ("model.onnx", "ConfigError", "a study arm is a model yaml"),
    ],
)
def test_study_checks_every_arm_before_any_run(tmp_path, arm, err, needle):
    # a misspelt arm is refused up front (it used to start, fail one run per seed, and write an empty report)
    from edge_mlla import errors
    from edge_mlla.study.runner import check_model, plan_study

    (tmp_path / "notmodel.yaml").write_text("a: 1\n")
    arm = arm.format(notmodel=tmp_path / "notmodel.yaml", missing_pt=tmp_path / "gone.pt")
    with pytest.raises(getattr(errors, err), match=needle):
        plan_study(["yolo11n.yaml", arm], seeds="0-1", out=tmp_path / "out", runs=tmp_path / "runs")
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()
    for good in ("yolo11n.yaml", "yolo11n-mlla.yaml", "yolo26n-mlla-p4.yaml", str(PT)):  # Ultralytics', ours, a .pt
        check_model(good)
