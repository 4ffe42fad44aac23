"""Model repositories for Triton and OpenVINO Model Server, checked without either server.

``config.pbtxt`` is parsed with the model-config protobuf tritonclient ships (a config Triton would
reject does not parse), compared with the model file read independently (the ONNX protobuf, the IR
XML), and the files in the repository are loaded in our Detector: detections equal those of the
source file.
"""

from __future__ import annotations

import ast
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import BCCD

from edge_mlla import Detector, __version__
from edge_mlla.errors import ConfigError, MissingFileError, ModelFileError, OutputNotWritableError
from edge_mlla.serve.repository import export_repo

mc = pytest.importorskip("tritonclient.grpc.model_config_pb2")
text_format = pytest.importorskip("google.protobuf.text_format")

IMGSZ = 320
IMAGES = sorted((BCCD / "images" / "test").glob("*.jpg"))[:3]
ONNX_TYPES = {1: "TYPE_FP32", 10: "TYPE_FP16", 2: "TYPE_UINT8", 7: "TYPE_INT64"}
IR_TYPES = {"FP32": "TYPE_FP32", "FP16": "TYPE_FP16", "U8": "TYPE_UINT8", "I64": "TYPE_INT64"}


def _parse(path: Path):
    return text_format.Parse(path.read_text(), mc.ModelConfig())


