"""YOLO11-MLLA inside an unmodified Ultralytics: build, rect validation, train, reload, val, predict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import edge_mlla.nn  # noqa: F401  registers C2MLLA and our yamls
from edge_mlla.errors import ConfigError
from edge_mlla.nn import C2MLLA, MLLABlock

ROOT = Path(__file__).resolve().parents[1]


def _yolo(cfg: str, **kw):
    from ultralytics import YOLO

    return YOLO(cfg, **kw)


@pytest.mark.parametrize("scale", list("nsmlx"))
def test_builds_at_every_scale_with_c2psa_scaling(scale):
    from ultralytics.nn.tasks import DetectionModel

    ours = DetectionModel(f"yolo11{scale}-mlla.yaml", nc=3, verbose=False)
    stock = DetectionModel(f"yolo11{scale}.yaml", nc=3, verbose=False)
    m, s = ours.model[10], stock.model[10]
    assert isinstance(m, C2MLLA) and type(s).__name__ == "C2PSA"
    # Same width scaling and repeat handling as the C2PSA it replaces.
    assert m.c == s.c and len(m.m) == len(s.m)
    assert m.cv1.conv.in_channels == s.cv1.conv.in_channels
    assert all(isinstance(b, MLLABlock) for b in m.m)
    # Everything else is the stock model, layer for layer.
    assert [type(a).__name__ for i, a in enumerate(ours.model) if i != 10] == [
        type(b).__name__ for i, b in enumerate(stock.model) if i != 10
    ]


def test_p4_variant_puts_mlla_on_the_stride16_path():
    from ultralytics.nn.tasks import DetectionModel

    model = DetectionModel("yolo11n-mlla-p4.yaml", nc=3, verbose=False)
    mlla = [i for i, m in enumerate(model.model) if isinstance(m, C2MLLA)]
    assert mlla == [10, 14]
    feats = {}
    for i in mlla:
        model.model[i].register_forward_hook(lambda mod, inp, out, i=i: feats.__setitem__(i, out.shape))
    model.eval()(torch.zeros(1, 3, 256, 320))
    assert feats[10][-2:] == (8, 10) and feats[14][-2:] == (16, 20)  # strides 32 and 16


def test_rectangular_batches_forward():
    model = _yolo("yolo11n-mlla.yaml").model.eval()
    with torch.no_grad():
        for hw in [(320, 320), (192, 320), (320, 224), (96, 160)]:
            y = model(torch.zeros(2, 3, *hw))[0]
            assert y.shape[0] == 2 and y.shape[2] == sum((hw[0] // s) * (hw[1] // s) for s in (8, 16, 32))


def test_unknown_scale_is_a_clear_error():
    from edge_mlla.nn import resolve_model_yaml

    assert resolve_model_yaml("yolo11n-mlla.yaml") is not None
    assert resolve_model_yaml("yolo11q-mlla.yaml") is None  # not a scale letter: Ultralytics reports it missing
    with pytest.raises(ConfigError, match="scale 'q'.*n, s, m, l, x"):
        edge_mlla.nn.model_config("yolo11q-mlla.yaml")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_data):
    """One epoch of YOLO11n-MLLA on 8 BCCD images at 128 px, through our train() wrapper."""
    from edge_mlla.train import train

    root, data = tmp_path_factory.mktemp("tiny"), tiny_data
    best = train("yolo11n-mlla.yaml", data=data, imgsz=128, epochs=1, batch=4, project=root / "runs", workers=0,
                 val=True, seed=0)
    return best, data


def test_a_second_run_with_the_same_name_never_overwrites_the_first(tiny_run, tiny_data):
    from edge_mlla.train import train

    best, _ = tiny_run
    first = best.parents[1]  # runs/exp
    before = {p.name: p.read_bytes() for p in (first / "weights").iterdir()}
    csv_before = (first / "results.csv").read_text()
    again = train("yolo11n-mlla.yaml", data=tiny_data, imgsz=64, epochs=1, batch=4, project=first.parent, workers=0,
                  val=False, seed=1)  # same default name "exp"
    assert again.parents[1].name in ("exp2", "exp-2") and again.is_file()  # Ultralytics' increment_path
    assert {p.name: p.read_bytes() for p in (first / "weights").iterdir()} == before  # untouched, byte for byte
    assert (first / "results.csv").read_text() == csv_before


def test_one_epoch_training_reloads_in_fresh_process_and_validates(tiny_run):
    best, data = tiny_run
    assert best.is_file()
    script = textwrap.dedent(
        f"""
        import json
        from ultralytics import YOLO  # no edge_mlla import: the checkpoint must pull it in itself
        m = YOLO({str(best)!r})
        kinds = sorted({{type(x).__name__ for x in m.model.modules()}} & {{"C2MLLA", "MLLABlock"}})
        metrics = m.val(data={str(data)!r}, imgsz=128, batch=2, rect=True, plots=False, workers=0, verbose=False)
        res = m.predict({str(sorted((data.parent / "images" / "val").glob("*.jpg"))[0])!r}, imgsz=128, conf=0.0,
                        verbose=False)
        print("RESULT", json.dumps({{"kinds": kinds, "map50": float(metrics.box.map50), "n": len(res[0].boxes),
                                     "names": m.names}}))
        """
    )
    env = {**os.environ, "YOLO_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.split("RESULT", 1)[1])
    assert res["kinds"] == ["C2MLLA", "MLLABlock"]
    assert res["names"] == {"0": "RBC", "1": "WBC", "2": "Platelets"}
    assert 0.0 <= res["map50"] <= 1.0
    assert res["n"] > 0  # conf=0: the head produces boxes


def test_train_rejects_bad_arguments(tmp_path):
    from edge_mlla.errors import MissingFileError
    from edge_mlla.train import train

    with pytest.raises(ConfigError, match="epochs must be a positive int"):
        train("yolo11n-mlla.yaml", epochs=0)
    with pytest.raises(MissingFileError, match="neither a bundled name"):
        train("yolo11n-mlla.yaml", data=tmp_path / "nope.yaml", epochs=1)
