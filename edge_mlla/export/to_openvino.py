"""ONNX -> OpenVINO IR, with metadata in rt_info and ``metadata.yaml``, and the MLLA ``z`` nodes kept float32.

Imports inside functions: openvino is optional or slow to import, so it loads when the function that uses it runs.
"""

from __future__ import annotations

from pathlib import Path

from edge_mlla.errors import ExportError
from edge_mlla.modelfile import attach_openvino_metadata, write_metadata_yaml


def to_openvino(onnx_path: Path, xml: Path, metadata: dict[str, str], half: bool) -> None:
    import openvino as ov

    try:
        ov_model = ov.convert_model(str(onnx_path))
        keep_z_in_fp32(ov_model)
        attach_openvino_metadata(ov_model, metadata)
        xml.parent.mkdir(parents=True, exist_ok=True)
        ov.save_model(ov_model, str(xml), compress_to_fp16=half)
    except Exception as e:
        raise ExportError(f"OpenVINO conversion failed: {type(e).__name__}: {e}") from e
    write_metadata_yaml(xml.parent, metadata)


def keep_z_in_fp32(ov_model) -> int:
    """Mark the MLLA ``z`` nodes (``/z/`` scope) precise (``disable_fp16_compression``): OpenVINO then keeps
    them in float32 under ``compress_to_fp16`` and under bf16/f16 inference precision on CPU
    (https://github.com/openvinotoolkit/openvino/pull/21440). From Python the attribute is set as the
    string key ``precise_0`` (https://github.com/openvinotoolkit/openvino/pull/20625); OpenVINO 2026
    serializes it as ``DisablePrecisionConversion``. Returns the number of nodes marked."""
    n = 0
    for op in ov_model.get_ops():
        if "/z/" in op.get_friendly_name():
            op.get_rt_info()["precise_0"] = ""
            n += 1
    return n
