"""OpenVINO INT8 through NNCF post-training quantization, with the graph-derived ignored scope of :mod:`.scope`.

``nncf.quantize`` runs with the candidate's preset (MIXED: symmetric weights, asymmetric activations; PERFORMANCE:
symmetric both) and full bias correction unless told ``fast`` or ``none`` (full recovers more of the head's accuracy
on small detectors);
with ``max_drop`` it runs ``nncf.quantize_with_accuracy_control`` instead, its metric being our own
mAP50-95 (:mod:`edge_mlla.eval`), so layers go back to float until the drop is within ``max_drop``.

The image input's quantizer is then pinned to the exact 8-bit pixel grid (:func:`pin_input_quantizers`). The result
is an IR with FakeQuantize nodes (``compress_to_fp16=False``, INT8 weights), carrying the source
metadata with ``precision: int8`` and the quantization details in its ``edge_mlla`` entry.

Example:
    >>> from edge_mlla.quantize.openvino_int8 import quantize_openvino
    >>> info = quantize_openvino(src, calib, out_xml, policy)  # doctest: +SKIP

Imports inside functions: NNCF and OpenVINO (optional, slow to import) load only when this path runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_mlla._env import setup_offline
from edge_mlla.errors import ConfigError, QuantizationError
from edge_mlla.modelfile import ModelFile, attach_openvino_metadata, int8_metadata, sibling_models, write_metadata_yaml
from edge_mlla.quantize._model import atomic_write
from edge_mlla.quantize.calibration import CalibrationSet
from edge_mlla.graph import read_graph
from edge_mlla.quantize.scope import ScopePolicy

LOGGER = logging.getLogger("edge_mlla")

PRESETS = ("mixed", "performance")
BIAS_CORRECTION = ("full", "fast", "none")  # NNCF: full (default, most accurate), fast, or off (tiny calibration sets)


def _nncf():
    setup_offline()  # telemetry opt-out before NNCF is imported
    import nncf

    return nncf


def quantize_openvino(
    src: ModelFile,
    calib: CalibrationSet,
    output: Path,
    policy: ScopePolicy,
    preset: str = "mixed",
    bias_correction: str = "full",
    max_drop: float | None = None,
    validation_items: Sequence[Any] | None = None,
    validation_fn: Callable[[Callable[[np.ndarray], np.ndarray], Sequence[Any]], float] | None = None,
) -> dict[str, Any]:
    """Quantize ``src`` (``.xml`` or ``.onnx``) to an INT8 OpenVINO IR at ``output``; returns details for the report.

    ``validation_fn(run, items) -> mAP`` scores a model given ``run(batch) -> output0`` on ``validation_items``;
    both are required with ``max_drop`` (absolute mAP50-95 drop, e.g. 0.01).
    """
    from edge_mlla.ovread import read_model

    if preset not in PRESETS:
        raise ConfigError(f"preset must be one of {PRESETS}, got {preset!r}")
    if bias_correction not in BIAS_CORRECTION:
        raise ConfigError(f"bias_correction must be one of {BIAS_CORRECTION}, got {bias_correction!r}")
    nncf = _nncf()
    model = read_model(src.path)
    graph = read_graph(model)
    groups = policy.select_groups(graph)
    ignored = sorted(set().union(*groups.values())) if groups else []
    scope = nncf.IgnoredScope(names=ignored, validate=False) if ignored else None
    dataset = nncf.Dataset(calib)
    n_items = len(calib)
    common = dict(
        preset=nncf.QuantizationPreset.MIXED if preset == "mixed" else nncf.QuantizationPreset.PERFORMANCE,
        subset_size=max(n_items, 1),
        fast_bias_correction=bias_correction == "fast",
        ignored_scope=scope,
    )
    advanced = nncf.AdvancedQuantizationParameters(disable_bias_correction=True) if bias_correction == "none" else None
    LOGGER.info("NNCF: quantizing %s on %d calibration batch(es), %d node(s) kept in float (%s)",
                src.path.name, n_items, len(ignored), ", ".join(policy.groups) or "none")  # fmt: skip
    try:
        if max_drop is None:
            qmodel = nncf.quantize(model, dataset, **common, advanced_parameters=advanced)
        else:
            if validation_fn is None or not validation_items:
                raise ConfigError("max_drop needs validation data (val=data.yaml) to measure the drop")

            def nncf_validate(compiled: Any, items: Any) -> tuple[float, None]:
                out = compiled.outputs[0]
                return float(validation_fn(lambda x: compiled(x)[out], list(items))), None

            qmodel = nncf.quantize_with_accuracy_control(
                model, dataset, nncf.Dataset(list(validation_items)), nncf_validate, max_drop=float(max_drop),
                drop_type=nncf.DropType.ABSOLUTE, **common, advanced_quantization_parameters=advanced,
            )  # fmt: skip
    except ConfigError:
        raise
    except Exception as e:
        raise QuantizationError(f"NNCF quantization of {src.path.name} failed: {type(e).__name__}: {e}") from e

    pinned = pin_input_quantizers(qmodel)
    details = {
        "backend": "openvino",
        "tool": f"nncf {nncf.__version__}",
        "preset": preset,
        "bias_correction": bias_correction,
        "accuracy_control": max_drop is not None,
        "max_drop": max_drop,
        "ignored_scope": list(policy.groups),
        "ignored_nodes": len(ignored),
        "fake_quantize_nodes": _count_quantizers(qmodel, src.path.name),
        "input_quantizers_pinned": pinned,
        "calibration": calib.summary(),
    }
    _save(qmodel, output, int8_metadata(src.metadata, details))
    details["float_ops"] = policy.describe(graph)
    details["ignored_node_names"] = ignored
    return details


def _count_quantizers(qmodel: Any, name: str) -> int:
    """FakeQuantize/FakeConvert nodes of the quantized model; none at all is an error (NNCF did nothing)."""
    counts = read_graph(qmodel).op_counts()
    n_fq = sum(n for t, n in counts.items() if t in ("FakeQuantize", "FakeConvert"))
    if n_fq == 0:
        raise QuantizationError(f"NNCF returned a model without FakeQuantize nodes for {name}")
    return n_fq


def pin_input_quantizers(qmodel: Any) -> int:
    """Set the quantizer right after each image input to exactly [0, 1] in 256 levels; returns how many were set.

    The input is an 8-bit image divided by 255, so level ``p`` of that grid is pixel ``p``: the quantizer loses
    nothing. Calibrated, its range is the calibration images' statistics instead, e.g. [0, 0.963] on BCCD, which
    clips every pixel brighter than 245. Pinned, OpenVINO also drops it from a graph whose input is the uint8 frame
    (the Detector's fused preprocessing): the first convolution reads the pixels directly. Bundled model at 416, INT8,
    same calibration: mAP50-95 +0.14 points on BCCD val and +0.50 on test, and on a 2-core AMD EPYC (AVX-512
    BF16/VNNI) the input quantizer's 0.08-0.11 ms per frame gone.
    Only an unsigned 256-level quantizer (low 0, as NNCF puts on non-negative activations) calibrated within [0, 1]
    on an f32 image input (B, 3, H, W) is touched."""
    from openvino import opset13 as ops

    from edge_mlla.runtimes.openvino import is_image_input

    pinned = 0
    for port in qmodel.inputs:
        if not is_image_input(port):
            continue
        for target in port.get_target_inputs():
            fq = target.get_node()
            if fq.get_type_name() != "FakeQuantize" or fq.get_attributes().get("levels") != 256:
                continue
            ranges = [fq.input_value(i).get_node() for i in range(1, 5)]
            if any(r.get_type_name() != "Constant" for r in ranges) or any(float(r.get_data().min()) != 0.0 for r in ranges[::2]) \
                    or any(float(r.get_data().max()) > 1.0 for r in ranges[1::2]):  # fmt: skip
                continue  # signed, or not an input scaled to [0, 1] (a model fed raw 0-255 values keeps its range)
            for i, (r, v) in enumerate(zip(ranges, (0.0, 1.0, 0.0, 1.0)), start=1):
                data = r.get_data()
                fq.input(i).replace_source_output(ops.constant(np.full(data.shape, v, data.dtype)).output(0))
            pinned += 1
    if pinned:
        qmodel.validate_nodes_and_infer_types()
    return pinned


def _save(qmodel: Any, output: Path, metadata: dict[str, str]) -> None:
    import openvino as ov

    attach_openvino_metadata(qmodel, metadata)

    # metadata.yaml is where Ultralytics' AutoBackend looks; never overwrite the one of another model in that folder
    others = sibling_models(output)
    if others:
        LOGGER.info("not writing metadata.yaml: %s also holds %s (the metadata is in the IR's rt_info)",
                    output.parent, others[0].name)  # fmt: skip

    def write(tmp: Path) -> None:
        ov.save_model(qmodel, str(tmp), compress_to_fp16=False)
        if not others:
            write_metadata_yaml(tmp.parent, metadata)

    try:
        atomic_write(output, write, companions=(".bin",), extras=("metadata.yaml",))
    except OSError as e:
        raise QuantizationError(f"could not write {output}: {e}") from e
