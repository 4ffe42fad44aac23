"""Detector: parity across backends and with Ultralytics, stock Ultralytics exports, batching, bad input, threads."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_mlla import Detections, Detector
from edge_mlla.errors import (
    BackendUnavailableError,
    ConfigError,
    ImageReadError,
    InputTypeError,
    MissingFileError,
    ModelFileError,
    ShapeError,
)
from edge_mlla.runtimes import available

CONF, IOU = 0.25, 0.45  # the normal threshold: the bundled model (50 epochs) finds 13-18 cells a BCCD val image at 320


def match(a: Detections, b: Detections, box_px: float = 1.0, score_tol: float = 1e-3, conf: float = CONF) -> dict:
    """Pair each detection of ``a`` with one of ``b`` (same class, boxes within ``box_px``); assert a bijection.

    A box may be missing on one side only when its score is within ``score_tol`` of the threshold.
    Returns the largest box and score differences seen.
    """
    used = np.zeros(len(b), bool)
    worst = {"box": 0.0, "score": 0.0, "pairs": 0}
    for i in range(len(a)):
        cand = np.flatnonzero((b.class_id == a.class_id[i]) & ~used)
        diff = np.abs(b.xyxy[cand] - a.xyxy[i]).max(1) if len(cand) else np.zeros(0)
        if not len(cand) or diff.min() > box_px:
            assert a.confidence[i] - conf < score_tol, f"unmatched {a[i].to_dict()} (closest off by {diff.min() if len(diff) else None})"
            continue
        j = cand[diff.argmin()]
        used[j] = True
        worst["box"] = max(worst["box"], float(diff.min()))
        worst["score"] = max(worst["score"], float(abs(a.confidence[i] - b.confidence[j])))
        worst["pairs"] += 1
    assert all(s - conf < score_tol for s in b.confidence[~used]), "detections only in b"
    assert worst["score"] <= score_tol, worst
    return worst


@pytest.fixture(scope="module")
def images(val_images) -> list[np.ndarray]:
    from ultralytics.utils import ASSETS  # the bus photo Ultralytics ships

    return [cv2.imread(str(p)) for p in val_images[:3]] + [cv2.imread(str(ASSETS / "bus.jpg"))]


@pytest.fixture(scope="module")
def ov_det(exported) -> Detector:
    return Detector(exported("openvino"), precision="f32", conf=CONF, iou=IOU)


@pytest.fixture(scope="module")
def ort_det(exported) -> Detector:
    return Detector(exported("onnx"), backend="onnxruntime", conf=CONF, iou=IOU)


@pytest.fixture(scope="module")
def ul_exports(trained_pt, tmp_path_factory):
    """The same weights exported by Ultralytics' own exporter (training-form MLLA, stock metadata)."""
    import edge_mlla.nn  # noqa: F401  registers the MLLA modules, sets up offline mode
    from ultralytics import YOLO

    work = tmp_path_factory.mktemp("ul_export")
    pt = work / "ul.pt"
    shutil.copy(trained_pt, pt)
    onnx = Path(YOLO(str(pt)).export(format="onnx", imgsz=320, simplify=False, verbose=False))
    xml_dir = Path(YOLO(str(pt)).export(format="openvino", imgsz=320, verbose=False))
    return {"onnx": onnx, "openvino": xml_dir}


# ------------------------------------------------------------------------------------------ parity
def test_backends_agree_on_real_images(ov_det, ort_det, trained_pt, images):
    """openvino (f32 hint), onnxruntime and torch: boxes within 1 px, same classes, scores within 1e-3."""
    assert ov_det.backend.name == "openvino" and ov_det.precision == "f32"
    torch_det = Detector(trained_pt, backend="torch", device="cpu", imgsz=320, conf=CONF, iou=IOU)
    assert torch_det.names == ov_det.names == ort_det.names and "RBC" in ov_det.names.values()
    total = 0
    for img in images:
        ref = ort_det(img)
        total += len(ref)
        for other in (ov_det(img), torch_det(img)):
            match(other, ref)
            match(ref, other)
    assert total > 10  # the comparison covered real detections


