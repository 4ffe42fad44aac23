"""torch -> ONNX / OpenVINO IR for YOLO11(-MLLA) detectors, with metadata and an op audit.

:func:`export` loads a checkpoint (ours or a stock Ultralytics one), re-parameterizes it
(:mod:`edge_mlla.reparam`), binds the MLLA RoPE tables to the export size, traces it with the
TorchScript ONNX exporter (as Ultralytics does), simplifies with onnxslim, checks with
``onnx.checker`` and writes metadata (:mod:`edge_mlla.metadata`). OpenVINO IR is converted
from that ONNX graph. The output is the Ultralytics export layout: input ``images``
(B, 3, H, W) float in [0, 1], output ``output0`` (B, 4 + nc, A) with xywh boxes in input
pixels and sigmoid class scores.

:func:`op_audit` lists the op types of an exported graph and the nodes inside MLLA blocks.

Example:
    >>> from edge_mlla.export import export, op_audit
    >>> onnx_path = export("best.pt", format="onnx", imgsz=640)  # doctest: +SKIP
    >>> op_audit(onnx_path).mlla_violations()  # doctest: +SKIP
    []
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
import tempfile
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from edge_mlla._env import setup_offline

setup_offline()  # before anything imports Ultralytics / OpenVINO

from edge_mlla._io import ensure_writable_dir
from edge_mlla.metadata import attach_openvino_metadata, write_metadata_yaml
from edge_mlla.errors import (  # noqa: E402
    ConfigError,
    ExportError,
    InputTypeError,
    MissingFileError,
    ModelFileError,
)

LOGGER = logging.getLogger("edge_mlla")

__all__ = ["FORMATS", "OPSET", "export", "load_detector", "op_types", "op_audit", "OpAudit", "MLLA_FORBIDDEN"]

FORMATS = ("onnx", "openvino")
OPSET = 17  # LayerNorm-free graph; 17 is what ORT 1.2x and OpenVINO 202x both read fully
MAX_OPSET = 21

#: op types never allowed inside an MLLA block of a static export
MLLA_FORBIDDEN = frozenset(
    {
        "Cos", "Sin", "Shape", "Size", "Range", "ConstantOfShape", "Einsum",
        "DFT", "STFT", "Complex", "Real", "Imag",
    }
)  # fmt: skip


# ------------------------------------------------------------------------------------------------ loading
def load_detector(checkpoint: object):
    """A float32 eval-mode Ultralytics ``DetectionModel`` from a ``.pt`` path, a ``YOLO`` or an ``nn.Module``.

    Raises MissingFileError (no such file), ModelFileError (not a loadable checkpoint, or not a
    detector). Never downloads: a bare name that is not a file is an error.

    Example:
        >>> model = load_detector("runs/n640/weights/best.pt")  # doctest: +SKIP
    """
    import edge_mlla.nn  # noqa: F401  registers C2MLLA so our checkpoints unpickle
    import torch

    if isinstance(checkpoint, (str, os.PathLike)):
        path = Path(checkpoint)
        if not path.is_file():
            raise MissingFileError(f"checkpoint not found: {path} (expected an Ultralytics .pt file)")
        if path.suffix != ".pt":
            raise ModelFileError(f"checkpoint must be an Ultralytics .pt file, got {path.name!r}")
        from ultralytics.nn.tasks import load_checkpoint

        try:
            model, _ = load_checkpoint(str(path), device="cpu", fuse=False)
        except Exception as e:  # TypeError/RuntimeError/EOFError/UnpicklingError/...: all mean "cannot read it"
            raise ModelFileError(f"{path} is not a loadable Ultralytics checkpoint: {type(e).__name__}: {e}") from e
        where = str(path)
    else:
        from edge_mlla.reparam import _unwrap

        try:
            inner = _unwrap(checkpoint)
        except InputTypeError:
            raise InputTypeError(
                f"export() takes a .pt path, an Ultralytics YOLO or a DetectionModel, got {type(checkpoint).__name__}"
            ) from None
        model, where = copy.deepcopy(inner).float(), type(checkpoint).__name__
    _check_detector(model, where)
    return model.float().eval().to(torch.device("cpu"))


def _check_detector(model: object, where: str) -> None:
    from ultralytics.nn.modules import Detect
    from ultralytics.nn.tasks import DetectionModel

    head = getattr(model, "model", None)
    head = head[-1] if head is not None and hasattr(head, "__getitem__") and len(head) else None
    task = getattr(model, "task", "detect")
    if not isinstance(model, DetectionModel) or not isinstance(head, Detect) or task != "detect":
        raise ModelFileError(
            f"{where} is not an object detector (task={task!r}, head={type(head).__name__}): "
            "export() needs an Ultralytics detection model (Detect head)"
        )
    if type(head) is not Detect:
        raise ModelFileError(f"{where} has a {type(head).__name__} head; export() supports plain Detect heads")


# ----------------------------------------------------------------------------------------------- validation
def _check_args(fmt: object, batch: object, dynamic: object, half: object, simplify: object, opset: object) -> str:
    if not isinstance(fmt, str) or fmt.lower() not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise ConfigError(f"batch must be a positive int, got {batch!r}")
    for name, val in (("dynamic", dynamic), ("half", half), ("simplify", simplify)):
        if not isinstance(val, bool):
            raise ConfigError(f"{name} must be True or False, got {val!r}")
    if not isinstance(opset, int) or isinstance(opset, bool) or not OPSET <= opset <= MAX_OPSET:
        raise ConfigError(f"opset must be an int in [{OPSET}, {MAX_OPSET}], got {opset!r}")
    return fmt.lower()


def _output_dir(output: object, checkpoint: object) -> Path:
    if output is None:
        base = Path(checkpoint).parent if isinstance(checkpoint, (str, os.PathLike)) else Path.cwd()
    elif isinstance(output, (str, os.PathLike)):
        base = Path(output)
    else:
        raise InputTypeError(f"output must be a folder path or None, got {type(output).__name__}")
    return ensure_writable_dir(base)


# --------------------------------------------------------------------------------------------------- export
def export(
    checkpoint: str | os.PathLike | object,
    format: str = "onnx",  # noqa: A002  (the CLI's and Ultralytics' name)
    imgsz: int | tuple[int, int] = 640,
    batch: int = 1,
    dynamic: bool = False,
    half: bool = False,
    output: str | os.PathLike | None = None,
    simplify: bool = True,
    opset: int = OPSET,
    reparameterize: bool = True,
) -> Path:
    """Export a detector to ONNX or OpenVINO IR and return the model file's path.

    Args:
        checkpoint: Ultralytics ``.pt`` (YOLO11-MLLA or stock YOLO), or a ``YOLO`` / ``DetectionModel``.
        format: ``"onnx"`` (-> ``<output>/<stem>.onnx``) or ``"openvino"``
            (-> ``<output>/<stem>_openvino_model/<stem>.xml`` + ``.bin`` + ``metadata.yaml``).
        imgsz: input size, int or (height, width); each side a multiple of the model's max stride (32).
        batch: batch size of a static export (the example batch of a dynamic one).
        dynamic: dynamic batch, height and width; MLLA blocks then compute RoPE tables from the
            input shape (adds Shape/Gather/Range/Cos/Sin/arithmetic nodes, see :class:`MLLABlockDeploy`).
        half: fp16 weights (OpenVINO ``compress_to_fp16``; ONNX converted to float16 with float32
            I/O, the MLLA ``z`` division kept in float32).
        output: output folder (created); default: the checkpoint's folder (cwd for in-memory models).
        simplify: run onnxslim.
        opset: ONNX opset, 17..21.
        reparameterize: convert to the deploy form first (default). ``False`` exports the training
            form (Conv+BN still fused), for comparisons such as node counts and latency.

    Raises:
        MissingFileError, ModelFileError, ConfigError, OutputNotWritableError, ExportError.
        A failed export leaves any earlier file at the target path untouched.

    Example:
        >>> p = export("best.pt", format="openvino", imgsz=(384, 640))  # doctest: +SKIP
        >>> p.name  # doctest: +SKIP
        'best.xml'
    """
    fmt = _check_args(format, batch, dynamic, half, simplify, opset)
    if not isinstance(reparameterize, bool):
        raise ConfigError(f"reparameterize must be True or False, got {reparameterize!r}")
    model = load_detector(checkpoint)  # MissingFileError / ModelFileError before touching the output folder
    stride = int(max(int(s) for s in model.stride.tolist())) if hasattr(model, "stride") else 32
    from edge_mlla.reparam import normalize_imgsz

    hw = normalize_imgsz(imgsz, stride=stride)
    out_dir = _output_dir(output, checkpoint)
    stem = Path(checkpoint).stem if isinstance(checkpoint, (str, os.PathLike)) else "model"

    model = _prepare(model, hw, batch, dynamic, reparameterize)
    metadata = _metadata(model, hw, batch, dynamic, half, stride, reparameterize)
    with tempfile.TemporaryDirectory(prefix=".edge_mlla_export_", dir=out_dir) as tmp:
        tmp = Path(tmp)
        onnx_tmp = tmp / f"{stem}.onnx"
        _to_onnx(model, hw, batch, dynamic, simplify, opset, metadata, onnx_tmp, half=half and fmt == "onnx")
        if fmt == "onnx":
            target = out_dir / f"{stem}.onnx"
            os.replace(onnx_tmp, target)
        else:
            ov_tmp = tmp / f"{stem}_openvino_model"
            _to_openvino(onnx_tmp, ov_tmp / f"{stem}.xml", metadata, half)
            target_dir = out_dir / ov_tmp.name
            _replace_dir(ov_tmp, target_dir)
            target = target_dir / f"{stem}.xml"
    LOGGER.info("exported %s (%s, imgsz %sx%s, batch %s%s%s)", target, fmt, *hw, batch,
                ", dynamic" if dynamic else "", ", fp16" if half else "")  # fmt: skip
    return target


def _prepare(model, hw: tuple[int, int], batch: int, dynamic: bool, reparam: bool = True):
    import torch
    from ultralytics.nn.modules import Detect

    from edge_mlla.reparam import fuse_conv_bn, bind, reparameterize

    if reparam:
        model = reparameterize(model, inplace=True)
        bind(model, None if dynamic else hw, dynamic=dynamic)
    else:
        with torch.no_grad():
            fuse_conv_bn(model)
    for m in model.modules():
        if isinstance(m, Detect):
            m.dynamic, m.export, m.format, m.shape = dynamic, True, "onnx", None
            m.xyxy = False
            m.max_det = min(getattr(m, "max_det", 300), sum((hw[0] // int(s)) * (hw[1] // int(s)) for s in model.stride))
    for p in model.parameters():
        p.requires_grad_(False)
    return model  # no dry run: bind() ran the model once already and the trace runs it again


def _metadata(model, hw, batch, dynamic, half, stride, reparam: bool = True) -> dict[str, str]:
    from edge_mlla.metadata import make_metadata
    from edge_mlla.reparam import deploy_blocks

    names = getattr(model, "names", None) or {i: str(i) for i in range(model.model[-1].nc)}
    if isinstance(names, (list, tuple)):
        names = dict(enumerate(names))
    md = make_metadata(
        names,
        stride,
        hw,
        batch=batch,
        task="detect",
        reparameterized=bool(reparam),
        precision="fp16" if half else "fp32",
        dynamic=dynamic,
        mlla_blocks=len(deploy_blocks(model)),
    )
    # Keys Ultralytics' AutoBackend also reads (nn/backends/base.py: apply_metadata): its export args and head.
    md.setdefault("args", str({"batch": batch, "dynamic": dynamic, "half": half, "nms": False}))
    md.setdefault("channels", "3")
    md.setdefault("end2end", "False")
    return md


def _to_onnx(model, hw, batch, dynamic, simplify, opset, metadata, path: Path, half: bool) -> None:
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
    if half:
        graph = _onnx_to_fp16(graph)
    del graph.metadata_props[:]
    for k, v in metadata.items():
        prop = graph.metadata_props.add()
        prop.key, prop.value = k, v
    if graph.ir_version > 10:  # ORT reads IR <= 10 (same cap as Ultralytics' exporter)
        graph.ir_version = 10
    try:
        onnx.checker.check_model(graph)
    except Exception as e:
        raise ExportError(f"exported ONNX graph fails onnx.checker: {e}") from e
    onnx.save(graph, str(path))


def _onnx_to_fp16(graph):
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


def _to_openvino(onnx_path: Path, xml: Path, metadata: dict[str, str], half: bool) -> None:
    import openvino as ov

    try:
        ov_model = ov.convert_model(str(onnx_path))
        _keep_z_in_fp32(ov_model)
        attach_openvino_metadata(ov_model, metadata)
        xml.parent.mkdir(parents=True, exist_ok=True)
        ov.save_model(ov_model, str(xml), compress_to_fp16=half)
    except Exception as e:
        raise ExportError(f"OpenVINO conversion failed: {type(e).__name__}: {e}") from e
    write_metadata_yaml(xml.parent, metadata)


def _keep_z_in_fp32(ov_model) -> int:
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


def _replace_dir(src: Path, dst: Path) -> None:
    """Move a finished folder into place; an existing one is swapped out only after the new one is complete."""
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(dst, old)
    try:
        os.replace(src, dst)
    except OSError:
        if old is not None:
            os.replace(old, dst)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ op audit
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
    """Op type -> count of an ``.onnx`` graph or an OpenVINO ``.xml`` IR.

    Example:
        >>> op_types("best.onnx")["Conv"]  # doctest: +SKIP
        88
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"model file not found: {path}")
    if path.suffix == ".onnx":
        import onnx

        return Counter(n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node)
    if path.suffix == ".xml":
        import openvino as ov

        return Counter(op.get_type_name() for op in ov.Core().read_model(str(path)).get_ops())
    raise ModelFileError(f"op_types() reads .onnx or OpenVINO .xml files, got {path.name!r}")


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
    import onnx

    path = Path(path)
    if not path.is_file() or path.suffix != ".onnx":
        raise MissingFileError(f"op_audit() needs an existing .onnx file, got {path}")
    graph = onnx.load(str(path), load_external_data=False).graph
    audit = OpAudit(path=path)
    consumers: dict[str, list[tuple[object, int]]] = {}
    for node in graph.node:
        for idx, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, idx))
    scopes = _block_scopes([n.name for n in graph.node])
    blocks = set()
    for node in graph.node:
        audit.ops[node.op_type] += 1
        blk = next((s for s in scopes if node.name.startswith(s + "/")), None)
        if blk is None:
            continue
        blocks.add(blk)
        audit.mlla_ops[node.op_type] += 1
        audit.mlla_nodes.append((node.name, node.op_type))
        if node.op_type == "Transpose":
            uses = [u for o in node.output for u in consumers.get(o, [])]
            ok = bool(uses) and all(n.op_type == "MatMul" and idx == 1 for n, idx in uses)
            audit.mlla_transposes.setdefault(blk, []).append((node.name, ok))
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
    import openvino as ov

    if not xml.is_file():
        raise MissingFileError(f"OpenVINO IR not found: {xml}")
    model = ov.Core().read_model(str(xml))
    audit.openvino_ops, audit.openvino_mlla_ops, audit.openvino_matmul_transpose_b = Counter(), Counter(), 0
    for op in model.get_ops():
        kind, name = op.get_type_name(), op.get_friendly_name()
        audit.openvino_ops[kind] += 1
        if kind != "Constant" and any(name.startswith(s + "/") for s in scopes):
            audit.openvino_mlla_ops[kind] += 1
            if kind == "MatMul" and op.get_attributes().get("transpose_b"):
                audit.openvino_matmul_transpose_b += 1
