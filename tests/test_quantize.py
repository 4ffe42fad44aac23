"""INT8 quantization: both backends end to end on a few images, the ignored-scope policy, calibration sources,
and every bad input the issue lists. Models are the session-cached 320x320 exports of the bundled model."""

from __future__ import annotations

import json
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from edge_mlla.errors import (
    CalibrationWarning,
    ConfigError,
    DatasetError,
    EdgeMLLAError,
    ModelFileError,
    QuantizationError,
    ShapeError,
)

IMGSZ = 320
N_CALIB = 4

# How close INT8 must stay to FP32 on the calibration images (both bounds asserted):
# * raw output: the class scores (sigmoid, 0..1) of every anchor differ by at most MAX_SCORE_DIFF on average;
# * detections at conf = min(0.25, half the FP32 top score) and NMS 0.45, pooled over the images: at least
#   MIN_AGREEMENT of FP32 boxes have an INT8 box (at conf / 2) of the same class with IoU >= 0.5, and vice versa.
MAX_SCORE_DIFF = 0.01
MIN_AGREEMENT = 0.75


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory, val_images) -> Path:
    """N_CALIB BCCD val images plus one corrupt .jpg (skipped and counted)."""
    d = tmp_path_factory.mktemp("calib")
    for p in val_images[:N_CALIB]:
        shutil.copy(p, d / p.name)
    (d / "zz_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return d


@pytest.fixture(scope="module")
def fp_onnx(exported) -> Path:
    return exported("onnx", imgsz=IMGSZ)


@pytest.fixture(scope="module")
def fp_xml(exported) -> Path:
    return exported("openvino", imgsz=IMGSZ)


@pytest.fixture(scope="module")
def ov_report(fp_xml, calib_dir, tmp_path_factory):
    from edge_mlla.quantize import quantize

    out = tmp_path_factory.mktemp("ov_int8")
    # fast bias correction only to keep the test short; quantize()'s default (full) is checked in test_defaults
    with pytest.warns(CalibrationWarning):  # 4 usable images < subset_size 8
        return quantize(fp_xml, calib=calib_dir, backend="openvino", subset_size=8, output=out,
                        latency_runs=0, bias_correction="fast")  # fmt: skip


@pytest.fixture(scope="module")
def ort_report(fp_onnx, calib_dir, tmp_path_factory):
    from edge_mlla.quantize import quantize

    out = tmp_path_factory.mktemp("ort_int8") / "model_int8.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        return quantize(fp_onnx, calib=calib_dir, backend="onnxruntime", subset_size=8, output=out, latency_runs=0)


def _agreement(a, b) -> tuple[int, int]:
    """(boxes of ``a`` matched in ``b`` by class and IoU >= 0.5, boxes of ``a``)."""
    from edge_mlla.ops import box_iou

    if len(a) == 0:
        return 0, 0
    if len(b) == 0:
        return 0, len(a)
    iou = box_iou(a.xyxy, b.xyxy) * (a.class_id[:, None] == b.class_id[None, :])
    return int((iou.max(1) >= 0.5).sum()), len(a)


def _check_close(fp_path: Path, q_path: Path, images: list[Path], backend: str) -> None:
    from edge_mlla import Detector
    from edge_mlla.ops import as_bgr
    from edge_mlla.ops import preprocess

    prec = "f32" if backend == "openvino" else None
    with Detector(fp_path, backend=backend, precision=prec) as fp, Detector(q_path, backend=backend, precision=prec) as q:
        x, _ = preprocess([as_bgr(p) for p in images], fp.imgsz, fp.stride)
        raw_fp = np.concatenate([fp.backend.infer(x[i : i + 1])[0] for i in range(len(x))])
        raw_q = np.concatenate([q.backend.infer(x[i : i + 1])[0] for i in range(len(x))])
        score_diff = float(np.abs(raw_fp[:, 4:] - raw_q[:, 4:]).mean())
        assert score_diff <= MAX_SCORE_DIFF, f"mean class-score difference {score_diff:.4f} > {MAX_SCORE_DIFF}"
        conf = min(0.25, float(raw_fp[:, 4:].max()) / 2)
        hits = [0, 0, 0, 0]
        for img in images:
            fp.conf = q.conf = conf
            a, b = fp(img), q(img)
            fp.conf = q.conf = conf / 2  # the other side at half the threshold: a box at conf 0.26 vs 0.24 is no miss
            a_lo, b_lo = fp(img), q(img)
            m1, n1 = _agreement(a, b_lo)
            m2, n2 = _agreement(b, a_lo)
            hits = [hits[0] + m1, hits[1] + n1, hits[2] + m2, hits[3] + n2]
        fp.conf = conf
    assert hits[1] > 0, f"FP32 model found nothing at conf {fp.conf:.3f}: cannot compare"
    assert hits[0] / hits[1] >= MIN_AGREEMENT, f"INT8 recovers only {hits[0]}/{hits[1]} FP32 boxes (conf {fp.conf:.3f})"
    assert hits[2] / max(hits[3], 1) >= MIN_AGREEMENT, f"only {hits[2]}/{hits[3]} INT8 boxes are FP32 boxes"


def _calib_images(calib_dir: Path) -> list[Path]:
    return sorted(p for p in calib_dir.glob("*.jpg") if "corrupt" not in p.name)


# -------------------------------------------------------------------------------------------- end to end
def test_openvino_int8_end_to_end(ov_report, fp_xml, calib_dir):
    from edge_mlla.modelfile import parse_metadata
    from edge_mlla.quantize.scope import read_graph

    out = Path(ov_report.output)
    assert out.suffix == ".xml" and out.with_suffix(".bin").is_file()
    g = read_graph(out)
    assert g.op_counts()["FakeQuantize"] > 50  # really INT8: weights and activations
    import openvino as ov

    md = parse_metadata({k: v.astype(str) for k, v in ov.Core().read_model(str(out)).get_rt_info(["model_info"]).astype(dict).items()})
    assert md.precision == "int8" and md.names == {0: "RBC", 1: "WBC", 2: "Platelets"}
    q = md.edge_mlla["quantization"]
    assert q["backend"] == "openvino" and q["preset"] == "mixed" and q["ignored_scope"] == ["head", "kv_matmul", "z"]
    assert q["bias_correction"] == "fast" and q["input_quantizers_pinned"] == 1
    model = ov.Core().read_model(str(out))
    (fq,) = [t.get_node() for t in model.inputs[0].get_target_inputs()]  # the image's quantizer: the pixel grid
    assert fq.get_type_name() == "FakeQuantize" and [float(fq.input_value(i).get_node().get_data().max()) for i in range(1, 5)] == [0, 1, 0, 1]
    # the calibration counts: 4 used, the corrupt file skipped and counted
    assert ov_report.calibration["used"] == N_CALIB and ov_report.calibration["skipped"] == 1
    assert "Softmax" in ov_report.float_ops["head"] and "MatMul" in ov_report.float_ops["z"]
    assert Path(ov_report.json_path).is_file() and Path(ov_report.png_path).is_file()
    assert json.loads(Path(ov_report.json_path).read_text())["calibration"]["skipped"] == 1
    assert "kept in float" in ov_report.table()
    _check_close(fp_xml, out, _calib_images(calib_dir), "openvino")


def test_pinned_input_quantizer_is_lossless_on_8_bit_images():
    # a calibrated input range clips bright pixels; pinned to [0, 1] x 256 levels, every pixel p / 255 passes exactly
    import openvino as ov
    from openvino import opset13 as ops

    from edge_mlla.quantize.openvino_int8 import pin_input_quantizers

    def model(low: float, high: float, channels: int = 3):
        x = ops.parameter([1, channels, 16, 16], np.float32, name="images")
        c = [ops.constant(np.full((1, 1, 1, 1), v, np.float32)) for v in (low, high, low, high)]
        return ov.Model([ops.fake_quantize(x, *c, levels=256)], [x])

    pixels = np.arange(256 * 3, dtype=np.float32).reshape(1, 3, 16, 16) % 256
    clipped = model(0.0, 0.9628)
    got = ov.Core().compile_model(clipped, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(pixels / 255)[0]
    assert got.max() < 0.97  # what calibration gave: pixels above 245 clipped
    assert pin_input_quantizers(clipped) == 1
    got = ov.Core().compile_model(clipped, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(pixels / 255)[0]
    np.testing.assert_allclose(got * 255, pixels, atol=1e-3)  # level p is pixel p
    assert pin_input_quantizers(model(-1.0, 1.0)) == 0  # a signed quantizer is not an image's: left alone
    assert pin_input_quantizers(model(0.0, 0.9, channels=4)) == 0  # not a 3-channel image input
    assert pin_input_quantizers(model(0.0, 250.0)) == 0  # a model fed raw 0-255 values keeps its range


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_pinned_onnx_input_quantizer_is_lossless_on_8_bit_images(dtype):
    # ONNX Runtime's QDQ counterpart: the calibrated scale clips bright pixels, the pinned one passes each exactly
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from edge_mlla.quantize.onnxruntime_int8 import pin_input_quantizers_onnx

    def model(high: float, channels: int = 3, zp: int | None = None):
        lo = np.iinfo(dtype).min
        inits = [numpy_helper.from_array(np.array(high / 255, np.float32), "s"),
                 numpy_helper.from_array(np.array(lo if zp is None else zp, dtype), "z")]  # fmt: skip
        g = helper.make_graph(
            [helper.make_node("QuantizeLinear", ["images", "s", "z"], ["q"]), helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])],
            "g", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, channels, 16, 16])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, 16, 16])], inits)  # fmt: skip
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])

    def run(m):
        x = (np.arange(256 * 3, dtype=np.float32).reshape(1, 3, 16, 16) % 256) / 255
        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0], x

    clipped = model(0.9628)
    got, x = run(clipped)
    assert got.max() < 0.97  # calibrated: pixels above 245 clipped
    assert pin_input_quantizers_onnx(clipped) == 1
    got, x = run(clipped)
    np.testing.assert_allclose(got * 255, x * 255, atol=1e-3)  # level p is pixel p
    assert pin_input_quantizers_onnx(model(250.0 * 255)) == 0  # raw 0-255 input: keeps its range
    assert pin_input_quantizers_onnx(model(0.9, channels=4)) == 0  # not a 3-channel image
    onnx.checker.check_model(clipped)