def test_matches_ultralytics_predict(exported, ort_det, images):
    from ultralytics import YOLO

    yolo = YOLO(str(exported("onnx")), task="detect")
    pairs = 0
    for img in images:
        r = yolo.predict(img, conf=CONF, iou=IOU, imgsz=320, verbose=False)[0]
        ref = Detections(r.boxes.xyxy.numpy(), r.boxes.conf.numpy(), r.boxes.cls.numpy().astype(int), names=r.names)
        pairs += match(ort_det(img), ref)["pairs"]
    assert pairs > 10


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_ultralytics_exports_load_and_match(fmt, ul_exports, ort_det, images):
    """Files written by Ultralytics' exporter (its metadata layout) load and give our exports' detections."""
    det = Detector(ul_exports[fmt], conf=CONF, iou=IOU, precision="f32")  # parity with ORT f32: pinned
    assert det.names == ort_det.names and det.imgsz == (320, 320) and det.stride == 32
    for img in images[:2]:
        match(det(img), ort_det(img))


def test_stock_yolo11_architecture_exports_run(tmp_path):
    """A stock (non-MLLA) YOLO11n with 80 COCO-style classes, exported by Ultralytics, runs end to end."""
    import edge_mlla.nn  # noqa: F401
    from ultralytics import YOLO

    onnx = Path(YOLO("yolo11n.yaml").export(format="onnx", imgsz=256, simplify=False, verbose=False))
    det = Detector(onnx)
    assert len(det.names) == 80 and det.imgsz == (256, 256)
    d = det(np.full((300, 400, 3), 128, np.uint8))
    assert isinstance(d, Detections) and d.xyxy.shape[1] == 4


# ------------------------------------------------------------------------------------------ inputs
def test_batches_paths_rgb_and_layouts(ort_det, images, val_images):
    singles = [ort_det(img) for img in images]
    assert ort_det(images) == singles  # list -> batched, same answers
    assert ort_det(np.stack([images[0], images[0]])) == [singles[0], singles[0]]  # NxHxWx3
    assert ort_det(str(val_images[0])) == singles[0] and ort_det(val_images[0]) == singles[0]
    assert ort_det(images[0][..., ::-1].copy(), rgb=True) == singles[0]
    d = singles[0]
    assert d.xyxy.dtype == np.float32 and len(d) == len(list(d)) > 0
    h, w = images[0].shape[:2]
    assert d.xyxy[:, [0, 2]].max() <= w and d.xyxy[:, [1, 3]].max() <= h and d.xyxy.min() >= 0
    assert d.draw(images[0]).shape == images[0].shape


def test_fixed_batch_model_chunks_and_pads(exported, images, ort_det):
    det = Detector(exported("onnx", batch=2), backend="onnxruntime", conf=CONF, iou=IOU)
    assert det.batch == 2
    out = det(images[:3])  # one full batch of 2, then 1 image padded to 2
    assert len(out) == 3
    for a, img in zip(out, images[:3]):
        match(a, ort_det(img), box_px=1e-3, score_tol=1e-5)


def test_closed_detector_and_foreign_class_ids_are_typed_errors(exported, images):
    from edge_mlla.errors import ClosedError, ConfigError

    det = Detector(exported("onnx", imgsz=320), backend="onnxruntime")
    det.close()
    det.close()  # twice is fine
    with pytest.raises(ClosedError, match="this Detector is closed"):
        det(images[0])
    with pytest.raises(ClosedError):
        det.submit(images[0])
    with pytest.raises(ClosedError, match="backend is closed"):
        det.backend.infer(np.zeros((1, 3, 320, 320), np.float32))
    with pytest.raises(ConfigError, match=r"classes \[99, -1\] are not class ids of this model; it has 3: 0=RBC"):
        Detector(exported("onnx", imgsz=320), backend="onnxruntime", classes=[0, 99, -1])


def test_exif_rotated_file_equals_its_decoded_array(ort_det):
    path = Path(__file__).parent / "data" / "exif_orientation8.jpg"
    from_file = ort_det(path)
    assert len(from_file) > 5 and from_file == ort_det(cv2.imread(str(path)))


def test_documented_conversions(ort_det, images):
    img = images[0]
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    as_bgr = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    assert ort_det(gray) == ort_det(as_bgr) == ort_det(gray[..., None])
    bgra = cv2.cvtColor(img, cv2.COLOR_BGR2BGRA)
    bgra[..., 3] = 7  # alpha is ignored
    assert ort_det(bgra) == ort_det(img)
    flipped = img[:, ::-1]  # negative strides
    assert ort_det(flipped) == ort_det(np.ascontiguousarray(flipped))
    strided = img[::2, ::2]
    assert ort_det(strided) == ort_det(strided.copy())
    tiny = ort_det(np.zeros((1, 1, 3), np.uint8))
    assert tiny.xyxy.shape[1] == 4 and (tiny.xyxy <= 1).all()


