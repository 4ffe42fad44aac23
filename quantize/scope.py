"""Which nodes stay in float when a YOLO11(-MLLA) graph is quantized: a policy derived from the graph's structure.

Nothing here matches node *names*: the same rules find the same nodes in our exports, in Ultralytics' own
exports, in an OpenVINO IR (where ONNX ops are renamed, fused to ``MVN``/``Swish`` and biases split into
``Add``), and after ONNX Runtime's pre-processing. A graph is first read into a small
runtime-neutral :class:`Graph` (canonical op types, constant folding of the *is-constant* property), then
each rule group collects node names:

``head``
    the detection head's box decoding: walking back from the model outputs through every op that is not
    a weighted Conv/MatMul (Concat, Reshape, Split/Slice, Transpose, the DFL Softmax and its fixed Conv (a
    MatMul by the bins in our exports),
    Sigmoid, the anchor/stride arithmetic). The last weighted convs of the head stay quantized.
``head_conv``
    those last weighted convs of the head (the 1x1 convs that write box and class logits): where the walk of
    ``head`` stops. Not in the default (see ``DEFAULT_GROUPS``).
``box``
    the head's box-regression branches: every weighted layer from the neck's outputs to the box logits (the
    ``head_conv`` convs whose output never reaches the class Sigmoid, and the layers before each that only
    that branch reads, up to the feature map the class branch also reads). In the default for heads without DFL
    (:func:`default_groups`).
``kv_matmul``
    MatMuls whose two inputs are both activations (attention products: ``kv = v k^T`` and ``kv q``),
    except those in the ``z`` group.
``z``
    the MLLA normaliser ``z = 1 / (q . mean(k) + eps)``: a reciprocal (``Reciprocal``, ``Div(c, x)``,
    ``Pow(x, -1)``), the ``+eps`` Add and the dot product before it (an activation MatMul in the deploy form,
    ``ReduceSum(q * mean(k))`` in the training form), and the Mul that applies it.
``rope``
    the RoPE multiplies: Mul nodes by a non-scalar constant table on the activation path into an attention
    MatMul (no weighted op in between), plus the Sub/Add/Concat that combine them.
``residual``
    pre-norm residual Adds: ``Add(x, f(norm(x)))`` where ``norm`` is a LayerNorm over channels (``MVN``, or
    ``ReduceMean`` whose input also feeds ``Sub(x, mean)``).

Example:
    >>> from edge_mlla.quantize.scope import ScopePolicy, read_graph
    >>> g = read_graph("yolo11n-mlla.onnx")  # doctest: +SKIP
    >>> sorted(ScopePolicy(("head", "z")).select(g))  # doctest: +SKIP
    ['/model.10/m/m.0/Add_6', '/model.10/m/m.0/MatMul', ...]
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from edge_mlla.errors import ConfigError
from edge_mlla.graph import WEIGHTED, Graph, Node, read_graph  # noqa: F401  (read_graph: part of this module API)

LOGGER = logging.getLogger("edge_mlla")

GROUPS = ("head", "head_conv", "box", "kv_matmul", "z", "rope", "residual")
#: the default: the head's box decoding (for YOLO26's NMS-free head this includes its TopK / GatherElements /
#: FloorMod class-index arithmetic), the MLLA ``z`` normaliser (a reciprocal: it stays float32
#: when the rest runs in INT8) and the two activation x activation MatMuls of linear attention. The accuracy ablation
#: (benchmarks/results/bench_quantize_ablation.md; BCCD val, 640) found no MLLA group measurably sensitive (head+z and
#: head+every MLLA group within 0.4 points of each other, calibration noise); speed decided kv_matmul: OpenVINO runs an INT8 activation MatMul
#: with a generic jit_gemm_i8 kernel (376 us for ``kv @ q`` at 640, AVX2 EPYC, per-layer counters) where the float
#: one is a brgemm (79 us), so keeping it float made the whole INT8 model 0.8% faster. RoPE and residual Adds: INT8.
DEFAULT_GROUPS = ("head", "kv_matmul", "z")
#: added to the default for a head without DFL (YOLO26): its box branch regresses distances directly, so INT8 noise
#: there moves boxes, where a DFL head averages 16 bins. Trained YOLO26n-MLLA, BCCD val, 416, AVX2 EPYC
#: (benchmarks/results/yolo26_int8.md): the NMS-free head's drop 0.88 -> 0.50 points (NNCF accuracy control reverted
#: a box conv first and reached the same score), the NMS head's 0.22 -> -0.13, for 5% latency; on the DFL head of
#: YOLO11n-MLLA it bought 0.1 point for 19% latency, so not there.
DFL_FREE_EXTRA = ("box",)

# -------------------------------------------------------------------------------------------------- rules
def _is_bias_add(g: Graph, n: Node) -> bool:
    """``Add(conv, const)`` that an IR split off a weighted Conv/MatMul (part of that layer)."""
    acts = n.act_inputs()
    return n.type == "Add" and len(acts) == 1 and any(n.const) and g.nodes[acts[0]].type in WEIGHTED


def _is_weighted(n: Node) -> bool:
    return n.type in WEIGHTED and any(n.const)


def head_decode(g: Graph) -> set[str]:
    """Nodes of the box decoding: everything between the model outputs and the head's last weighted layers."""
    out, todo = set(), list(g.outputs)
    while todo:
        name = todo.pop()
        if name in out or name not in g.nodes:
            continue
        n = g.nodes[name]
        if n.type == "Input" or _is_bias_add(g, n):
            continue
        if _is_weighted(n):
            # the DFL conv (fixed 0..15 weights) reads a Softmax: part of decoding; any other weighted op ends it
            if not any(g.nodes[p].type == "Softmax" for p in n.act_inputs()):
                continue
        out.add(name)
        todo.extend(n.act_inputs())
    return out