def test_onnxruntime_int8_end_to_end(ort_report, fp_onnx, calib_dir):
    import onnx

    from edge_mlla.modelfile import parse_metadata

    out = Path(ort_report.output)
    assert out.name == "model_int8.onnx"
    m = onnx.load(str(out))
    ops = {n.op_type for n in m.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    md = parse_metadata({p.key: p.value for p in m.metadata_props})
    assert md.precision == "int8" and len(md.names) == 3
    q = md.edge_mlla["quantization"]
    assert q["format"] == "QDQ" and q["per_channel"] is True and q["calibration_method"] == "minmax"
    assert q["input_quantizers_pinned"] == 1  # the image's QuantizeLinear on the pixel grid, as on OpenVINO
    from edge_mlla.quantize.onnxruntime_int8 import cpu_has_vnni

    assert q["reduce_range"] is (not cpu_has_vnni())
    assert ort_report.details["runs_on_openvino"] is True  # the QDQ file also runs on OpenVINO
    # excluded nodes really stayed float: no DequantizeLinear feeds the DFL Softmax
    producers = {o: n for n in m.graph.node for o in n.output}
    softmax = [n for n in m.graph.node if n.op_type == "Softmax"]
    assert softmax and all(producers[s.input[0]].op_type != "DequantizeLinear" for s in softmax)
    _check_close(fp_onnx, out, _calib_images(calib_dir), "onnxruntime")


def test_another_size_than_training_is_said(ov_report, fp_xml):
    """The export records the training size; quantizing at another one says so (and what it may cost)."""
    from edge_mlla.modelfile import inspect_model

    trained = inspect_model(fp_xml).info.edge_mlla["train_imgsz"]
    assert isinstance(trained, int) and trained != IMGSZ  # the bundled model was trained at 416, exported here at 320
    (note,) = [n for n in ov_report.notes if f"trained at {trained}" in n]
    assert f"{IMGSZ}x{IMGSZ}" in note and "accuracy" in note and f"note: {note}" in ov_report.table()


def test_defaults():
    import inspect

    from edge_mlla.quantize import SelectionOptions, quantize
    from edge_mlla.quantize.options import BIAS_CORRECTION, SUBSET_SIZE

    sig = inspect.signature(quantize).parameters
    assert sig["backend"].default == "openvino" and sig["mode"].default == "fast" and len(sig) <= 12
    assert SelectionOptions().preset == "auto" and SelectionOptions().budget == 0.005
    assert SUBSET_SIZE == {"fast": 64, "thorough": 300} and BIAS_CORRECTION == {"fast": "fast", "thorough": "full"}


def test_relative_budget_arithmetic(fp_onnx, calib_dir):
    """A relative budget scales with the float model's score; the report names the kind that applied."""
    from edge_mlla.quantize import Budget, quantize

    assert Budget.parse(0.005) == Budget(0.005, relative=False) and Budget.parse("0.005") == Budget(0.005)
    rel = Budget.parse("2%")
    assert rel == Budget(0.02, relative=True)
    assert rel.allowed(0.011) == pytest.approx(0.00022) and rel.allowed(0.6) == pytest.approx(0.012)
    assert Budget.parse(0.005).allowed(0.011) == 0.005  # absolute: 45% of a model that scores 1.1 points
    assert rel.allowed(None) is None
    assert "relative budget" in rel.describe(0.6) and "1.20 points" in rel.describe(0.6)
    assert "absolute budget" in Budget.parse(0.005).describe(0.6)
    for bad in ("-1%", "150%", "abc", 1.5, True):
        with pytest.raises(ConfigError):
            Budget.parse(bad)
    with pytest.raises(ConfigError, match="unknown option"):
        quantize(fp_onnx, calib=calib_dir, backend="onnxruntime", budgett=0.01)


def _fake_run(candidates, full, sub_scores, float_full=0.60, float_sub=0.62, n_images=100):
    """A plan, a scorer and measured candidates for the selection logic, with given scores (no model runs)."""
    from types import SimpleNamespace

    from edge_mlla.quantize import Budget, Measured
    from edge_mlla.quantize.plan import Candidate
    from edge_mlla.quantize.report import ModelStats
    from edge_mlla.quantize.scope import ScopePolicy

    calls = []

    class Scorer:
        has_subset, k = n_images >= 64, max(16, n_images // 4)

        def score(self, path, subset=False):
            on_subset = subset and self.has_subset
            calls.append((path.name, on_subset))
            if path.name == "float":
                return (float_sub if on_subset else float_full), 0.9
            return (sub_scores if on_subset else full)[path.name], 0.9

    results = [Measured(Candidate("mixed", ScopePolicy(("head",))), Path(name), {}, ModelStats(fps=fps))
               for name, fps in candidates]  # fmt: skip
    plan = SimpleNamespace(src=SimpleNamespace(path=Path("float")), budget=Budget.parse("1%"), timings={}, reason="")
    return plan, Scorer(), ModelStats(), results, calls


def test_ranked_selection_matches_exhaustive_choice_and_stops_early():
    """Ranking on a subset, then scoring on every image only what can win, picks what scoring everything on every
    image picks (fastest within the budget), and never scores a candidate slower than the chosen one."""
    from edge_mlla.quantize import pick
    from edge_mlla.quantize.select import _score_ranked

    full = {"fast": 0.580, "mid": 0.596, "slow": 0.599}  # budget 1% of 0.60 = 0.006: fast is over it
    subset = {"fast": 0.560, "mid": 0.615, "slow": 0.620}
    plan, scorer, fstats, results, calls = _fake_run([("slow", 50.0), ("fast", 90.0), ("mid", 70.0)], full, subset)
    _score_ranked(plan, scorer, fstats, results, timed=True)
    chosen = [r for r in results if r.status == "chosen"]
    assert [r.path.name for r in chosen] == ["mid"] and "within the budget" in plan.reason
    by = {r.path.name: r for r in results}
    assert by["fast"].status.startswith("over the budget on the 25-image subset") and by["fast"].drop is None
    assert "not scored" in by["slow"].status and ("slow", False) not in calls and ("slow", True) not in calls
    for r in results:  # the exhaustive reference: every candidate scored on every image
        r.drop = 0.60 - full[r.path.name]
    best, _ = pick(results, plan.budget.allowed(0.60))
    assert best.path.name == "mid"
    # none within the budget: the most accurate one, said so
    plan, scorer, fstats, results, _ = _fake_run([("a", 90.0), ("b", 80.0)], {"a": 0.50, "b": 0.55}, {"a": 0.5, "b": 0.55})
    _score_ranked(plan, scorer, fstats, results, timed=True)
    assert [r.path.name for r in results if r.status == "chosen"] == ["b"] and "most accurate" in plan.reason
    # few images: no subset, every candidate that is scored is scored on all of them
    plan, scorer, fstats, results, calls = _fake_run([("a", 90.0), ("b", 80.0)], {"a": 0.597, "b": 0.599}, {}, n_images=10)
    _score_ranked(plan, scorer, fstats, results, timed=True)
    assert [r.path.name for r in results if r.status == "chosen"] == ["a"] and all(not sub for _, sub in calls)


# ------------------------------------------------------------------------------------------------- scope
def test_scope_is_structural_and_matches_across_runtimes(fp_onnx, fp_xml):
    from edge_mlla.quantize.scope import GROUPS, ScopePolicy, read_graph

    pol = ScopePolicy(GROUPS)
    go, gv = pol.select_groups(read_graph(fp_onnx)), pol.select_groups(read_graph(fp_xml))
    for grp in GROUPS:
        assert go[grp], f"group {grp} found nothing"
        assert len(go[grp]) == len(gv[grp]), f"{grp}: ONNX and OpenVINO graphs disagree"
        # OpenVINO renames the output node after its tensor ("output0") and a biased conv "<name>/WithoutBiases"
        # (its bias Add takes the ONNX name); the rest keep ONNX names
        if grp in ("head_conv", "box"):
            assert {n.removesuffix("/WithoutBiases") for n in gv[grp]} == go[grp]
        elif grp != "head":
            assert go[grp] == gv[grp], f"{grp}: ONNX and OpenVINO graphs disagree"
    g = read_graph(fp_onnx)
    types = {grp: sorted({g.nodes[n].type for n in names}) for grp, names in go.items()}
    assert {"Softmax", "MatMul", "Sigmoid"} <= set(types["head"])  # DFL as softmax and a MatMul by its bins
    assert "Conv" not in types["head"]
    # the convs that write the box and class logits: Ultralytics names them cv2.<level>.2 and cv3.<level>.2
    assert types["head_conv"] == ["Conv"] and len(go["head_conv"]) == 6
    assert all(re.search(r"/cv[23]\.[012]/cv[23]\.[012]\.2/Conv$", n) for n in go["head_conv"]), go["head_conv"]
    # the box branch: cv2.<level>.0, .1 (Conv+BN+SiLU, the SiLU as x * sigmoid(x)) and .2, nothing of cv3 or the neck
    assert sorted(re.sub(r"^/model\.\d+/", "", n) for n in go["box"]) == sorted(
        f"cv2.{lv}/cv2.{lv}.{k}/{'conv/' if k < 2 else ''}Conv" for lv in range(3) for k in range(3))
    assert types["kv_matmul"] == ["MatMul"] and "Reciprocal" in types["z"]
    n_rope = sum(g.nodes[n].type == "Mul" for n in go["rope"])  # by the cos and sin tables (q and k, or joint)
    assert n_rope >= 2 and n_rope % 2 == 0
    assert types["residual"] == ["Add"] and len(go["residual"]) == 2
    assert ScopePolicy.parse("none").select(g) == set()
    with pytest.raises(ConfigError, match="unknown ignored-scope group"):
        ScopePolicy.parse("head,attention")


# ----------------------------------------------------------------------------------------- calibration
def test_calibration_sources(tmp_path, tiny_data, val_images):
    import cv2

    from edge_mlla.quantize.calibration import load_calibration

    c = load_calibration(tiny_data, imgsz=160, subset_size=3)
    assert c.kind == "data.yaml" and c.used == 3
    batches = list(c)
    assert len(batches) == 3 and batches[0].shape == (1, 3, 160, 160) and batches[0].dtype == np.float32
    # the Detector's own preprocessing, not a copy
    from edge_mlla.ops import preprocess

    img = cv2.imread(str(c.items[0]))
    np.testing.assert_array_equal(batches[0], preprocess([img], (160, 160))[0])

    arrays = [np.full((48, 64, 3), v, np.uint8) for v in (0, 128, 255)]
    c = load_calibration(arrays, imgsz=64, subset_size=2)
    assert c.kind == "arrays" and c.used == 2
    with pytest.raises(ShapeError):
        load_calibration([np.zeros((8, 8, 3), np.float32)], imgsz=64)

    video = tmp_path / "clip.mp4"
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for i in range(10):
        vw.write(np.full((48, 64, 3), i * 20, np.uint8))
    vw.release()
    c = load_calibration(video, imgsz=64, subset_size=10, every=3)
    assert c.kind == "video" and c.items == [0, 3, 6, 9] and len(list(c)) == 4


def test_calibration_bad_sources(tmp_path, val_images):
    from edge_mlla.quantize.calibration import load_calibration

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="is empty"):
        load_calibration(empty, imgsz=64)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "readme.txt").write_text("no images here")
    with pytest.raises(DatasetError, match="has no images"):
        load_calibration(notes, imgsz=64)
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "a.jpg").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="none could be decoded"):
        load_calibration(only_bad, imgsz=64)
    with pytest.raises(EdgeMLLAError, match="not found"):
        load_calibration(tmp_path / "nowhere", imgsz=64)

    few = tmp_path / "few"
    few.mkdir()
    for p in val_images[:2]:
        shutil.copy(p, few / p.name)
    (few / "broken.png").write_bytes(b"\x89PNG broken")
    with pytest.warns(CalibrationWarning, match="fewer than subset_size=5"):
        c = load_calibration(few, imgsz=64, subset_size=5)
    assert c.used == 2 and len(c.skipped) == 1 and c.summary()["skipped"] == 1


