"""torch -> ONNX (TorchScript exporter, onnxslim, metadata, checker) and fp16 conversion of the graph.

Imports inside functions: onnx, onnxruntime, onnxslim, torch are optional or slow to import; our module export.clean
pulls in more than importing this module needs, so they load when the function that uses them runs.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

from edge_mlla.errors import ExportError
from edge_mlla.modelfile import write_onnx_metadata

LOGGER = logging.getLogger("edge_mlla")


def to_onnx(model, hw, batch, dynamic, simplify, opset, metadata, path: Path, half: bool) -> None:
    import warnings

    import onnx
    import torch

    im = torch.zeros(batch, 3, *hw)
    axes = {"images": {0: "batch", 2: "height", 3: "width"}, "output0": {0: "batch", 2: "anchors"}} if dynamic else None
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # TracerWarnings about constant sizes: intended (bound tables)
            torch.onnx.export(
                model,
                im,
                str(path),
                dynamo=False,  # TorchScript exporter, as Ultralytics uses
                opset_version=opset,
                input_names=["images"],
                output_names=["output0"],
                dynamic_axes=axes,
                do_constant_folding=True,
            )
        graph = onnx.load(str(path))
    except Exception as e:
        raise ExportError(f"ONNX export failed: {type(e).__name__}: {e}") from e
    if simplify:
        try:
            import onnxslim

            graph = onnxslim.slim(graph)
        except Exception as e:  # a simplifier failure is not fatal: the traced graph is valid
            LOGGER.warning("onnxslim failed, keeping the unsimplified graph: %s", e)
        else:
            from edge_mlla.export.clean import slices_to_split

            slices_to_split(graph)  # torch.chunk's Slices -> one Split (exact; cheaper in OpenVINO INT8)
    if half:
        graph = onnx_to_fp16(graph)
    write_onnx_metadata(graph, metadata)
    if graph.ir_version > 10:  # ORT reads IR <= 10 (same cap as Ultralytics' exporter)
        graph.ir_version = 10
    try:
        onnx.checker.check_model(graph)
    except Exception as e:
        raise ExportError(f"exported ONNX graph fails onnx.checker: {e}") from e
    onnx.save(graph, str(path))


def onnx_to_fp16(graph):
    """float16 weights and activations, float32 I/O; MLLA ``z`` subgraphs (``/z/`` scope) stay float32."""
    from onnxruntime.transformers import float16

    keep = [n.name for n in graph.graph.node if "/z/" in n.name]
    graph = float16.convert_float_to_float16(graph, keep_io_types=True, node_block_list=keep)
    # The converter appends its input Casts after the nodes that use them, which onnx.checker rejects
    # ("Nodes in a graph must be topologically sorted"): https://github.com/microsoft/onnxruntime/issues/15494
    _toposort(graph.graph)
    _drop_fp16_roundtrips(graph.graph)
    return graph


def _drop_fp16_roundtrips(graph) -> None:
    """``x(fp32) -> Cast(fp16) -> Cast(fp32)`` between two kept-float32 nodes: read ``x`` directly.

    The fp16 converter casts every blocked node's output to fp16 and back for the next blocked node,
    which would round the ``z`` denominator to fp16 after all.
    """
    import onnx

    by_out = {o: n for n in graph.node for o in n.output}
    f32, f16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16

    def cast_to(node) -> int | None:
        return next((a.i for a in node.attribute if a.name == "to"), None) if node.op_type == "Cast" else None

    for node in graph.node:
        if cast_to(node) != f32:
            continue
        prev = by_out.get(node.input[0])
        if prev is not None and cast_to(prev) == f16 and "_cast_to_fp16" in prev.name:
            node.input[0] = prev.input[0]  # now a float32 -> float32 Cast (a no-op the runtimes drop)
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    dead = [n for n in graph.node if n.op_type == "Cast" and not any(o in used for o in n.output)]
    for n in dead:
        graph.node.remove(n)


def _toposort(graph) -> None:
    """Reorder ``graph.node`` topologically (stable: keeps the original order where it can)."""
    produced = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        rest = []
        for node in pending:
            if all(i in produced for i in node.input):
                ordered.append(node)
                produced.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise ExportError(f"ONNX graph has a cycle or a dangling input near node {rest[0].name!r}")
        pending = rest
    nodes = [copy.deepcopy(n) for n in ordered]
    del graph.node[:]
    graph.node.extend(nodes)