def head_convs(g: Graph) -> set[str]:
    """The head's last weighted layers: where :func:`head_decode` stops (through an IR's split-off bias Add)."""
    decode, out = head_decode(g), set()
    for name in decode:
        for p in g.nodes[name].act_inputs():
            n = g.nodes.get(p)
            if n is None or p in decode:
                continue
            if _is_bias_add(g, n):  # an IR's split-off bias: the conv behind it is the layer
                n = g.nodes[n.act_inputs()[0]]
            if _is_weighted(n):
                out.add(n.name)
    return out


def box_branch(g: Graph) -> set[str]:
    """Weighted layers of the head's box-regression branches: from each box-logit conv (a :func:`head_convs` conv
    whose output never reaches a Sigmoid) back through every node whose consumers are all in the branch (a SiLU
    written as ``x * sigmoid(x)`` included), so the feature map the class branch also reads ends it."""
    out: set[str] = set()
    for conv in head_convs(g):
        if any(g.nodes[d].type == "Sigmoid" for d in g.descendants(conv)):
            continue  # the class branch
        branch, grew = {conv}, True
        while grew:
            grew = False
            for name in list(branch):
                for p in g.nodes[name].act_inputs():
                    n = g.nodes.get(p)
                    if n is None or p in branch or n.type == "Input":
                        continue
                    if all(c in branch for c in g.consumers.get(p, [])):
                        branch.add(p)
                        grew = True
        out |= {n for n in branch if _is_weighted(g.nodes[n])}
    return out


def has_dfl(g: Graph) -> bool:
    """Whether the head decodes boxes with DFL (a Softmax in its decoding): YOLO11 yes, YOLO26 no."""
    return any(g.nodes[n].type == "Softmax" for n in head_decode(g))


def default_groups(g: Graph, backend: str = "openvino") -> tuple[str, ...]:
    """The default float scope for this graph: ``DEFAULT_GROUPS``, plus ``box`` for a head without DFL where a box
    branch is found, on OpenVINO (the only backend it was measured on; ONNX Runtime keeps ``DEFAULT_GROUPS``)."""
    if backend != "openvino" or has_dfl(g) or not box_branch(g):
        return DEFAULT_GROUPS
    return DEFAULT_GROUPS + DFL_FREE_EXTRA


def _act_matmuls(g: Graph) -> list[Node]:
    return [n for n in g.nodes.values() if n.type == "MatMul" and len(n.act_inputs()) >= 2]


def _is_reciprocal(n: Node) -> bool:
    if n.type == "Reciprocal":
        return True
    if n.type == "Div" and n.const and n.const[0] and len(n.act_inputs()) == 1:
        return True
    if n.type == "Pow" and len(n.const) > 1 and n.const[1] and n.scalars[1] is not None:
        return abs(n.scalars[1] + 1.0) < 1e-6
    return False


def _is_dot_product(g: Graph, n: Node) -> bool:
    """An activation x activation MatMul, or a ReduceSum/ReduceMean of an activation x activation Mul
    (the training form computes ``q . mean(k)`` that way)."""
    if n.type == "MatMul":
        return len(n.act_inputs()) >= 2
    if n.type in ("ReduceSum", "ReduceMean") and len(n.act_inputs()) == 1:
        p = g.nodes[n.act_inputs()[0]]
        return p.type == "Mul" and len(p.act_inputs()) == 2
    return False


def z_normaliser(g: Graph) -> set[str]:
    """Reciprocals of an attention product (``1 / (q . mean(k) + eps)``), their eps Add, MatMul and consumer Mul."""
    out = set()
    for r in g.nodes.values():
        if not _is_reciprocal(r):
            continue
        chain, cur, dot = [r.name], r, False
        for _ in range(3):  # Reciprocal <- Add(eps) <- (MatMul | ReduceSum(Mul(a, b)))
            acts = cur.act_inputs()
            if len(acts) != 1:
                break
            cur = g.nodes[acts[0]]
            chain.append(cur.name)
            dot = _is_dot_product(g, cur)
            if dot:
                break
        if not dot:
            continue
        if cur.type != "MatMul":
            chain.append(cur.act_inputs()[0])  # the elementwise product under the reduction
        out.update(chain)
        out.update(c for c in g.consumers.get(r.name, []) if g.nodes[c].type == "Mul")
    return out


