"""A runtime-neutral view of an exported model graph (ONNX or OpenVINO IR), read once, used twice (torch-free).

:func:`read_graph` turns an ``.onnx`` / ``.xml`` path, an ``onnx.ModelProto`` or an ``openvino.Model`` into a
:class:`Graph`: canonical op types (``Convolution`` -> ``Conv``, ``Multiply`` -> ``Mul``, ...), constant folding of
the *is-constant* property (weights, their converts and shape arithmetic are not nodes), producers, consumers and
the input slot each consumer reads. The export op audit (:mod:`edge_mlla.export.audit`) and the quantizer's
ignored-scope rules (:mod:`edge_mlla.quantize.scope`) both read graphs through it, so "what is in this graph"
has one answer. ``onnx`` and ``openvino`` are imported only by the reader that needs them.

Example:
    >>> from edge_mlla.graph import read_graph
    >>> g = read_graph("model.xml")  # doctest: +SKIP
    >>> g.op_counts()["Conv"]  # doctest: +SKIP
    92
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from edge_mlla.errors import ModelFileError
from edge_mlla.modelfile import QUANT_OP_TYPES, has_quant_ops

# runtime-specific op type -> canonical (ONNX-like) type
_CANON = {
    "Convolution": "Conv",
    "GroupConvolution": "Conv",
    "ConvInteger": "Conv",
    "Multiply": "Mul",
    "Subtract": "Sub",
    "Divide": "Div",
    "Power": "Pow",
    "SoftMax": "Softmax",
    "StridedSlice": "Slice",
    "VariadicSplit": "Split",
    "Parameter": "Input",
    "Result": "Output",
    "Swish": "SiLU",
    "FusedMatMul": "MatMul",
    "Gemm": "MatMul",
}
WEIGHTED = {"Conv", "MatMul", "ConvTranspose"}  #: canonical types of layers that carry weights


@dataclass
class Node:
    """One op: ``name`` (what quantizers' ignore lists use), canonical ``type``, the producers of its inputs
    (``None`` for a graph input edge) and which inputs are constant; ``scalars[i]`` is the value of a
    one-element constant input, else None."""

    name: str
    type: str
    raw_type: str
    inputs: list[str | None] = field(default_factory=list)
    const: list[bool] = field(default_factory=list)
    scalars: list[float | None] = field(default_factory=list)
    attrs: dict[str, object] = field(default_factory=dict)

    def act_inputs(self) -> list[str]:
        return [p for p, c in zip(self.inputs, self.const) if p is not None and not c]


@dataclass
class Graph:
    """A runtime-neutral view of a model graph: nodes in topological order, with consumer lists."""

    nodes: dict[str, Node]
    outputs: list[str]
    source: str = ""
    consumers: dict[str, list[str]] = field(default_factory=dict)
    #: every op of the file as (name, the runtime's own type), constants and folded ones included, in file order
    all_ops: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.consumers = {n: [] for n in self.nodes}
        for node in self.nodes.values():
            for p in node.act_inputs():
                self.consumers.setdefault(p, []).append(node.name)

    def op_counts(self, raw: bool = False) -> Counter:
        """Op type -> count (constants excluded): canonical types, or the runtime's own with ``raw=True``."""
        return Counter(n.raw_type if raw else n.type for n in self.nodes.values())

    def input_slots(self, producer: str, consumer: str) -> list[int]:
        """Which inputs of ``consumer`` read ``producer``'s output (positions among its non-empty inputs)."""
        return [i for i, p in enumerate(self.nodes[consumer].inputs) if p == producer]

    def is_quantized(self) -> bool:
        """True when the graph already holds quantize/dequantize (or integer) ops."""
        return has_quant_ops(n.raw_type for n in self.nodes.values())

    def descendants(self, start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for c in self.consumers.get(todo.pop(), []):
                if c not in seen:
                    seen.add(c)
                    todo.append(c)
        return seen


# ------------------------------------------------------------------------------------------------- readers
def read_graph(model: object) -> Graph:
    """Read an ``.onnx`` / OpenVINO ``.xml`` path, an ``onnx.ModelProto`` or an ``openvino.Model`` into a :class:`Graph`.

    Example:
        >>> g = read_graph("model.xml")  # doctest: +SKIP
        >>> g.op_counts()["Conv"]  # doctest: +SKIP
        92
    """
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.is_file():
            raise ModelFileError(f"model file not found: {path}")
        if path.suffix == ".onnx":
            import onnx

            try:
                return _from_onnx(onnx.load(str(path)), str(path))
            except Exception as e:
                raise ModelFileError(f"{path} is not a readable ONNX model: {e}") from e
        if path.suffix == ".xml":
            from edge_mlla.ovread import read_model

            return _from_openvino(read_model(path), str(path))
        raise ModelFileError(f"expected an .onnx or OpenVINO .xml model, got {path.name!r}")
    mod = type(model).__module__
    if mod.startswith("onnx"):
        return _from_onnx(model, "<onnx>")
    if mod.startswith("openvino"):
        return _from_openvino(model, "<openvino>")
    raise ModelFileError(f"cannot read a graph from {type(model).__name__}; expected an ONNX or OpenVINO model")


def _from_onnx(model, source: str) -> Graph:
    import numpy as np
    from onnx import numpy_helper

    g = model.graph
    const_vals: dict[str, object] = {i.name: i for i in g.initializer}
    producer: dict[str, str] = {}
    const_tensor: set[str] = set(const_vals)
    nodes: dict[str, Node] = {}

    def scalar(t: str) -> float | None:
        v = const_vals.get(t)
        if v is None:
            return None
        try:
            arr = numpy_helper.to_array(v) if not isinstance(v, np.ndarray) else v
        except Exception:
            return None
        return float(arr.reshape(-1)[0]) if arr.size == 1 else None

    all_ops: list[tuple[str, str]] = []
    for i, n in enumerate(g.node):
        name = n.name or f"{n.op_type}_{i}:{n.output[0] if n.output else ''}"
        all_ops.append((name, n.op_type))
        real_inputs = [t for t in n.input if t]
        if n.op_type == "Constant" or (real_inputs and all(t in const_tensor for t in real_inputs)
                                       and n.op_type not in QUANT_OP_TYPES):
            const_tensor.update(n.output)
            if n.op_type == "Constant":
                for a in n.attribute:
                    if a.name == "value":
                        const_vals[n.output[0]] = numpy_helper.to_array(a.t)
            continue
        node = Node(name, _CANON.get(n.op_type, n.op_type), n.op_type,
                    attrs={a.name: a.i for a in n.attribute if a.type == a.INT})  # fmt: skip
        for t in real_inputs:
            is_c = t in const_tensor
            node.inputs.append(None if t not in producer else producer[t])
            node.const.append(is_c)
            node.scalars.append(scalar(t) if is_c else None)
        for t in n.output:
            producer[t] = name
        nodes[name] = node
    outputs = [producer[o.name] for o in g.output if o.name in producer]
    return Graph(nodes, outputs, source, all_ops=all_ops)


def _from_openvino(model, source: str) -> Graph:
    const_ops: set[str] = set()
    const_vals: dict[str, float | None] = {}
    nodes: dict[str, Node] = {}
    outputs: list[str] = []
    all_ops: list[tuple[str, str]] = []
    for op in model.get_ordered_ops():
        t, name = op.get_type_name(), op.get_friendly_name()
        all_ops.append((name, t))
        ins = [v.get_node() for v in op.input_values()]
        if t == "Constant":
            const_ops.add(name)
            try:
                data = op.get_data()
                const_vals[name] = float(data.reshape(-1)[0]) if data.size == 1 else None
            except Exception:
                const_vals[name] = None
            continue
        if ins and all(i.get_friendly_name() in const_ops for i in ins) and t not in QUANT_OP_TYPES:
            const_ops.add(name)  # Convert(Constant) of compressed weights, folded shape arithmetic
            const_vals[name] = const_vals.get(ins[0].get_friendly_name()) if t == "Convert" else None
            continue
        if t == "Result":
            outputs.extend(i.get_friendly_name() for i in ins)
            continue
        node = Node(name, _CANON.get(t, t), t, attrs=_ov_attrs(op) if t == "MatMul" else {})
        for i in ins:
            iname = i.get_friendly_name()
            is_c = iname in const_ops
            node.inputs.append(iname)
            node.const.append(is_c)
            node.scalars.append(const_vals.get(iname) if is_c else None)
        nodes[name] = node
    return Graph(nodes, outputs, source, all_ops=all_ops)


def _ov_attrs(op) -> dict[str, object]:
    try:
        return {k: v for k, v in op.get_attributes().items() if isinstance(v, (bool, int, float, str))}
    except Exception:  # attribute access differs across OpenVINO versions; the audit then reports no flags
        return {}