def test_huge_image(ort_det, images):
    big = cv2.resize(images[0], (8000, 6000), interpolation=cv2.INTER_NEAREST)  # 4:3 like BCCD
    d = ort_det(big)
    assert len(d) > 0 and d.xyxy[:, [0, 2]].max() <= 8000 and d.xyxy[:, [1, 3]].max() <= 6000
    small = ort_det(images[0])
    assert abs(len(d) - len(small)) <= max(3, len(small) // 4)  # same picture, same kind of answer


def test_bad_inputs_raise_typed_errors(ort_det, tmp_path):
    with pytest.raises(InputTypeError, match="image is None"):
        ort_det(None)
    with pytest.raises(InputTypeError, match="has type int"):
        ort_det(5)
    with pytest.raises(ShapeError, match="empty"):
        ort_det(np.zeros((0, 10, 3), np.uint8))
    with pytest.raises(ShapeError, match="empty list"):
        ort_det([])
    with pytest.raises(ShapeError, match="dtype is float32; expected uint8"):
        ort_det(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ShapeError, match=r"shape \(10, 10, 2\)"):
        ort_det(np.zeros((10, 10, 2), np.uint8))
    with pytest.raises(MissingFileError, match="image file not found"):
        ort_det(tmp_path / "nope.jpg")
    txt = tmp_path / "notes.jpg"
    txt.write_text("hello")
    with pytest.raises(ImageReadError, match="could not be decoded"):
        ort_det(txt)
    with pytest.raises(InputTypeError, match="submit\\(\\) takes one image"):
        ort_det.submit([np.zeros((8, 8, 3), np.uint8)] * 2)


def test_bad_models_and_arguments(tmp_path, exported):
    with pytest.raises(MissingFileError, match="model file not found"):
        Detector(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00garbage")
    with pytest.raises(ModelFileError, match="could not load"):
        Detector(junk)
    weird = tmp_path / "model.h5"
    weird.write_bytes(b"x")
    with pytest.raises(ModelFileError, match=r"no backend loads \.h5"):
        Detector(weird)
    with pytest.raises(ConfigError, match="conf must be"):
        Detector(exported("onnx"), conf=2)
    with pytest.raises(ConfigError, match="fixed input size"):
        Detector(exported("onnx"), imgsz=640)
    if not available()["cuda"].available:
        with pytest.raises(BackendUnavailableError, match="CUDAExecutionProvider"):
            Detector(exported("onnx"), backend="cuda")


def test_model_with_unexpected_outputs(tmp_path):
    from onnx import TensorProto, helper, save

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])
    y = helper.make_tensor_value_info("pooled", TensorProto.FLOAT, [1, 3, 1, 1])
    graph = helper.make_graph([helper.make_node("GlobalAveragePool", ["images"], ["pooled"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"names": "{0: 'a', 1: 'b'}", "imgsz": "[64, 64]", "stride": "32"})
    path = tmp_path / "classifier.onnx"
    save(model, str(path))
    with pytest.raises(ModelFileError, match=r"output 'pooled' has shape \(1, 3, 1, 1\); expected a YOLO detect output"):
        Detector(path)


def test_user_arguments_override_metadata(exported, images, ort_det):
    onnx = exported("onnx")
    det = Detector(onnx, names=["a", "b", "c"], classes=[1], conf=0.5)
    d = det(images[0])
    assert set(d.class_id.tolist()) <= {1} and set(d.class_name.tolist()) <= {"b"}
    assert (d.confidence > 0.5).all()
    ref = ort_det(images[0])
    assert len(d) == int(((ref.class_id == 1) & (ref.confidence > 0.5)).sum())


def test_thread_safety_matches_serial(ov_det, ort_det, images):
    for det in (ov_det, ort_det):
        serial = [det(img) for img in images]
        jobs = [i % len(images) for i in range(16)]
        with ThreadPoolExecutor(4) as pool:
            threaded = list(pool.map(lambda i: det(images[i]), jobs))
        assert all(t == serial[i] for t, i in zip(threaded, jobs))


def test_submit_matches_predict(ov_det, images):
    futs = [ov_det.submit(img) for img in images]
    assert [f.result() for f in futs] == [ov_det(img) for img in images]
