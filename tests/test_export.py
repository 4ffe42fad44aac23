"""edge_mlla.export: ONNX / OpenVINO files, metadata, op audit, runtime equality, bad input.

Exports of small nc=3 models (built from yaml, saved as Ultralytics checkpoints) are made once per
session. Runtime outputs are compared with the torch deploy form on normalized outputs (boxes
divided by the input size), which is an independent path (torch vs the exported graph).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

import edge_mlla.nn  # noqa: F401
from edge_mlla.errors import (
    ConfigError,
    EdgeMLLAError,
    ExportError,
    MissingFileError,
    ModelFileError,
    OutputNotWritableError,
)
from edge_mlla.export import export, load_detector, op_audit, op_types
from edge_mlla.modelfile import parse_metadata
from edge_mlla.reparam import bind, reparameterize
from test_reparam import NAMES, bccd_batch, save_checkpoint, tiny_detector

IMGSZ = 256


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("ckpts")
    out = {"mlla": d / "mlla.pt", "stock": d / "stock.pt"}
    save_checkpoint(tiny_detector("yolo11n-mlla.yaml", seed=0), out["mlla"])
    save_checkpoint(tiny_detector("yolo11n.yaml", seed=1), out["stock"])
    return out


@pytest.fixture(scope="session")
def made(tmp_path_factory, ckpts):
    """``made(name, fmt, imgsz, **kw) -> Path``: one export per argument set per session."""
    cache: dict[tuple, Path] = {}
    base = tmp_path_factory.mktemp("exports")

    def get(name: str = "mlla", fmt: str = "onnx", imgsz=IMGSZ, **kw) -> Path:
        key = (name, fmt, str(imgsz), tuple(sorted(kw.items())))
        if key not in cache:
            cache[key] = export(ckpts[name], format=fmt, imgsz=imgsz, output=base / f"e{len(cache)}", **kw)
        return cache[key]

    return get


def torch_reference(ckpt: Path, x: torch.Tensor, dynamic: bool = False) -> np.ndarray:
    """The torch deploy form's export-mode output for x."""
    model = reparameterize(load_detector(ckpt))
    bind(model, None if dynamic else tuple(x.shape[-2:]), dynamic=dynamic)
    head = model.model[-1]
    head.export, head.format, head.shape = True, "onnx", None
    with torch.no_grad():
        return model(x).numpy()


def normalized(y: np.ndarray, h: int, w: int) -> np.ndarray:
    y = y.astype(np.float64).copy()
    y[:, [0, 2]] /= w
    y[:, [1, 3]] /= h
    return y


def ort_run(path: Path, x: np.ndarray, optimized: Path | None = None) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    if optimized is not None:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.optimized_model_filepath = str(optimized)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]


