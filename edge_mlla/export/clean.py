"""Exact ONNX graph clean-ups that make the exported model cheaper to run (no numerical change).

:func:`slices_to_split`: ``torch.chunk`` traces as one ``Slice`` per piece (after onnxslim folds their Shape
arithmetic). OpenVINO then runs the pieces as separate strided copies, outside the INT8 region: NNCF does not
propagate a quantizer up through a ``Slice``, so each piece is re-quantized on its own (per-layer counters of the
bundled YOLO11n-MLLA INT8 at 416: a ``VariadicSplit`` and two ``Subgraph`` nodes in bf16 per C3k2 block, about
0.4 ms of 14 on one thread). One ``Split`` node is what Ultralytics' own exporter gets by switching ``C2f`` to
``forward_split``; it runs in INT8 after a single quantizer, and the MLLA block's ``chunk`` calls get it too.

Example:
    >>> import onnx
    >>> from onnx import TensorProto, helper, numpy_helper
    >>> import numpy as np
    >>> c = lambda n, v: numpy_helper.from_array(np.array(v, np.int64), n)
    >>> g = helper.make_graph(
    ...     [helper.make_node("Slice", ["x", "s0", "e0", "ax"], ["a"]), helper.make_node("Slice", ["x", "s1", "e1", "ax"], ["b"])],
    ...     "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 2, 2])],
    ...     [helper.make_tensor_value_info("a", TensorProto.FLOAT, None), helper.make_tensor_value_info("b", TensorProto.FLOAT, None)],
    ...     [c("s0", [0]), c("e0", [2]), c("s1", [2]), c("e1", [9223372036854775807]), c("ax", [1])])
    >>> m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    >>> slices_to_split(m), [n.op_type for n in m.graph.node]
    (1, ['Split'])

Imports inside functions: onnx (slow to import) loads when a graph is cleaned.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

LOGGER = logging.getLogger("edge_mlla")


def _const(graph: Any) -> dict[str, Any]:
    from onnx import numpy_helper

    out = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            out[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return out


def _dims(model: Any) -> dict[str, list[int | None]]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    out: dict[str, list[int | None]] = {}
    for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        t = v.type.tensor_type
        if t.HasField("shape"):
            out[v.name] = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    return out


def _slice_range(node: Any, consts: dict[str, Any], dims: dict[str, list[int | None]]) -> tuple[int, int, int] | None:
    """(axis, start, end) of a constant, step-1, one-axis Slice whose axis size is known; else None."""
    ins = list(node.input) + [""] * (5 - len(node.input))
    if any(i and i not in consts for i in ins[1:5]) or not ins[1] or not ins[2]:
        return None
    starts, ends = consts[ins[1]].reshape(-1), consts[ins[2]].reshape(-1)
    axes = consts[ins[3]].reshape(-1) if ins[3] else list(range(len(starts)))
    steps = consts[ins[4]].reshape(-1) if ins[4] else [1] * len(starts)
    shape = dims.get(ins[0])
    if len(starts) != 1 or len(axes) != 1 or int(steps[0]) != 1 or shape is None:
        return None
    axis = int(axes[0]) % len(shape)
    size = shape[axis]
    if not size:
        return None
    start, end = int(starts[0]), int(ends[0])
    start, end = (start + size if start < 0 else start), (end + size if end < 0 else end)
    start, end = max(0, min(start, size)), max(0, min(end, size))
    return (axis, start, end) if end > start else None


def slices_to_split(model: Any) -> int:
    """Replace each group of Slices that tiles one input along one axis (every element exactly once) by one
    ``Split`` node, in place; returns the number of Split nodes made. Slices that do not tile stay."""
    import numpy as np
    from onnx import helper, numpy_helper

    graph = model.graph
    consts, dims = _const(graph), _dims(model)
    groups: dict[tuple[str, int], list[tuple[int, int, Any]]] = defaultdict(list)
    for n in graph.node:
        if n.op_type == "Slice":
            r = _slice_range(n, consts, dims)
            if r is not None:
                groups[(n.input[0], r[0])].append((r[1], r[2], n))
    made = 0
    for (src, axis), parts in groups.items():
        parts.sort(key=lambda p: p[0])
        size = dims[src][axis]
        if len(parts) < 2 or parts[0][0] != 0 or parts[-1][1] != size or any(
                a[1] != b[0] for a, b in zip(parts, parts[1:])):  # fmt: skip
            continue
        first = min(list(graph.node).index(p[2]) for p in parts)
        sizes = f"{parts[0][2].name}_split_sizes"
        graph.initializer.append(numpy_helper.from_array(np.array([e - s for s, e, _ in parts], np.int64), sizes))
        split = helper.make_node("Split", [src, sizes], [p[2].output[0] for p in parts], axis=axis,
                                 name=f"{parts[0][2].name}_split")  # fmt: skip
        for _, _, n in parts:
            graph.node.remove(n)
        graph.node.insert(first, split)
        made += 1
    if made:
        LOGGER.debug("export: %d group(s) of Slice nodes merged into Split", made)
    return made
