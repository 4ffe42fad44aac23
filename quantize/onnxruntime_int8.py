"""ONNX Runtime static INT8 quantization in QDQ format, excluding the same graph-derived nodes as OpenVINO.

Steps: ``quant_pre_process`` (symbolic shape inference + ORT's basic graph optimizations), then
``quantize_static`` with QDQ nodes, per-channel INT8 weights, a selectable calibration method
(``minmax``, ``entropy``, ``percentile``), and ``nodes_to_exclude`` from :class:`~.scope.ScopePolicy`
applied to the *pre-processed* graph (so node names match what the quantizer sees).
``reduce_range`` (7-bit weights) is used only on x86 CPUs without VNNI, where 8-bit u8s8 products can
saturate (ONNX Runtime's quantization docs, "When and why do I need to try U8U8?"/reduce_range:
https://onnxruntime.ai/docs/performance/model-optimizations/quantization.html).
Activations are uint8 on x86 (U8S8: MLAS' fast path, VPMADDUBSW / VPDPBUSD) and int8 elsewhere (S8S8);
measured here (AVX2 CPU without VNNI, 640, 2 threads, one run on a shared machine): S8S8 QDQ ran 2.2x *slower*
than FP32, U8S8 0.70x.

The image input's quantizer is then pinned to the exact 8-bit pixel grid (:func:`pin_input_quantizers_onnx`, as the
OpenVINO path does). The QDQ file keeps the source metadata (``precision: int8`` + details) and is checked to run on ONNX
Runtime and on OpenVINO.

Example:
    >>> from edge_mlla.quantize.onnxruntime_int8 import quantize_onnxruntime, cpu_has_vnni
    >>> isinstance(cpu_has_vnni(), bool)
    True

Imports inside functions: onnx, ONNX Runtime's quantizer and OpenVINO (optional, slow to import) load only when this
path runs.
"""

from __future__ import annotations

import logging
import platform
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edge_mlla.errors import ConfigError, ModelFileError, QuantizationError
from edge_mlla.modelfile import ModelFile, int8_metadata, write_onnx_metadata
from edge_mlla.quantize._model import atomic_write
from edge_mlla.quantize.calibration import CalibrationSet
from edge_mlla.graph import read_graph
from edge_mlla.quantize.scope import ScopePolicy

LOGGER = logging.getLogger("edge_mlla")

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


def cpu_has_vnni(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """True when the CPU has an 8-bit dot-product instruction (AVX512-VNNI, AVX-VNNI or AMX-INT8), or is not x86.

    Non-x86 CPUs (ARM: ``sdot``/``udot``) do not need ``reduce_range``, so they count as True here.

    Example:
        >>> isinstance(cpu_has_vnni(), bool)
        True
    """
    if not _is_x86():
        return True
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return False  # unknown: the safe choice (reduce_range) follows
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8", "avx512vnni"})


def _is_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")


class _Reader:
    """``CalibrationDataReader`` over a :class:`CalibrationSet` (duck-typed: ``get_next``/``rewind``)."""

    def __init__(self, calib: CalibrationSet, input_name: str) -> None:
        self.calib, self.input_name = calib, input_name
        self._it: Any = None

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._it is None:
            self._it = iter(self.calib)
        x = next(self._it, None)
        return None if x is None else {self.input_name: x}

    def rewind(self) -> None:
        self._it = None

    def __len__(self) -> int:
        return len(self.calib)


def _method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    key = str(name).lower()
    table = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
             "percentile": CalibrationMethod.Percentile}  # fmt: skip
    if key not in table:
        raise ConfigError(f"calibration method must be one of {CALIBRATION_METHODS}, got {name!r}")
    return table[key]