# --------------------------------------------------------------------------------------------- bad input
def test_already_quantized_is_refused(ov_report, ort_report, calib_dir):
    from edge_mlla.quantize import quantize

    for model, be in ((ov_report.output, "openvino"), (ort_report.output, "onnxruntime")):
        with pytest.raises(ModelFileError, match="already quantized"):
            quantize(model, calib=calib_dir, backend=be, latency_runs=0)


def test_bad_arguments_fail_before_any_work(fp_onnx, fp_xml, calib_dir, tmp_path):
    from edge_mlla.errors import MissingFileError
    from edge_mlla.quantize import quantize

    with pytest.raises(ShapeError, match="does not match"):
        quantize(fp_onnx, calib=calib_dir, imgsz=640)
    with pytest.raises(ConfigError, match="needs validation data"):
        quantize(fp_onnx, calib=calib_dir, max_drop=0.01)
    with pytest.raises(MissingFileError):
        quantize(fp_onnx, calib=calib_dir, max_drop=0.01, val=tmp_path / "missing.yaml")
    with pytest.raises(ModelFileError, match="needs an .onnx"):
        quantize(fp_xml, calib=calib_dir, backend="onnxruntime")
    with pytest.raises(ConfigError, match="backend"):
        quantize(fp_onnx, calib=calib_dir, backend="tensorrt")
    with pytest.raises(ConfigError, match="bias_correction"):
        quantize(fp_xml, calib=calib_dir, bias_correction=True)
    with pytest.raises(MissingFileError):
        quantize(tmp_path / "nope.onnx", calib=calib_dir)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="is empty"):
        quantize(fp_onnx, calib=empty, output=tmp_path / "o.xml")
    assert not (tmp_path / "o.xml").exists()