def kv_matmuls(g: Graph) -> set[str]:
    """Activation x activation MatMuls (attention products), minus those of the ``z`` normaliser."""
    z = z_normaliser(g)
    return {n.name for n in _act_matmuls(g) if n.name not in z}


def rope_muls(g: Graph) -> set[str]:
    """Mul-by-table nodes on the path into attention MatMuls, and the Sub/Add/Concat that pair them up."""
    muls: set[str] = set()
    for mm in _act_matmuls(g):
        seen, todo = set(), list(mm.act_inputs())
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            n = g.nodes[name]
            if _is_weighted(n) or _is_bias_add(g, n) or n.type in ("Input", "MVN", "ReduceMean"):
                continue
            if n.type == "Mul" and any(c and s is None for c, s in zip(n.const, n.scalars)):
                muls.add(name)
            todo.extend(n.act_inputs())
    out = set(muls)
    for name in muls:
        for c in g.consumers.get(name, []):
            cn = g.nodes[c]
            if cn.type in ("Add", "Sub") and set(cn.act_inputs()) <= muls:
                out.add(c)
                out.update(cc for cc in g.consumers.get(c, []) if g.nodes[cc].type == "Concat")
    return out


def _norm_inputs(g: Graph) -> set[str]:
    """Producers ``x`` that feed a LayerNorm over channels (MVN, or ReduceMean(x) with Sub(x, mean))."""
    xs = set()
    for n in g.nodes.values():
        acts = n.act_inputs()
        if len(acts) != 1:
            continue
        x = acts[0]
        if n.type == "MVN":
            xs.add(x)
        elif n.type == "ReduceMean":
            if any(g.nodes[c].type == "Sub" and set(g.nodes[c].act_inputs()) == {x, n.name}
                   for c in g.consumers.get(n.name, [])):  # fmt: skip
                xs.add(x)
    return xs


def residual_adds(g: Graph) -> set[str]:
    """Pre-norm residual Adds ``x + f(norm(x))`` (the MLLA block's two skip connections)."""
    out = set()
    for x in _norm_inputs(g):
        below = None
        for c in g.consumers.get(x, []):
            cn = g.nodes[c]
            if cn.type != "Add" or len(cn.act_inputs()) != 2:
                continue
            other = [p for p in cn.act_inputs() if p != x]
            if not other:
                continue
            below = below if below is not None else g.descendants(x)
            if other[0] in below:
                out.add(c)
    return out


_RULES = {"head": head_decode, "head_conv": head_convs, "box": box_branch, "kv_matmul": kv_matmuls, "z": z_normaliser, "rope": rope_muls,
          "residual": residual_adds}  # fmt: skip


@dataclass(frozen=True)
class ScopePolicy:
    """The rule groups whose nodes stay in float (see the module docstring); ``GROUPS`` lists them all.

    Example:
        >>> ScopePolicy.parse("head,z").groups
        ('head', 'z')
        >>> ScopePolicy.parse("none").groups
        ()
    """

    groups: tuple[str, ...] = DEFAULT_GROUPS

    def __post_init__(self) -> None:
        bad = [x for x in self.groups if x not in GROUPS]
        if bad:
            raise ConfigError(f"unknown ignored-scope group(s) {bad}; expected any of {list(GROUPS)}")

    @classmethod
    def parse(cls, spec: str | Iterable[str] | ScopePolicy | None) -> ScopePolicy:
        """From ``"head,z"``, ``"all"`` (every group, ``head_conv`` and ``box`` included), ``"none"``, ``"default"``,
        a list of groups, a policy, or None. ``"default"``/None give ``DEFAULT_GROUPS`` here; ``quantize()`` resolves
        them per graph instead (:func:`default_groups`: ``box`` added for a head without DFL)."""
        if isinstance(spec, ScopePolicy):
            return spec
        if spec is None or spec == "default":
            return cls()
        if isinstance(spec, str):
            if spec == "all":
                return cls(GROUPS)
            if spec in ("none", ""):
                return cls(())
            spec = [s.strip() for s in spec.split(",") if s.strip()]
        if not isinstance(spec, Iterable):
            raise ConfigError(f"ignored scope must be a group list like 'head,z', got {type(spec).__name__}")
        return cls(tuple(dict.fromkeys(spec)))

    def select_groups(self, g: Graph) -> dict[str, set[str]]:
        """Group -> node names it keeps in float, for this graph."""
        return {grp: _RULES[grp](g) for grp in self.groups}

    def select(self, g: Graph) -> set[str]:
        """All node names this policy keeps in float."""
        out: set[str] = set()
        for names in self.select_groups(g).values():
            out |= names
        if not out and self.groups:
            LOGGER.warning("ignored-scope policy %s matched no node in %s", self.groups, g.source)
        return out

    def describe(self, g: Graph) -> dict[str, dict[str, int]]:
        """Group -> {canonical op type: count} of the nodes it keeps in float (for reports)."""
        return {grp: dict(Counter(g.nodes[n].type for n in names)) for grp, names in self.select_groups(g).items()}
