"""Op audit of an exported detector: op types in the graph, and what runs inside each MLLA block.

Reads graphs through :func:`edge_mlla.graph.read_graph`, the same reader the quantizer's scope rules use.

Example:
    >>> from edge_mlla.export import op_audit
    >>> a = op_audit("best.onnx")  # doctest: +SKIP
    >>> a.mlla_violations()  # doctest: +SKIP
    []
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from edge_mlla.errors import MissingFileError, ModelFileError
from edge_mlla.graph import Graph, read_graph

#: op types never allowed inside an MLLA block of a static export
MLLA_FORBIDDEN = frozenset(
    {
        "Cos", "Sin", "Shape", "Size", "Range", "ConstantOfShape", "Einsum",
        "DFT", "STFT", "Complex", "Real", "Imag",
    }
)  # fmt: skip


@dataclass
class OpAudit:
    """Op types of an exported graph, and what runs inside each MLLA block (found by node-name scope).

    ``ops``/``mlla_ops``: ONNX op type -> count in the whole graph / inside MLLA blocks.
    ``mlla_transposes``: per block, the Transpose nodes inside it and whether each feeds only the
    second input of MatMul nodes (an operand transpose the runtimes fold into the MatMul).
    ``openvino_ops``/``openvino_mlla_ops``: the same for an OpenVINO IR beside the ``.onnx`` (same stem) or
    given explicitly; ``openvino_matmul_transpose_b``: MatMuls inside MLLA that carry ``transpose_b``.
    """

    path: Path
    ops: Counter = field(default_factory=Counter)
    mlla_ops: Counter = field(default_factory=Counter)
    mlla_blocks: list[str] = field(default_factory=list)
    mlla_nodes: list[tuple[str, str]] = field(default_factory=list)  # (node name, op type)
    mlla_transposes: dict[str, list[tuple[str, bool]]] = field(default_factory=dict)
    openvino_ops: Counter | None = None
    openvino_mlla_ops: Counter | None = None
    openvino_matmul_transpose_b: int | None = None

    def mlla_violations(self) -> list[str]:
        """Broken rules, empty when clean. Inside MLLA: no Cos, Sin, Shape-derived op (Shape, Size, Range,
        ConstantOfShape), complex op or Einsum; no Transpose except a single MatMul operand transpose per
        block (``kv = v @ k^T``), which ONNX Runtime fuses into FusedMatMul(transB=1) and OpenVINO into
        MatMul(transpose_b=true); in an OpenVINO IR, no Transpose left inside MLLA at all."""
        bad = [f"{op} x{n} inside MLLA" for op, n in sorted(self.mlla_ops.items()) if op in MLLA_FORBIDDEN]
        for blk, ts in sorted(self.mlla_transposes.items()):
            if len(ts) > 1:
                bad.append(f"{blk}: {len(ts)} Transposes (at most one MatMul operand transpose per block)")
            bad += [f"{name}: layout Transpose (does not feed a MatMul's second input)" for name, ok in ts if not ok]
        if self.openvino_mlla_ops:
            bad += [f"OpenVINO IR: {op} x{n} inside MLLA" for op, n in sorted(self.openvino_mlla_ops.items())
                    if op == "Transpose" or op in MLLA_FORBIDDEN]  # fmt: skip
        return bad

    def table(self) -> str:
        """Markdown table: op type, count in the whole graph, count inside MLLA."""
        rows = ["| op | graph | inside MLLA |", "|---|---:|---:|"]
        for op, n in sorted(self.ops.items(), key=lambda kv: (-kv[1], kv[0])):
            rows.append(f"| {op} | {n} | {self.mlla_ops.get(op, 0)} |")
        rows.append(f"| **total** | {sum(self.ops.values())} | {sum(self.mlla_ops.values())} |")
        return "\n".join(rows)


def _block_scopes(names: list[str]) -> list[str]:
    """Name scopes of MLLA blocks: every scope that owns a ``cpe1`` child (both forms have one).

    ``/model.10/m/m.0/cpe1/Conv`` -> ``/model.10/m/m.0``. Longest first, so nested scopes resolve right.
    """
    scopes = {n.split("/cpe1/")[0] for n in names if "/cpe1/" in n}
    return sorted(scopes, key=len, reverse=True)


def op_types(path: str | os.PathLike) -> Counter:
    """Op type -> count of an ``.onnx`` graph or an OpenVINO ``.xml`` IR (every op, constants included).

    Example:
        >>> op_types("best.onnx")["Conv"]  # doctest: +SKIP
        88
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"model file not found: {path}")
    if path.suffix not in (".onnx", ".xml"):
        raise ModelFileError(f"op_types() reads .onnx or OpenVINO .xml files, got {path.name!r}")
    return Counter(t for _, t in read_graph(path).all_ops)