def test_failure_leaves_no_broken_file(fp_onnx, calib_dir, tmp_path, monkeypatch):
    import onnxruntime.quantization as oq

    from edge_mlla.quantize import quantize

    target = tmp_path / "model_int8.onnx"
    target.write_bytes(b"previous good file")

    def boom(*a, **k):
        raise RuntimeError("simulated crash inside quantize_static")

    monkeypatch.setattr(oq, "quantize_static", boom)
    with pytest.raises(QuantizationError, match="simulated crash"):
        quantize(fp_onnx, calib=calib_dir, backend="onnxruntime", subset_size=2, output=target, latency_runs=0)
    assert target.read_bytes() == b"previous good file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_int8.onnx"]  # no temporaries left


def test_cli_errors_are_clear(fp_onnx, tmp_path, capsys):
    from edge_mlla.cli import main

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["quantize", str(fp_onnx), "--calib", str(empty)]) == 2
    assert "is empty" in capsys.readouterr().err
    assert main(["quantize", str(fp_onnx), "--calib", str(empty), "--max-drop", "0.01"]) == 2
    assert "needs validation data" in capsys.readouterr().err


def test_python_m_entry_point():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "edge_mlla.quantize", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "--calib" in r.stdout and "--max-drop" in r.stdout


def test_accuracy_control_runs_with_our_metric(fp_xml, calib_dir, tiny_data, tmp_path):
    """--max-drop wiring: NNCF accuracy control scored by edge_mlla.eval (a loose bound keeps it to one pass)."""
    from edge_mlla.quantize import quantize

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        r = quantize(fp_xml, calib=calib_dir, backend="openvino", subset_size=2, max_drop=0.5, val=tiny_data, val_limit=2,
                     output=tmp_path, latency_runs=0, bias_correction="none")  # fmt: skip
    assert r.details["accuracy_control"] is True and r.details["max_drop"] == 0.5
    assert r.fp32.map50_95 is not None and r.map_drop is not None and r.map_drop <= 0.5
    assert Path(r.output).is_file() and r.int8.precision == "int8"


