"""Detections: validation, indexing, iteration, drawing and the supervision converter."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from edge_mlla import Detections
from edge_mlla.errors import InputTypeError, MissingDependencyError, ShapeError


@pytest.fixture()
def dets() -> Detections:
    return Detections(
        np.array([[10, 10, 50, 40], [60, 5, 90, 90], [0, 0, 5, 5]], np.float32),
        np.array([0.9, 0.6, 0.3], np.float32),
        np.array([1, 0, 7]),
        names={0: "RBC", 1: "WBC"},
    )


def test_fields_and_names(dets):
    assert len(dets) == 3
    assert dets.xyxy.dtype == np.float32 and dets.confidence.dtype == np.float32 and dets.class_id.dtype == np.int64
    assert dets.class_name.tolist() == ["WBC", "RBC", "7"]  # unknown id falls back to its number
    assert [d.class_name for d in dets] == ["WBC", "RBC", "7"]
    first = next(iter(dets))
    assert first.confidence == pytest.approx(0.9) and first.class_id == 1
    np.testing.assert_array_equal(first.xyxy, [10, 10, 50, 40])


def test_indexing_stays_2d(dets):
    one = dets[0]
    assert isinstance(one, Detections) and one.xyxy.shape == (1, 4) and one.names == dets.names
    assert len(dets[1:]) == 2
    assert dets[dets.class_id == 0].class_name.tolist() == ["RBC"]
    assert dets[[2, 0]].confidence.tolist() == pytest.approx([0.3, 0.9])
    assert len(dets[dets.confidence > 5]) == 0 and dets[dets.confidence > 5].xyxy.shape == (0, 4)


def test_validation_messages():
    with pytest.raises(ShapeError, match=r"xyxy must have shape \(n, 4\), got \(3,\)"):
        Detections(np.zeros(3), np.zeros(3), np.zeros(3))
    with pytest.raises(ShapeError, match=r"confidence must have shape \(2,\).*got \(3,\)"):
        Detections(np.zeros((2, 4)), np.zeros(3), np.zeros(2))
    with pytest.raises(InputTypeError, match="numpy array"):
        Detections([[0, 0, 1, 1]], np.zeros(1), np.zeros(1))
    with pytest.raises(ShapeError, match="data\\['track'\\]"):
        Detections(np.zeros((2, 4)), np.zeros(2), np.zeros(2), data={"track": np.zeros(3)})


def test_empty_and_equality(dets):
    e = Detections.empty({0: "x"})
    assert len(e) == 0 and list(e) == [] and e.class_name.shape == (0,)
    assert dets == dets[[0, 1, 2]] and dets != dets[:2]


def test_draw_changes_only_a_copy(dets):
    img = np.zeros((100, 100, 3), np.uint8)
    out = dets.draw(img)
    assert out is not img and not img.any() and out.shape == img.shape
    assert out[10, 30].any() and out[25, 10].any()  # top and left edges of the first box
    assert not out[25, 30].any()  # inside the box stays untouched
    with pytest.raises(ShapeError, match="BGR uint8"):
        dets.draw(np.zeros((100, 100), np.uint8))


def test_to_dict(dets):
    rec = dets.to_dict()[0]
    assert rec == {"xyxy": [10.0, 10.0, 50.0, 40.0], "confidence": pytest.approx(0.9), "class_id": 1, "class_name": "WBC"}


def test_to_supervision_with_a_duck_typed_module(monkeypatch, dets):
    """The converter only needs ``supervision.Detections(xyxy=, confidence=, class_id=, data=)``."""
    captured = {}
    fake = types.ModuleType("supervision")
    fake.Detections = lambda **kw: captured.update(kw) or "sv-detections"
    monkeypatch.setitem(sys.modules, "supervision", fake)
    assert dets.to_supervision() == "sv-detections"
    np.testing.assert_array_equal(captured["xyxy"], dets.xyxy)
    assert captured["data"]["class_name"].tolist() == ["WBC", "RBC", "7"]


def test_to_supervision_missing(monkeypatch, dets):
    monkeypatch.setitem(sys.modules, "supervision", None)  # makes `import supervision` fail
    with pytest.raises(MissingDependencyError, match="pip install supervision"):
        dets.to_supervision()


def test_to_supervision_real(dets):
    sv = pytest.importorskip("supervision")
    out = dets.to_supervision()
    assert isinstance(out, sv.Detections) and len(out) == 3
    np.testing.assert_array_equal(out.class_id, [1, 0, 7])