def _onnx_tensors(path: Path) -> tuple[list, list, dict]:
    """(name, dims with -1 for symbolic, Triton type) per input/output, and metadata_props, from the ONNX protobuf."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)

    def t(v):
        tt = v.type.tensor_type
        return v.name, [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim], ONNX_TYPES[tt.elem_type]

    return [t(v) for v in m.graph.input], [t(v) for v in m.graph.output], {p.key: p.value for p in m.metadata_props}


def _ir_tensors(xml: Path) -> tuple[list, list]:
    """Inputs (Parameter layers) and outputs (Result layers) from the IR XML itself."""
    root = ET.parse(xml).getroot()
    ins, outs = [], []
    for layer in root.iter("layer"):
        if layer.get("type") == "Parameter":
            port = layer.find("output/port")
            ins.append((port.get("names").split(",")[0], [int(d.text) for d in port.findall("dim")], IR_TYPES[port.get("precision")]))
        elif layer.get("type") == "Result":
            port = layer.find("input/port")
            outs.append((layer.get("output_names").split(",")[0], [int(d.text) for d in port.findall("dim")],
                         IR_TYPES[port.get("precision")]))  # fmt: skip
    return ins, outs


def _config_tensors(cfg, field: str) -> list:
    return [(t.name, list(t.dims), mc.DataType.Name(t.data_type)) for t in getattr(cfg, field)]


def _params(cfg) -> dict[str, str]:
    return {k: v.string_value for k, v in cfg.parameters.items()}


def _same_detections(model_a: Path, model_b: Path, backend: str) -> None:
    a, b = Detector(model_a, backend=backend), Detector(model_b, backend=backend)
    try:
        frames = [cv2.imread(str(p)) for p in IMAGES]
        for da, db in zip(a(frames), b(frames)):
            assert len(da) == len(db) > 0
            np.testing.assert_array_equal(da.xyxy, db.xyxy)
            np.testing.assert_array_equal(da.confidence, db.confidence)
            np.testing.assert_array_equal(da.class_id, db.class_id)
        assert a.names == b.names and a.imgsz == b.imgsz
    finally:
        a.close()
        b.close()


def _check_metadata(params: dict[str, str], onnx_meta: dict[str, str]) -> None:
    names = ast.literal_eval(onnx_meta["names"])
    assert json.loads(params["edge_mlla.names"]) == {str(k): v for k, v in names.items()}
    assert params["edge_mlla.stride"] == onnx_meta["stride"]
    assert json.loads(params["edge_mlla.imgsz"]) == ast.literal_eval(onnx_meta["imgsz"])
    assert params["edge_mlla.precision"] == json.loads(onnx_meta["edge_mlla"])["precision"]
    assert params["edge_mlla.version"] == __version__
    assert params["edge_mlla.task"] == onnx_meta["task"]


def test_triton_onnx_fixed_batch(exported, tmp_path):
    onnx = exported("onnx", imgsz=IMGSZ)
    out = export_repo(onnx, format="triton", output=tmp_path / "repo", name="bccd", instances=2, threads=1)
    assert out == tmp_path / "repo" / "bccd"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == ["1/model.onnx", "config.pbtxt"]
    cfg = _parse(out / "config.pbtxt")
    ins, outs, meta = _onnx_tensors(onnx)
    assert cfg.name == "bccd" and cfg.platform == "onnxruntime_onnx" and cfg.backend == ""
    assert cfg.max_batch_size == 0 and not cfg.HasField("dynamic_batching")  # batch 1 fixed: explicit full dims
    assert ins[0][1][0] == 1
    assert _config_tensors(cfg, "input") == ins and _config_tensors(cfg, "output") == outs
    assert len(cfg.instance_group) == 1 and cfg.instance_group[0].count == 2
    assert cfg.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    params = _params(cfg)
    _check_metadata(params, meta)
    assert params["intra_op_thread_count"] == "1"
    assert params["edge_mlla.sha256"] and params["edge_mlla.source"] == onnx.name
    _same_detections(onnx, out / "1" / "model.onnx", "onnxruntime")


def test_triton_onnx_dynamic_batch(exported, tmp_path):
    onnx = exported("onnx", imgsz=IMGSZ, dynamic=True)
    out = export_repo(onnx, format="triton", output=tmp_path, name="dyn", max_batch=16)
    cfg = _parse(out / "config.pbtxt")
    ins, outs, meta = _onnx_tensors(onnx)
    assert ins[0][1][0] == -1  # dynamic batch in the file
    assert cfg.max_batch_size == 16 and cfg.HasField("dynamic_batching")
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 2000
    # dims without the batch dimension; symbolic sizes are -1
    assert _config_tensors(cfg, "input") == [(n, d[1:], t) for n, d, t in ins]
    assert _config_tensors(cfg, "output") == [(n, d[1:], t) for n, d, t in outs]
    _check_metadata(_params(cfg), meta)
    _same_detections(onnx, out / "1" / "model.onnx", "onnxruntime")


def test_triton_openvino_ir(exported, tmp_path):
    xml = exported("openvino", imgsz=IMGSZ)
    onnx_meta = _onnx_tensors(exported("onnx", imgsz=IMGSZ))[2]  # same source, same metadata
    out = export_repo(xml.parent, format="triton", output=tmp_path)  # the export folder works too
    assert out.name == xml.stem
    assert {"1/model.xml", "1/model.bin", "config.pbtxt"} <= {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    cfg = _parse(out / "config.pbtxt")
    ins, outs = _ir_tensors(xml)
    assert cfg.backend == "openvino" and cfg.platform == ""
    assert cfg.max_batch_size == 0 and not cfg.HasField("dynamic_batching")
    assert _config_tensors(cfg, "input") == ins and _config_tensors(cfg, "output") == outs
    assert ins == [("images", [1, 3, IMGSZ, IMGSZ], "TYPE_FP32")]  # the file's tensor, not a compiled u8 one
    _check_metadata(_params(cfg), onnx_meta)
    _same_detections(xml, out / "1" / "model.xml", "openvino")


def test_ovms_repository_merges_models(exported, tmp_path):
    xml = exported("openvino", imgsz=IMGSZ)
    onnx = exported("onnx", imgsz=IMGSZ, dynamic=True)
    repo = tmp_path / "ovms"
    a = export_repo(xml, format="ovms", output=repo, name="bccd_ir", instances=2, threads=1)
    b = export_repo(onnx, format="ovms", output=repo, name="bccd_onnx")
    export_repo(xml, format="ovms", output=repo, name="bccd_ir")  # again: replaced, not duplicated
    cfg = json.loads((repo / "config.json").read_text())
    entries = {e["config"]["name"]: e["config"] for e in cfg["model_config_list"]}
    assert sorted(entries) == ["bccd_ir", "bccd_onnx"] and len(cfg["model_config_list"]) == 2
    for name, folder in (("bccd_ir", a), ("bccd_onnx", b)):
        base = repo / entries[name]["base_path"]  # relative to config.json
        assert base == folder and (base / "1").is_dir()
        assert entries[name]["target_device"] == "CPU"
    assert (a / "1" / "model.xml").is_file() and (a / "1" / "model.bin").is_file() and (b / "1" / "model.onnx").is_file()
    assert entries["bccd_ir"]["nireq"] == 1  # the re-export used the defaults
    meta = json.loads((a / "edge_mlla.json").read_text())
    assert meta["edge_mlla.version"] == __version__ and json.loads(meta["edge_mlla.names"])["0"] == "RBC"
    _same_detections(xml, a / "1" / "model.xml", "openvino")
    _same_detections(onnx, b / "1" / "model.onnx", "onnxruntime")
    assert not [p for p in repo.iterdir() if p.name.startswith(".")]  # no temporary folders left


def test_export_repo_errors(exported, trained_pt, tmp_path):
    onnx = exported("onnx", imgsz=IMGSZ)
    with pytest.raises(ModelFileError, match="export it first"):
        export_repo(trained_pt, output=tmp_path)
    with pytest.raises(MissingFileError, match="not found"):
        export_repo(tmp_path / "none.onnx", output=tmp_path)
    with pytest.raises(ConfigError, match="format must be one of triton, ovms"):
        export_repo(onnx, format="tfserving", output=tmp_path)
    with pytest.raises(ConfigError, match="max_batch must be an integer >= 1"):
        export_repo(onnx, output=tmp_path, max_batch=0)
    with pytest.raises(ConfigError, match="model name"):
        export_repo(onnx, output=tmp_path, name="a/b")
    export_repo(onnx, output=tmp_path, name="m")
    with pytest.raises(OutputNotWritableError, match="exists"):
        export_repo(onnx, output=tmp_path, name="m", overwrite=False)
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelFileError):
        export_repo(bad, output=tmp_path / "r2")
    (tmp_path / "r3").mkdir()
    (tmp_path / "r3" / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        export_repo(onnx, format="ovms", output=tmp_path / "r3")


def test_cli_export_repo(exported, tmp_path, capsys):
    from edge_mlla.cli import main

    xml = exported("openvino", imgsz=IMGSZ)
    assert main(["export-repo", str(xml), "--format", "ovms", "-o", str(tmp_path), "--name", "cells"]) == 0
    out = capsys.readouterr().out
    assert "config.json" in out and "cells/1/model.xml" in out
    assert json.loads((tmp_path / "config.json").read_text())["model_config_list"][0]["config"]["name"] == "cells"
    assert main(["export-repo", str(tmp_path / "nope.xml"), "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "model file not found" in err and "Traceback" not in err