def test_scope_on_ultralytics_own_export(trained_pt, tmp_path):
    """Ultralytics' exporter keeps the training-form MLLA (z as ReduceSum of a product): same groups found."""
    from edge_mlla._env import setup_offline

    setup_offline()
    import edge_mlla.nn  # noqa: F401  registers C2MLLA for unpickling
    from ultralytics import YOLO

    from edge_mlla.quantize.scope import GROUPS, ScopePolicy, read_graph

    pt = tmp_path / trained_pt.name
    shutil.copy(trained_pt, pt)
    onnx_path = YOLO(str(pt)).export(format="onnx", imgsz=160, simplify=False)
    groups = ScopePolicy(GROUPS).select_groups(read_graph(onnx_path))
    g = read_graph(onnx_path)
    assert all(groups[k] for k in GROUPS), {k: len(v) for k, v in groups.items()}
    assert {g.nodes[n].type for n in groups["z"]} >= {"Reciprocal", "ReduceSum", "Add", "Mul"}


def test_int8_models_report_int8_everywhere(ov_report, ort_report, tiny_data):
    """Detector, repr and eval say int8 for INT8 files (and what the float ops run in), as the report does."""
    from edge_mlla import Detector
    from edge_mlla.errors import ConfigError
    from edge_mlla.eval import evaluate

    with Detector(ov_report.output, backend="openvino") as det:
        assert det.precision == "int8" and det.float_precision in ("f32", "bf16")
        assert "precision='int8' (float ops " in repr(det)
    with Detector(ov_report.output, backend="openvino", precision="int8", config={"INFERENCE_NUM_THREADS": 1}) as det:
        assert det.precision == "int8"
    with Detector(ort_report.output, backend="onnxruntime") as det:
        assert det.precision == "int8" and det.float_precision == "f32"
    r = evaluate(ov_report.output, data=tiny_data, limit=2, progress=False)
    assert r["precision"] == "int8"
    with pytest.raises(ConfigError, match="is not quantized"):
        Detector(ov_report.source, backend="openvino", precision="int8")


