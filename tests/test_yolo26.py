"""YOLO26-MLLA: the yamls build at every scale with C2MLLA in place of C2PSA, train, and export either head: by
default the one-to-many (NMS) head, as Ultralytics' own export does; on request the NMS-free end-to-end head as
(N, 300, 6) ONNX / IR with metadata that Detector and Ultralytics both read to the pixel."""

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
    from edge_mlla.quantize.scope import ScopePolicy, read_graph

    onnx_path = export(y26_pt, format="onnx", imgsz=320, output=tmp_path, end2end=True)
    xml = export(y26_pt, format="openvino", imgsz=320, output=tmp_path, end2end=True)
    assert [o.shape for o in ort.InferenceSession(str(onnx_path)).get_outputs()] == [[1, 300, 6]]
    for f in (onnx_path, xml):
        mf = inspect_model(f)
        assert mf.metadata["end2end"] == "True" and mf.info.names == {0: "RBC", 1: "WBC", 2: "Platelets"}
        # the quantize scope finds the NMS-free branch's box convs (3 per level) by structure, in both formats
        box = ScopePolicy(("box",)).select(read_graph(f))
        assert len(box) == 9 and all("/one2one_cv2." in n for n in box), sorted(box)
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


def test_default_head_is_ultralytics_default(y26_pt, tmp_path, val_images):
    """None exports what Ultralytics' own exporter writes for the same checkpoint (the one-to-many head, NMS
    afterwards): same output layout, same numbers on a real image (our file is re-parameterized, theirs is not).
    Raw outputs, not boxes: a one-epoch model scores thousands of anchors equally, so NMS order is a tie-break."""
    import onnxruntime as ort
    from ultralytics import YOLO

    from edge_mlla.errors import ConfigError
    from edge_mlla.export import export
    from edge_mlla.modelfile import inspect_model
    from edge_mlla.ops import letterbox, read_image

    ours = export(y26_pt, format="onnx", imgsz=320, output=tmp_path / "ours")
    ref_pt = tmp_path / "ref" / "model.pt"
    ref_pt.parent.mkdir()
    ref_pt.write_bytes(y26_pt.read_bytes())
    theirs = YOLO(str(ref_pt)).export(format="onnx", imgsz=320, simplify=False)
    assert inspect_model(ours).metadata["end2end"] == "False"
    x = letterbox(read_image(val_images[0]), (320, 320))[0][None, :, :, ::-1].transpose(0, 3, 1, 2)
    x = np.ascontiguousarray(x, np.float32) / 255.0
    run = lambda f: ort.InferenceSession(str(f)).run(None, {"images": x})[0]  # noqa: E731
    a, b = run(ours), run(theirs)
    assert a.shape == b.shape == (1, 7, 2100)
    assert np.abs(a[:, :4] - b[:, :4]).max() < 0.05 and np.abs(a[:, 4:] - b[:, 4:]).max() < 1e-4  # px, score
    assert run(export(y26_pt, format="onnx", imgsz=320, output=tmp_path / "no", end2end=False)).shape == a.shape
    with pytest.raises(ConfigError, match="end2end must be True, False or None"):
        export(y26_pt, format="onnx", imgsz=320, output=tmp_path, end2end="yes")


def test_end2end_only_where_the_head_has_it(trained_pt, tmp_path):
    from edge_mlla.errors import ConfigError
    from edge_mlla.export import export

    with pytest.raises(ConfigError, match="no one-to-one"):
        export(trained_pt, format="onnx", imgsz=320, output=tmp_path, end2end=True)


def test_int8_default_keeps_the_box_branch_float_without_dfl(y26_pt, tmp_path, val_images):
    """YOLO26's head has no DFL: the default INT8 scope adds its box branch (derived from the graph), and in the
    INT8 IR OpenVINO reads those convs' inputs unquantized while the class branch's are quantized."""
    from edge_mlla.export import export
    from edge_mlla.quantize import quantize
    from edge_mlla.quantize.scope import default_groups, has_dfl, read_graph

    xml = export(y26_pt, format="openvino", imgsz=320, output=tmp_path / "fp")
    assert not has_dfl(read_graph(xml)) and default_groups(read_graph(xml))[-1] == "box"
    assert "box" not in default_groups(read_graph(xml), "onnxruntime")  # measured with NNCF only
    r = quantize(xml, calib=[str(p) for p in val_images[:4]], subset_size=4, preset="mixed", val=None,
                 latency_runs=0, bias_correction="none", output=tmp_path / "q", progress=False)  # fmt: skip
    assert r.details["ignored_scope"] == ["head", "kv_matmul", "z", "box"] and r.float_ops["box"] == {"Conv": 9}
    g = read_graph(r.output)
    fq_fed = lambda n: any(g.nodes[p].type == "FakeQuantize" for p in g.nodes[n].act_inputs())  # noqa: E731
    convs = [n for n in g.nodes if g.nodes[n].type == "Conv" and "/model.23/" in n]
    box = [n for n in convs if "/cv2." in n]
    cls = [n for n in convs if "/cv3." in n and n.endswith(".2/Conv/WithoutBiases")]
    assert len(box) == 9 and len(cls) == 3
    assert not any(fq_fed(n) for n in box) and all(fq_fed(n) for n in cls)