# ------------------------------------------------------------------------------------------------- ONNX
def test_onnx_file_graph_and_metadata(made):
    import onnx

    p = made()
    assert p.name == "mlla.onnx" and p.is_file()
    m = onnx.load(str(p))
    onnx.checker.check_model(m)
    assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert [i.name for i in m.graph.input] == ["images"] and [o.name for o in m.graph.output] == ["output0"]
    dims = [d.dim_value for d in m.graph.output[0].type.tensor_type.shape.dim]
    assert dims == [1, 4 + 3, sum((IMGSZ // s) ** 2 for s in (8, 16, 32))]
    raw = {p.key: p.value for p in m.metadata_props}
    info = parse_metadata(raw)
    assert info.names == NAMES and info.stride == 32 and info.imgsz == (IMGSZ, IMGSZ) and info.batch == 1
    assert info.task == "detect" and info.edge_mlla["reparameterized"] is True and info.precision == "f32"
    from ultralytics.nn.backends.base import BaseBackend  # Ultralytics' AutoBackend reads the same file

    ul = BaseBackend.read_metadata(p)
    assert ul["names"] == raw["names"] and ul["imgsz"] == raw["imgsz"]
    assert not list(p.parent.glob(".edge_mlla_*"))  # no temp leftovers


def test_onnx_op_audit_and_transpose_fusion(made, tmp_path):
    p = made()
    a = op_audit(p)
    assert a.mlla_blocks == ["/model.10/m/m.0"]
    assert a.mlla_violations() == []
    for op in ("Cos", "Sin", "Shape", "Range", "Einsum", "ConstantOfShape"):
        assert a.mlla_ops.get(op, 0) == 0
    # exactly one Transpose per block, and it is the second operand of kv = v @ k^T
    assert a.mlla_transposes == {"/model.10/m/m.0": [("/model.10/m/m.0/Transpose", True)]}
    assert a.mlla_ops["MatMul"] == 3 and a.mlla_ops["Conv"] == 9
    # ONNX Runtime folds it into FusedMatMul(transB=1): no Transpose left inside MLLA after optimization
    import onnx

    x = np.random.default_rng(0).random((1, 3, IMGSZ, IMGSZ), dtype=np.float32)
    ort_run(p, x, optimized=tmp_path / "opt.onnx")
    g = onnx.load(str(tmp_path / "opt.onnx")).graph
    inside = [n for n in g.node if n.name.startswith("/model.10/m/m.0/")]
    assert not [n for n in inside if n.op_type == "Transpose"]
    fused = [n for n in g.node if n.op_type == "FusedMatMul"]
    assert any(onnx.helper.get_attribute_value(at) == 1 for n in fused for at in n.attribute if at.name == "transB")
    assert "Table:" not in a.table() and "| Conv |" in a.table()


def test_onnx_runtime_matches_torch_deploy_form(made, ckpts, val_images):
    p = made()
    x = torch.cat([bccd_batch(val_images, IMGSZ, IMGSZ, n=1), torch.rand(1, 3, IMGSZ, IMGSZ)])
    ref = torch_reference(ckpts["mlla"], x)
    outs = np.concatenate([ort_run(p, x[i : i + 1].numpy()) for i in range(2)])
    assert outs.shape == ref.shape
    err = np.abs(normalized(outs, IMGSZ, IMGSZ) - normalized(ref, IMGSZ, IMGSZ)).max()
    assert err <= 1e-3
    assert ref[:, 4:].min() < 0.3 and ref[:, 4:].max() > 0.7  # scores carry signal


def test_training_form_exports_with_more_nodes(made):
    train = op_audit(made(imgsz=160, reparameterize=False))
    deploy = op_audit(made(imgsz=160))
    n_train, n_dep = sum(train.mlla_ops.values()), sum(deploy.mlla_ops.values())
    assert train.mlla_blocks == deploy.mlla_blocks == ["/model.10/m/m.0"]
    assert n_dep < n_train
    assert train.mlla_ops.get("Transpose", 0) >= 2 and deploy.mlla_ops["Transpose"] == 1
    assert deploy.mlla_ops["Conv"] < train.mlla_ops["Conv"]  # cpe, proj and LayerNorm folds


def test_dynamic_onnx_runs_at_two_sizes(made, ckpts):
    p = made(imgsz=160, dynamic=True)
    a = op_audit(p)
    # the shape-driven RoPE fallback: these ops appear only in dynamic exports
    assert {"Shape", "Range", "Cos", "Sin"} <= set(a.mlla_ops)
    assert parse_metadata({q.key: q.value for q in __import__("onnx").load(str(p)).metadata_props}).edge_mlla[
        "dynamic"
    ]
    for b, h, w in ((2, 160, 224), (1, 128, 96)):
        x = torch.rand(b, 3, h, w)
        out = ort_run(p, x.numpy())
        ref = torch_reference(ckpts["mlla"], x, dynamic=True)
        assert out.shape == (b, 7, sum((h // s) * (w // s) for s in (8, 16, 32)))
        assert np.abs(normalized(out, h, w) - normalized(ref, h, w)).max() <= 1e-3


def test_half_onnx_keeps_z_in_float32(made):
    import onnx

    p = made(imgsz=160, half=True)
    m = onnx.load(str(p))
    assert {i.type.tensor_type.elem_type for i in [*m.graph.input, *m.graph.output]} == {onnx.TensorProto.FLOAT}
    w = next(i for i in m.graph.initializer if i.name.endswith("qk.weight") or len(i.dims) == 4)
    assert w.data_type == onnx.TensorProto.FLOAT16
    z = [n for n in m.graph.node if "/z/" in n.name and n.op_type in ("MatMul", "Add", "Reciprocal")]
    assert len(z) == 3
    casts = {n.output[0]: n for n in m.graph.node if n.op_type == "Cast"}
    for n in z:  # every z input is float32: a Cast to float, never a fp32 -> fp16 -> fp32 round trip
        for i in n.input:
            if i in casts:
                to = next(at.i for at in casts[i].attribute if at.name == "to")
                assert to == onnx.TensorProto.FLOAT
    assert parse_metadata({q.key: q.value for q in m.metadata_props}).precision == "f16"
    x = np.random.default_rng(1).random((1, 3, 160, 160), dtype=np.float32)
    full = ort_run(made(imgsz=160), x)
    assert np.abs(normalized(ort_run(p, x), 160, 160) - normalized(full, 160, 160)).max() < 2e-2


# --------------------------------------------------------------------------------------------- OpenVINO
def test_openvino_ir_metadata_ops_and_equality(made, ckpts):
    import openvino as ov
    import yaml

    xml = made(fmt="openvino")
    assert xml.name == "mlla.xml" and xml.parent.name == "mlla_openvino_model"
    assert xml.with_suffix(".bin").is_file()
    side = yaml.safe_load((xml.parent / "metadata.yaml").read_text())
    core = ov.Core()
    model = core.read_model(str(xml))
    rt = {k: model.get_rt_info(["model_info", k]).astype(str) for k in side}
    assert rt == {k: str(v) for k, v in side.items()}
    info = parse_metadata(rt)
    assert info.names == NAMES and info.edge_mlla["reparameterized"] is True and info.imgsz == (IMGSZ, IMGSZ)

    a = op_audit(made(), openvino=xml)  # node names survive conversion: audit the IR by the same scopes
    assert a.openvino_mlla_ops and "Transpose" not in a.openvino_mlla_ops
    assert a.openvino_matmul_transpose_b == 1 and a.mlla_violations() == []
    # no Transpose anywhere: the head's DFL exports as a softmax and a MatMul by its bins (export.head)
    assert op_types(xml).get("Transpose", 0) == a.openvino_ops.get("Transpose", 0) == 0
    dfl = {op.get_type_name() for op in model.get_ops() if "/dfl/" in op.get_friendly_name()}
    assert "MatMul" in dfl and "Convolution" not in dfl and dfl & {"Softmax", "SoftMax"}

    z = [op for op in model.get_ops() if "/z/" in op.get_friendly_name()]
    assert len(z) == 4  # MatMul, Add(eps), Reciprocal, Mul: kept float32 under bf16/f16 precision hints
    assert all("DisablePrecisionConversion_0" in op.get_rt_info() for op in z)

    x = torch.rand(1, 3, IMGSZ, IMGSZ)
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    out = compiled([x.numpy()])[0]
    ref = torch_reference(ckpts["mlla"], x)
    assert np.abs(normalized(out, IMGSZ, IMGSZ) - normalized(ref, IMGSZ, IMGSZ)).max() <= 1e-3


def test_stock_checkpoint_exports(made):
    import onnx

    p = made("stock", imgsz=(128, 192))
    a = op_audit(p)
    assert a.mlla_blocks == [] and a.ops["Conv"] > 50
    info = parse_metadata({q.key: q.value for q in onnx.load(str(p)).metadata_props})
    assert info.imgsz == (128, 192) and info.names == NAMES
    out = ort_run(p, np.zeros((1, 3, 128, 192), np.float32))
    assert out.shape == (1, 7, 16 * 24 + 8 * 12 + 4 * 6)


def test_bundled_weights_export(request):
    from conftest import WEIGHTS

    if not WEIGHTS.is_file():  # the shared fixture fails without them; they land when training ends
        pytest.skip(f"bundled weights not trained yet: {WEIGHTS}")
    p = request.getfixturevalue("exported")("onnx")  # the session's shared export (imgsz 320)
    a = op_audit(p)
    assert a.mlla_violations() == [] and len(a.mlla_blocks) >= 1


# -------------------------------------------------------------------------------------------- bad input
def test_missing_checkpoint(tmp_path):
    with pytest.raises(MissingFileError, match="not found"):
        export(tmp_path / "nope.pt", output=tmp_path)
    with pytest.raises(MissingFileError):
        export("yolo11n.pt", output=tmp_path)  # a bare name is never downloaded


def test_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00not a zip file, not a pickle" * 10)
    with pytest.raises(ModelFileError, match="not a PyTorch checkpoint") as e:
        export(bad, output=tmp_path)
    assert "yolo predict" not in str(e.value)  # not Ultralytics' advice to download a model
    import zipfile

    with zipfile.ZipFile(tmp_path / "zip.pt", "w") as z:  # a zip, but not a torch archive: the cause, on one line
        z.writestr("a/data.pkl", b"garbage")
    with pytest.raises(ModelFileError, match=r"not a loadable Ultralytics checkpoint \(\w+Error: ") as e:
        export(tmp_path / "zip.pt", output=tmp_path)
    assert "\n" not in str(e.value) and "yolo predict" not in str(e.value)
    notpt = tmp_path / "model.onnx"
    notpt.write_bytes(b"x")
    with pytest.raises(ModelFileError, match=r"\.pt"):
        export(notpt, output=tmp_path)


def test_non_detector_checkpoint(tmp_path):
    from ultralytics.nn.tasks import ClassificationModel

    cls = tmp_path / "cls.pt"
    save_checkpoint(ClassificationModel("yolo11n-cls.yaml", nc=3, verbose=False), cls)
    with pytest.raises(ModelFileError, match="not an object detector"):
        export(cls, output=tmp_path)
    sd = tmp_path / "state_dict.pt"
    torch.save({"model": {"w": torch.zeros(1)}}, str(sd))
    with pytest.raises(ModelFileError):
        export(sd, output=tmp_path)


def test_bad_arguments(ckpts, tmp_path):
    with pytest.raises(ConfigError, match=r"unknown export format 'tflite': expected one of onnx, openvino"):
        export(ckpts["mlla"], format="tflite", output=tmp_path)
    with pytest.raises(ConfigError, match=r"each side must be a multiple of the model's max stride 32"):
        export(ckpts["mlla"], imgsz=(320, 330), output=tmp_path)
    with pytest.raises(ConfigError, match="batch"):
        export(ckpts["mlla"], batch=0, output=tmp_path)
    with pytest.raises(ConfigError, match="opset"):
        export(ckpts["mlla"], opset=13, output=tmp_path)
    assert not list(tmp_path.iterdir())  # validation happens before anything is written


def test_unwritable_output(ckpts, tmp_path):
    f = tmp_path / "a_file"
    f.write_text("x")
    with pytest.raises(OutputNotWritableError, match="not a folder"):
        export(ckpts["mlla"], output=f)
    with pytest.raises(OutputNotWritableError, match="not writable"):
        export(ckpts["mlla"], output=f / "sub")
    assert issubclass(OutputNotWritableError, (EdgeMLLAError, PermissionError))


def test_failed_export_keeps_the_good_file(made, ckpts, tmp_path, monkeypatch):
    good = made(imgsz=160)
    out = tmp_path / "out"
    out.mkdir()
    target = out / "mlla.onnx"
    target.write_bytes(good.read_bytes())
    before = target.read_bytes()

    def boom(*a, **k):
        raise RuntimeError("simulated exporter crash")

    monkeypatch.setattr(torch.onnx, "export", boom)
    with pytest.raises(ExportError, match="simulated exporter crash"):
        export(ckpts["mlla"], imgsz=160, output=out)
    assert target.read_bytes() == before
    assert sorted(os.listdir(out)) == ["mlla.onnx"]  # no half-written or temp files


def test_default_export_size_is_the_training_size(trained_pt, tmp_path, caplog):
    """No imgsz: the checkpoint's own training size (416 for the bundled model), not a fixed 640; another size warns."""
    from edge_mlla.export import export, export_size
    from edge_mlla.modelfile import inspect_model

    onnx = export(trained_pt, format="onnx", output=tmp_path, simplify=False)
    assert inspect_model(onnx).static_hw == (416, 416)
    with caplog.at_level("WARNING", logger="edge_mlla"):
        assert export_size(640, 416) == (640, 640)
    assert "trained at 416" in caplog.text and "1.54x" in caplog.text
    assert export_size(None, None) == (640, 640)


def test_dfl_export_form_is_ultralytics_dfl():
    # the export form of the head's DFL (softmax + MatMul by the bins) against Ultralytics' own DFL module
    import torch
    from ultralytics.nn.modules.block import DFL
    from ultralytics.nn.modules.head import Detect

    from edge_mlla.export.head import DFLExport, swap_dfl

    x = torch.randn(2, 64, 300) * 4
    ref = DFL(16)
    np.testing.assert_allclose(DFLExport(ref)(x).numpy(), ref(x).numpy(), atol=1e-5)
    head = Detect(nc=3, ch=(16, 32))
    assert swap_dfl(head) == 1 and isinstance(head.dfl, DFLExport) and swap_dfl(head) == 0
    plain = Detect(nc=3, reg_max=1, ch=(16, 32))  # no bins (YOLO26-style): nothing to swap
    assert swap_dfl(plain) == 0 and isinstance(plain.dfl, torch.nn.Identity)


def test_split_blocks_export_form_computes_the_same():
    # cv1 as two convolutions (no channel split in the graph) against each block's own forward (f32, float rounding)
    import torch
    from ultralytics.nn.modules.block import C2PSA, C3k2
    from ultralytics.utils.torch_utils import fuse_conv_and_bn

    from edge_mlla.export.blocks import split_cv1
    from edge_mlla.nn.modules import C2MLLA

    class Own(C3k2):  # a subclass with its own forward is left alone
        def forward(self, x):  # noqa: ANN001, ANN201
            return super().forward(x) * 2

    torch.manual_seed(0)
    for block, n in ((C3k2(16, 32, n=2, c3k=True), 1), (C2PSA(64, 64), 1), (C2MLLA(64, 64), 1), (Own(16, 32), 0)):
        block.eval()
        for c in block.modules():  # as export fuses: conv + BN -> conv with bias
            if hasattr(c, "bn") and hasattr(c, "forward_fuse"):
                c.conv, c.forward = fuse_conv_and_bn(c.conv, c.bn), c.forward_fuse
                delattr(c, "bn")
        x = torch.randn(2, block.cv1.conv.in_channels, 8, 12)
        with torch.no_grad():
            ref = block(x)
            assert split_cv1(block) == n and split_cv1(block) == 0  # once
            # the same sums; a kernel picked for half the output channels may order them otherwise on another CPU
            torch.testing.assert_close(block(x), ref, rtol=1e-5, atol=1e-6, msg=type(block).__name__)
        assert hasattr(block, "cv1a") == bool(n) and hasattr(block, "cv1") == (not n)
    unfused = C3k2(16, 32)  # cv1 still has its BatchNorm: not a fused Conv, not changed
    assert split_cv1(unfused) == 0 and hasattr(unfused, "cv1")


def test_exported_split_blocks_have_no_channel_split(made):
    # the exported graph computes the halves with two convolutions: no Split reads a block's cv1 output
    import onnx

    g = onnx.load(str(made())).graph
    producer = {o: n for n in g.node for o in n.output}
    split_of_cv1 = [n.name for n in g.node if n.op_type == "Split" and "cv1" in producer.get(n.input[0], n).name]
    assert split_of_cv1 == []
    assert sum("cv1a" in n.name for n in g.node if n.op_type == "Conv") >= 1