def test_accuracy_control_scores_exactly_what_evaluate_reports(fp_xml, tiny_data):
    """One scoring path: the function NNCF's accuracy control calls gives evaluate()'s mAP on the same model."""
    import openvino as ov

    from edge_mlla.eval import evaluate
    from edge_mlla.modelfile import inspect_model
    from edge_mlla.quantize import _accuracy_control_data

    mf = inspect_model(fp_xml)
    items, fn = _accuracy_control_data(tiny_data, "val", None, mf.static_hw, mf.info, mf.batch)
    compiled = ov.Core().compile_model(str(fp_xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    ac = fn(lambda x: compiled(x)[compiled.outputs[0]], items)
    ev = evaluate(fp_xml, data=tiny_data, backend="openvino", precision="f32", progress=False)
    assert ev["mAP50-95"] > 0 and ac == pytest.approx(ev["mAP50-95"], abs=1e-9)


def test_quantize_cli_is_quiet_by_default(fp_onnx, calib_dir, tmp_path):
    """No NNCF/ORT INFO blocks and the calibration warning once; --verbose shows the library logs."""
    import subprocess
    import sys

    args = [sys.executable, "-m", "edge_mlla", "quantize", str(fp_onnx), "--calib", str(calib_dir), "--backend",
            "onnxruntime", "--subset-size", "8", "--latency-runs", "0", "-o", str(tmp_path / "q.onnx")]  # fmt: skip
    out = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    log = out.stdout + out.stderr
    assert log.count("fewer than subset_size") == 1, log[-3000:]
    assert "Increased scale" not in log and "Created a copy of bias" not in log and "Traceback" not in log
    assert "| model | precision |" in out.stdout


def test_auto_picks_the_fastest_candidate_within_budget():
    """The choice rule on measured numbers (no timing measured here: the numbers are given)."""
    from edge_mlla.quantize import Measured, pick, recommend
    from edge_mlla.quantize.plan import Candidate
    from edge_mlla.quantize.report import ModelStats
    from edge_mlla.quantize.scope import ScopePolicy

    def m(preset, fps, drop):
        return Measured(Candidate(preset, ScopePolicy(("head", "z"))), Path("x"), {}, ModelStats(fps=fps), drop)

    fast_bad, mid_ok, slow_ok = m("performance", 90.0, 0.009), m("mixed", 80.0, 0.004), m("mixed", 70.0, -0.001)
    best, why = pick([fast_bad, mid_ok, slow_ok], 0.005)
    assert best is mid_ok and "within the budget (1 over it)" in why
    best, why = pick([m("performance", 90.0, 0.02), m("mixed", 80.0, 0.01)], 0.005)
    assert best.drop == 0.01 and "no candidate within" in why
    assert "not faster than bf16" in recommend(ModelStats(fps=80.0, precision="bf16"), ModelStats(fps=79.0))
    assert "use the bf16 model" in recommend(ModelStats(fps=80.0, precision="bf16"), ModelStats(fps=79.0))
    assert "1.50x the throughput of f32" in recommend(ModelStats(fps=40.0, precision="f32"), ModelStats(fps=60.0))


@pytest.fixture(scope="module")
def thorough(fp_xml, calib_dir, tiny_data, tmp_path_factory):
    from edge_mlla.quantize import quantize

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        return quantize(fp_xml, calib=calib_dir, subset_size=4, val=tiny_data, val_limit=2,
                        output=tmp_path_factory.mktemp("thorough"), latency_runs=3, bias_correction="none",
                        mode="thorough", progress=False)  # fmt: skip


def test_thorough_measures_every_candidate_in_one_run(thorough):
    """mode='thorough' with validation data: three candidates quantized and timed next to the float model, scored
    fastest first until one is within the budget."""
    from edge_mlla import Detector

    r = thorough
    assert [(c["preset"], tuple(c["scope"])) for c in r.candidates] == [
        ("performance", ("head", "kv_matmul", "z")), ("mixed", ("head", "kv_matmul", "z")),
        ("mixed", ("head", "kv_matmul", "z", "rope", "residual"))]
    assert sum(c["chosen"] for c in r.candidates) == 1
    assert all(c["fps"] > 0 and c["latency_ms"] > 0 for c in r.candidates)
    chosen = next(c for c in r.candidates if c["chosen"])
    assert chosen["map50_95"] is not None and chosen["status"] == "chosen"
    faster = [c for c in r.candidates if c["fps"] > chosen["fps"]]
    assert all(c["drop"] is not None and c["status"].startswith("over the budget") for c in faster)  # why not them
    assert all(c["map50_95"] is None and "not scored" in c["status"] for c in r.candidates
               if c["fps"] < chosen["fps"] and r.reason.startswith("fastest"))  # fmt: skip
    assert r.fp32.fps > 0 and r.fp32.precision in ("f32", "bf16") and r.reason and r.recommendation
    assert r.details["preset"] == chosen["preset"] and r.int8.fps == chosen["fps"]
    assert r.details["bias_correction"] == "none" and r.mode == "thorough" and "absolute budget" in r.budget
    table = r.table()
    assert "| candidate (preset, kept in float) |" in table and "recommendation: " in table
    assert "took " in table and "thorough mode" in table and set(r.timings) >= {"timing", "scoring"}
    assert not list(Path(r.output).parent.glob(".edge_mlla_int8_*"))  # the other candidates are gone
    with Detector(r.output) as det:
        assert det.precision == "int8"


def test_fast_mode_against_thorough(thorough, fp_xml, calib_dir, tiny_data, tmp_path):
    """Fast mode on the same case: one NNCF run (MIXED, default scope, the thorough mode's default candidate), the
    same float score, a drop within the budget (or the fallback tried and said), what each part took."""
    from edge_mlla.quantize import quantize

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        r = quantize(fp_xml, calib=calib_dir, subset_size=4, val=tiny_data, val_limit=2, output=tmp_path,
                     latency_runs=0, budget="5%", progress=False)  # fmt: skip
    assert r.mode == "fast" and r.details["bias_correction"] == "fast"
    assert r.fp32.map50_95 == thorough.fp32.map50_95  # one scorer, the same images: the same float score
    first = r.candidates[0]
    assert (first["preset"], tuple(first["scope"])) == ("mixed", ("head", "kv_matmul", "z"))
    assert first["preset"] in {c["preset"] for c in thorough.candidates}
    allowed = 0.05 * r.fp32.map50_95
    if first["drop"] <= allowed:
        assert len(r.candidates) == 1 and first["chosen"]
    else:  # over the budget: the accurate fallback was quantized too, and the more accurate one kept
        assert len(r.candidates) == 2 and r.candidates[1]["scope"][-2:] == ["rope", "residual"]
    assert "relative budget" in r.budget and "5%" in r.budget
    assert [k for k in r.timings if k.startswith("quantize")] and "fast mode" in r.table()


def test_no_progress_hides_nncf_bars():
    """NNCF has no switch for its rich progress bars: progress=False builds every NNCF track disabled, and only
    inside the block (the real NNCF class, drawing to a terminal console)."""
    import io

    pytest.importorskip("nncf")
    from nncf.common.logging.track_progress import track
    from rich.console import Console

    from edge_mlla.quantize import _quiet_nncf

    def drawn() -> str:
        buf = io.StringIO()
        for _ in track(range(3), description="Statistics collection", console=Console(file=buf, force_terminal=True)):
            pass
        return buf.getvalue()

    with _quiet_nncf(progress=False):
        assert drawn() == ""
    assert "Statistics collection" in drawn()  # restored on exit
    with _quiet_nncf(progress=True):
        assert "Statistics collection" in drawn()
    with pytest.raises(ConfigError, match="progress must be True or False"):
        from edge_mlla.quantize import quantize

        quantize("x.xml", progress="no")


def test_no_progress_hides_the_calibration_check_bar(capsys):
    """205 BCCD train images to check: a tqdm bar on stderr, none with progress=False (same images chosen)."""
    from edge_mlla.quantize import load_calibration

    shown = load_calibration("bccd", imgsz=160, subset_size=60)
    bar = capsys.readouterr().err
    hidden = load_calibration("bccd", imgsz=160, subset_size=60, progress=False)
    assert "calibration: checking images" in bar and capsys.readouterr().err == ""
    assert shown.summary() == hidden.summary() and len(hidden) == 60


def test_candidates_are_timed_in_interleaved_rounds(fp_onnx, monkeypatch, tmp_path):
    """Timing is a comparison between models: round 1 times every model, then round 2, ... (the real backend
    underneath, spied on), so a burst of other load lands on all of them instead of on one."""
    import edge_mlla.quantize.measure as measure

    order: list[str] = []
    real = measure._latency_ms

    def spy(be, x, runs, warmup=5):
        order.append(Path(be.path).name if hasattr(be, "path") else str(id(be)))
        return real(be, x, runs, warmup)

    monkeypatch.setattr(measure, "_latency_ms", spy)
    a = tmp_path / "a.onnx"
    shutil.copy(fp_onnx, a)
    x = np.random.default_rng(0).random((1, 3, IMGSZ, IMGSZ), dtype=np.float32)
    timed = measure.measure_interleaved([fp_onnx, a], "onnxruntime", x, runs=6, seconds=0.3, rounds=3)
    assert len(timed) == 2 and all(ms > 0 and fps > 0 for ms, fps in timed)
    assert len(order) == 6 and order[0::2] == [order[0]] * 3 and order[1::2] == [order[1]] * 3 and order[0] != order[1]


def test_auto_candidates_follow_the_graph_default():
    """A DFL head: PERFORMANCE, MIXED, MIXED + rope,residual. A DFL-free head (default + box) also gets MIXED
    without box, so auto can keep the faster one when it is within the budget."""
    from edge_mlla.quantize.plan import _candidates
    from edge_mlla.quantize.scope import DEFAULT_GROUPS, ScopePolicy

    dfl = [c.label for c in _candidates("openvino", "auto", None, True, ScopePolicy(DEFAULT_GROUPS))]
    assert dfl == ["performance, float: head,kv_matmul,z", "mixed, float: head,kv_matmul,z",
                   "mixed, float: head,kv_matmul,z,rope,residual"]  # fmt: skip
    free = [c.label for c in _candidates("openvino", "auto", None, True, ScopePolicy(DEFAULT_GROUPS + ("box",)))]
    assert free == ["performance, float: head,kv_matmul,z,box", "mixed, float: head,kv_matmul,z,box",
                    "mixed, float: head,kv_matmul,z", "mixed, float: head,kv_matmul,z,box,rope,residual"]  # fmt: skip
    assert len(_candidates("openvino", "auto", None, False, ScopePolicy(DEFAULT_GROUPS + ("box",)))) == 2  # no val
