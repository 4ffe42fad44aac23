"""YOLO26-MLLA: the yamls build at every scale with C2MLLA in place of C2PSA, train, and export the NMS-free
end-to-end head as (N, 300, 6) ONNX / IR with metadata that Detector and Ultralytics both read to the pixel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ultralytics")


@pytest.mark.parametrize("scale", ["n", "s"])  # the larger scales differ only in multipliers (built in test_ultralytics for YOLO11)
@pytest.mark.parametrize("variant", ["", "-p4"])
def test_yolo26_mlla_builds_at_every_scale_like_yolo26(scale, variant):
    import edge_mlla.nn  # noqa: F401
    from ultralytics.nn.tasks import DetectionModel

    from edge_mlla.nn import C2MLLA

    ours = DetectionModel(f"yolo26{scale}-mlla{variant}.yaml", nc=3, verbose=False)
    stock = DetectionModel(f"yolo26{scale}.yaml", nc=3, verbose=False)
    mlla = [i for i, m in enumerate(ours.model) if isinstance(m, C2MLLA)]
    assert mlla == ([10, 14] if variant else [10])
    psa = stock.model[10]
    assert ours.model[10].c == psa.c and len(ours.model[10].m) == len(psa.m)  # same width and repeats as C2PSA
    head, shead = ours.model[-1], stock.model[-1]
    assert head.reg_max == shead.reg_max == 1 and head.one2one_cv2 is not None  # NMS-free branch, no DFL
    if not variant:  # every other layer identical to stock YOLO26
        for i, (a, b) in enumerate(zip(ours.model, stock.model)):
            if i != 10:
                assert type(a) is type(b) and sum(p.numel() for p in a.parameters()) == sum(p.numel() for p in b.parameters()), i


@pytest.fixture(scope="module")
def y26_pt(tmp_path_factory, tiny_data) -> Path:
    from edge_mlla.train import train

    root = tmp_path_factory.mktemp("y26")
    return train("yolo26n-mlla.yaml", data=tiny_data, imgsz=128, epochs=1, batch=4, project=root / "runs", workers=0,
                 val=False, seed=0)  # fmt: skip


def test_end_to_end_export_and_parity_with_ultralytics(y26_pt, tmp_path, val_images):
    import onnxruntime as ort
    from ultralytics import YOLO

    from edge_mlla import Detector
    from edge_mlla.export import export
    from edge_mlla.modelfile import inspect_model

    onnx_path = export(y26_pt, format="onnx", imgsz=320, output=tmp_path)
    xml = export(y26_pt, format="openvino", imgsz=320, output=tmp_path)
    assert [o.shape for o in ort.InferenceSession(str(onnx_path)).get_outputs()] == [[1, 300, 6]]
    for f in (onnx_path, xml):
        mf = inspect_model(f)
        assert mf.metadata["end2end"] == "True" and mf.info.names == {0: "RBC", 1: "WBC", 2: "Platelets"}
    ultra = YOLO(str(onnx_path), task="detect")
    for backend, f, prec in (("onnxruntime", onnx_path, None), ("openvino", xml, "f32")):
        det = Detector(f, backend=backend, precision=prec, conf=0.001)
        for img in val_images[:3]:
            ours = det(img)
            ref = ultra.predict(str(img), imgsz=320, conf=0.001, verbose=False)[0].boxes
            assert len(ours) == len(ref) > 0
            order_o, order_r = np.lexsort(ours.xyxy.T), np.lexsort(ref.xyxy.numpy().T)
            assert np.abs(ours.xyxy[order_o] - ref.xyxy.numpy()[order_r]).max() <= 1.0
            np.testing.assert_array_equal(ours.class_id[order_o], ref.cls.numpy().astype(int)[order_r])
        det.close()


def test_one_to_many_head_on_request(y26_pt, tmp_path):
    import onnxruntime as ort

    from edge_mlla.errors import ConfigError
    from edge_mlla.export import export

    p = export(y26_pt, format="onnx", imgsz=320, output=tmp_path, end2end=False)
    assert [o.shape for o in ort.InferenceSession(str(p)).get_outputs()] == [[1, 7, 2100]]
    with pytest.raises(ConfigError, match="end2end must be True, False or None"):
        export(y26_pt, format="onnx", imgsz=320, output=tmp_path, end2end="yes")


def test_end2end_only_where_the_head_has_it(trained_pt, tmp_path):
    from edge_mlla.errors import ConfigError
    from edge_mlla.export import export

    with pytest.raises(ConfigError, match="no one-to-one"):
        export(trained_pt, format="onnx", imgsz=320, output=tmp_path, end2end=True)