def quantize_onnxruntime(
    src: ModelFile,
    calib: CalibrationSet,
    output: Path,
    policy: ScopePolicy,
    method: str = "minmax",
    per_channel: bool = True,
    reduce_range: bool | None = None,
    activations: str = "auto",
    check_openvino: bool = True,
) -> dict[str, Any]:
    """Quantize an ONNX model to a QDQ INT8 ONNX file at ``output``; returns details for the report.

    ``reduce_range=None`` decides from the CPU (:func:`cpu_has_vnni`); ``activations``: ``"uint8"``,
    ``"int8"`` or ``"auto"`` (uint8 on x86, int8 elsewhere).
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    if src.format != "onnx":
        raise ModelFileError(f"the onnxruntime quantizer needs an .onnx model, got {src.path.name!r}; "
                             "use backend='openvino' for an OpenVINO IR")  # fmt: skip
    cal_method = _method(method)
    if activations not in ("auto", "uint8", "int8"):
        raise ConfigError(f"activations must be 'auto', 'uint8' or 'int8', got {activations!r}")
    if activations == "auto":
        activations = "uint8" if _is_x86() else "int8"
    act_type = QuantType.QUInt8 if activations == "uint8" else QuantType.QInt8
    vnni = cpu_has_vnni()
    rr = (not vnni) if reduce_range is None else bool(reduce_range)
    extra = {"ActivationSymmetric": False, "WeightSymmetric": True}
    if str(method).lower() == "percentile":
        extra["CalibPercentile"] = 99.999

    with tempfile.TemporaryDirectory(prefix="edge_mlla_ortq_") as tmp:
        pre, graph = _pre_process(src, Path(tmp))
        groups = policy.select_groups(graph)
        exclude = sorted(set().union(*groups.values())) if groups else []
        LOGGER.info("ORT: quantizing %s (QDQ, per-channel=%s, %s, reduce_range=%s%s), %d node(s) kept in float",
                    src.path.name, per_channel, method, rr, "" if vnni else " [no VNNI]", len(exclude))  # fmt: skip
        qtmp = Path(tmp) / "q.onnx"
        try:
            quantize_static(
                str(pre), str(qtmp), _Reader(calib, src.input_name),
                quant_format=QuantFormat.QDQ, per_channel=per_channel, reduce_range=rr,
                activation_type=act_type, weight_type=QuantType.QInt8,
                nodes_to_exclude=exclude, calibrate_method=cal_method, extra_options=extra,
            )  # fmt: skip
        except Exception as e:
            raise QuantizationError(f"ONNX Runtime quantization of {src.path.name} failed: {type(e).__name__}: {e}") from e
        qmodel = onnx.load(str(qtmp))
        pinned = pin_input_quantizers_onnx(qmodel)
        counts = read_graph(qmodel).op_counts()
        n_q, n_dq = counts.get("QuantizeLinear", 0), counts.get("DequantizeLinear", 0)
        if n_q == 0 or n_dq == 0:
            raise QuantizationError(f"ONNX Runtime returned a model without QuantizeLinear/DequantizeLinear for {src.path.name}")
        details = {"backend": "onnxruntime", "tool": f"onnxruntime {__import__('onnxruntime').__version__}",
                   "format": "QDQ", "per_channel": per_channel, "calibration_method": str(method).lower(),
                   "reduce_range": rr, "cpu_vnni": vnni, "activation_type": activations, "weight_type": "int8",
                   "ignored_scope": list(policy.groups), "ignored_nodes": len(exclude), "quantize_linear_nodes": n_q,
                   "dequantize_linear_nodes": n_dq, "input_quantizers_pinned": pinned,
                   "calibration": calib.summary()}  # fmt: skip
        write_onnx_metadata(qmodel, int8_metadata(src.metadata, details))
        onnx.save(qmodel, str(qtmp))
        sample = next(iter(calib))
        _check_runs_ort(qtmp, src.input_name, sample)
        details["runs_on_openvino"] = _check_runs_openvino(qtmp, sample) if check_openvino else None
        try:
            atomic_write(output, lambda t: t.write_bytes(qtmp.read_bytes()))
        except OSError as e:
            raise QuantizationError(f"could not write {output}: {e}") from e
    details["float_ops"] = policy.describe(graph)
    details["ignored_node_names"] = exclude
    return details


def pin_input_quantizers_onnx(model: Any) -> int:
    """ONNX Runtime's counterpart of :func:`edge_mlla.quantize.openvino_int8.pin_input_quantizers`: each
    QuantizeLinear reading a float (B, 3, H, W) graph input gets the exact 8-bit pixel grid (scale 1/255, zero point
    at 0.0) in its scale and zero-point initializers, which its DequantizeLinear shares in QDQ format; only where the
    calibrated range lay within [0, 1]. Returns how many were set."""
    from onnx import TensorProto, numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    images = {i.name for i in model.graph.input if i.type.tensor_type.elem_type == TensorProto.FLOAT
              and [d.dim_value for d in i.type.tensor_type.shape.dim][1:2] == [3]
              and len(i.type.tensor_type.shape.dim) == 4}  # fmt: skip
    pinned = 0
    for node in model.graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] not in images or len(node.input) < 3:
            continue
        scale_t, zp_t = inits.get(node.input[1]), inits.get(node.input[2])
        if scale_t is None or zp_t is None:
            continue
        scale, zp = numpy_helper.to_array(scale_t), numpy_helper.to_array(zp_t)
        info = np.iinfo(zp.dtype)
        low, high = (info.min - zp.astype(np.float64)) * scale, (info.max - zp.astype(np.float64)) * scale
        if scale.size != 1 or info.max - info.min != 255 or low.min() < -1e-6 or high.max() > 1.0 + 1e-6:
            continue  # not one 8-bit range inside [0, 1]: not an image scaled to [0, 1]
        new_zp = np.full(zp.shape, info.min, zp.dtype)  # pixel 0 -> the lowest level
        scale_t.CopyFrom(numpy_helper.from_array(np.full(scale.shape, 1 / 255, scale.dtype), scale_t.name))
        zp_t.CopyFrom(numpy_helper.from_array(new_zp, zp_t.name))
        pinned += 1
    return pinned


def _pre_process(src: ModelFile, tmp: Path) -> tuple[Path, Any]:
    """``quant_pre_process`` (symbolic shape inference, falling back to ONNX's) with every node named (the
    exclusion list needs names); returns the file and its graph."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = tmp / "pre.onnx"
    try:
        quant_pre_process(str(src.path), str(pre))
    except Exception as e:  # symbolic shape inference fails on some graphs: fall back to ONNX shape inference
        LOGGER.warning("quant_pre_process failed (%s); retrying without symbolic shape inference", e)
        try:
            quant_pre_process(str(src.path), str(pre), skip_symbolic_shape=True)
        except Exception as e2:
            raise QuantizationError(f"ONNX Runtime pre-processing of {src.path.name} failed: {e2}") from e2
    pre_model = onnx.load(str(pre))
    for i, n in enumerate(pre_model.graph.node):  # nodes_to_exclude needs names
        if not n.name:
            n.name = f"{n.op_type}_{i}"
    onnx.save(pre_model, str(pre))
    return pre, read_graph(pre_model)


def _check_runs_ort(path: Path, input_name: str, x: np.ndarray) -> None:
    import onnxruntime as ort

    try:
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        sess.run(None, {input_name: x})
    except Exception as e:
        raise QuantizationError(f"the QDQ model does not run on ONNX Runtime: {e}") from e


def _check_runs_openvino(path: Path, x: np.ndarray) -> bool | str:
    """True when OpenVINO compiles and runs the QDQ file, else the error text (reported, not raised)."""
    try:
        import openvino as ov

        compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        compiled(x)
        return True
    except Exception as e:  # reported in the QuantizeReport; ORT is the target runtime of this file
        LOGGER.warning("the QDQ model does not run on OpenVINO: %s", e)
        return f"{type(e).__name__}: {e}"[:300]