def _in_scope(name: str, scopes: list[str]) -> str | None:
    return next((s for s in scopes if name.startswith(s + "/")), None)


def _operand_transpose(g: Graph, name: str) -> bool:
    """True when the Transpose ``name`` feeds only the second input of MatMuls (a foldable operand transpose)."""
    if name not in g.nodes:  # computed from constants only: folded by every runtime
        return True
    uses = g.consumers.get(name, [])
    return bool(uses) and all(g.nodes[c].type == "MatMul" and g.input_slots(name, c) == [1] for c in uses)


def op_audit(path: str | os.PathLike, openvino: str | os.PathLike | None = None) -> OpAudit:
    """Audit an exported ONNX graph (and its OpenVINO IR): op types, and the nodes inside MLLA blocks.

    The TorchScript exporter names nodes after module paths (``/model.10/m/m.0/qk/Conv``); a
    node is inside an MLLA block when its name starts with a block's scope, a scope being any
    that owns a ``cpe1`` child (both forms of the block have one). OpenVINO keeps ONNX node names
    as friendly names, so the IR is audited the same way. ``openvino`` defaults to the ``.xml``
    with the same stem beside ``path`` (or inside ``<stem>_openvino_model/``) when there is one.

    Example:
        >>> a = op_audit("best.onnx")  # doctest: +SKIP
        >>> a.mlla_violations()  # doctest: +SKIP
        []
    """
    path = Path(path)
    if not path.is_file() or path.suffix != ".onnx":
        raise MissingFileError(f"op_audit() needs an existing .onnx file, got {path}")
    g = read_graph(path)
    audit = OpAudit(path=path)
    scopes = _block_scopes([n for n, _ in g.all_ops])
    blocks = set()
    for name, kind in g.all_ops:
        audit.ops[kind] += 1
        blk = _in_scope(name, scopes)
        if blk is None:
            continue
        blocks.add(blk)
        audit.mlla_ops[kind] += 1
        audit.mlla_nodes.append((name, kind))
        if kind == "Transpose":
            audit.mlla_transposes.setdefault(blk, []).append((name, _operand_transpose(g, name)))
    audit.mlla_blocks = sorted(blocks)
    if openvino is None:
        for cand in (path.with_suffix(".xml"), path.parent / f"{path.stem}_openvino_model" / f"{path.stem}.xml"):
            if cand.is_file():
                openvino = cand
                break
    if openvino is not None:
        _audit_openvino(audit, Path(openvino), scopes)
    return audit


def _audit_openvino(audit: OpAudit, xml: Path, scopes: list[str]) -> None:
    if not xml.is_file():
        raise MissingFileError(f"OpenVINO IR not found: {xml}")
    g = read_graph(xml)
    audit.openvino_ops, audit.openvino_mlla_ops, audit.openvino_matmul_transpose_b = Counter(), Counter(), 0
    for name, kind in g.all_ops:
        audit.openvino_ops[kind] += 1
        if kind != "Constant" and _in_scope(name, scopes):
            audit.openvino_mlla_ops[kind] += 1
            node = g.nodes.get(name)
            if kind == "MatMul" and node is not None and node.attrs.get("transpose_b"):
                audit.openvino_matmul_transpose_b += 1
