"""torch -> ONNX / OpenVINO IR for YOLO11(-MLLA) detectors, with metadata and an op audit.

:func:`export` loads a checkpoint (ours or a stock Ultralytics one), re-parameterizes it
(:mod:`edge_mlla.nn.reparam`), binds the MLLA RoPE tables to the export size, traces it with the
TorchScript ONNX exporter (as Ultralytics does), simplifies with onnxslim, checks with
``onnx.checker`` and writes metadata (:mod:`edge_mlla.modelfile`). OpenVINO IR is converted
from that ONNX graph. The output is the Ultralytics export layout: input ``images``
(B, 3, H, W) float in [0, 1], output ``output0`` (B, 4 + nc, A) with xywh boxes in input
pixels and sigmoid class scores.

The package: this module orchestrates (load -> re-parameterize -> bind -> metadata -> write atomically);
:mod:`.head` swaps the head's ``DFL`` for a transpose-free form of the same arithmetic; :mod:`.to_onnx` traces,
simplifies and (for ``half``) converts the graph to fp16; :mod:`.to_openvino` converts to IR; :mod:`.audit` (:func:`op_audit`) lists the op types of an exported graph and the nodes inside MLLA blocks.

Example:
    >>> from edge_mlla.export import export, op_audit
    >>> onnx_path = export("best.pt", format="onnx", imgsz=640)  # doctest: +SKIP
    >>> op_audit(onnx_path).mlla_violations()  # doctest: +SKIP
    []

Imports inside functions: torch, Ultralytics and the model side load when :func:`export` runs (start-up time of
``import edge_mlla.export`` and of the CLI).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from edge_mlla._env import setup_offline

setup_offline()  # before anything imports Ultralytics / OpenVINO

from edge_mlla._io import ensure_writable_dir  # noqa: E402
from edge_mlla.errors import ConfigError, InputTypeError  # noqa: E402
from edge_mlla.export.audit import MLLA_FORBIDDEN, OpAudit, op_audit, op_types  # noqa: E402
from edge_mlla.export.to_onnx import to_onnx  # noqa: E402
from edge_mlla.export.to_openvino import to_openvino  # noqa: E402
from edge_mlla.modelfile import replace_dir  # noqa: E402
from edge_mlla.nn.load import load_detector  # noqa: E402  (re-exported: export's loader is the model side's)

LOGGER = logging.getLogger("edge_mlla")

__all__ = ["FORMATS", "OPSET", "export", "load_detector", "op_types", "op_audit", "OpAudit", "MLLA_FORBIDDEN"]

FORMATS = ("onnx", "openvino")
OPSET = 17  # LayerNorm-free graph; 17 is what ORT 1.2x and OpenVINO 202x both read fully
MAX_OPSET = 21

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
    imgsz: int | tuple[int, int] | None = None,
    batch: int = 1,
    dynamic: bool = False,
    half: bool = False,
    output: str | os.PathLike | None = None,
    simplify: bool = True,
    opset: int = OPSET,
    reparameterize: bool = True,
    end2end: bool | None = None,
) -> Path:
    """Export a detector to ONNX or OpenVINO IR and return the model file's path.

    Args:
        checkpoint: Ultralytics ``.pt`` (YOLO11-MLLA or stock YOLO), or a ``YOLO`` / ``DetectionModel``.
        format: ``"onnx"`` (-> ``<output>/<stem>.onnx``) or ``"openvino"``
            (-> ``<output>/<stem>_openvino_model/<stem>.xml`` + ``.bin`` + ``metadata.yaml``).
        imgsz: input size, int or (height, width); each side a multiple of the model's max stride (32).
            Default: the size the checkpoint was trained at (640 when it does not say). Another size than the
            training size works, with a warning: objects then appear at another scale than the model learnt.
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
        end2end: for heads with a one-to-one branch (YOLO26): ``True`` exports the NMS-free head, output
            ``(B, max_det, 6)`` = ``x1, y1, x2, y2, score, class`` in input pixels; ``None`` (Ultralytics'
            own export and val default) and ``False`` export the one-to-many head (``(B, 4 + nc, A)``, NMS
            afterwards), the more accurate of the two on our trained YOLO26n-MLLA (docs/model.md, "YOLO26"). Heads
            without that branch: ``None``/``False`` leave them as they are, ``True`` is a ConfigError.

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
    from edge_mlla.nn.load import train_imgsz

    hw = export_size(imgsz, train_imgsz(model), stride)
    out_dir = _output_dir(output, checkpoint)
    stem = Path(checkpoint).stem if isinstance(checkpoint, (str, os.PathLike)) else "model"

    _select_head(model, end2end, stem)
    model = _prepare(model, hw, batch, dynamic, reparameterize)
    metadata = _metadata(model, hw, batch, dynamic, half, stride, reparameterize)
    with tempfile.TemporaryDirectory(prefix=".edge_mlla_export_", dir=out_dir) as tmp:
        tmp = Path(tmp)
        onnx_tmp = tmp / f"{stem}.onnx"
        to_onnx(model, hw, batch, dynamic, simplify, opset, metadata, onnx_tmp, half=half and fmt == "onnx")
        if fmt == "onnx":
            target = out_dir / f"{stem}.onnx"
            os.replace(onnx_tmp, target)
        else:
            ov_tmp = tmp / f"{stem}_openvino_model"
            to_openvino(onnx_tmp, ov_tmp / f"{stem}.xml", metadata, half)
            target_dir = out_dir / ov_tmp.name
            replace_dir(ov_tmp, target_dir)
            target = target_dir / f"{stem}.xml"
    LOGGER.debug("exported %s (%s, imgsz %sx%s, batch %s%s%s)", target, fmt, *hw, batch,
                ", dynamic" if dynamic else "", ", fp16" if half else "")  # fmt: skip
    return target


def _select_head(model, end2end: object, stem: str) -> None:
    """Pick a YOLO26 head's branch before fusion drops the other one (None: Ultralytics' default, the NMS head)."""
    if end2end is not None and not isinstance(end2end, bool):
        raise ConfigError(f"end2end must be True, False or None, got {end2end!r}")
    if getattr(model.model[-1], "one2one_cv2", None) is not None:
        model.end2end = end2end is True  # None: as Ultralytics' exporter and validator (nms=None -> one2many)
    elif end2end:
        raise ConfigError(f"end2end=True but {stem} has no one-to-one (NMS-free) head; YOLO26 models have one")


def export_size(imgsz: object, trained: int | None, stride: int = 32) -> tuple[int, int]:
    """The (height, width) to export at: ``imgsz``, or the training size when it is None (640 when unknown). Another
    size than the training size is allowed, with a warning that says what it may cost.

    Example:
        >>> export_size(None, 416), export_size(None, None), export_size("384x640", None)
        ((416, 416), (640, 640), (384, 640))
    """
    from edge_mlla.nn.reparam import normalize_imgsz

    hw = normalize_imgsz(imgsz if imgsz is not None else (trained or 640), stride=stride)
    if imgsz is not None and trained and hw != (trained, trained):
        LOGGER.warning(
            "exporting at %sx%s, but the model was trained at %s: objects appear %.2fx the size it learnt, which may "
            "cost accuracy (and INT8 calibration); omit imgsz to export at the training size", *hw, trained,
            max(hw) / trained,
        )  # fmt: skip
    return hw


def _prepare(model, hw: tuple[int, int], batch: int, dynamic: bool, reparam: bool = True):
    import torch
    from ultralytics.nn.modules import Detect

    from edge_mlla.nn.reparam import fuse_conv_bn, bind, reparameterize

    if reparam:
        model = reparameterize(model, inplace=True)
        bind(model, None if dynamic else hw, dynamic=dynamic)
    else:
        with torch.no_grad():
            fuse_conv_bn(model)
    for m in model.modules():
        if isinstance(m, Detect):
            m.dynamic, m.export, m.format, m.shape = dynamic, True, "onnx", None
            m.xyxy = False  # (B, 4 + nc, A) xywh for NMS heads; end-to-end heads (YOLO26) give (B, max_det, 6) xyxy
            m.agnostic_nms = False
            m.max_det = min(getattr(m, "max_det", 300), sum((hw[0] // int(s)) * (hw[1] // int(s)) for s in model.stride))
    from edge_mlla.export.blocks import split_cv1
    from edge_mlla.export.head import swap_dfl

    swap_dfl(model)  # the box decoding without DFL's transpose (same numbers; cheaper in OpenVINO)
    split_cv1(model)  # split blocks' first conv as two: no channel split in the graph (same numbers)
    for p in model.parameters():
        p.requires_grad_(False)
    return model  # no dry run: bind() ran the model once already and the trace runs it again


def _metadata(model, hw, batch, dynamic, half, stride, reparam: bool = True) -> dict[str, str]:
    from edge_mlla.modelfile import make_metadata
    from edge_mlla.nn.load import train_imgsz
    from edge_mlla.nn.reparam import deploy_blocks

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
        precision="f16" if half else "f32",
        dynamic=dynamic,
        mlla_blocks=len(deploy_blocks(model)),
        train_imgsz=train_imgsz(model),  # quantize warns when the model runs at another size
    )
    # Keys Ultralytics' AutoBackend also reads (nn/backends/base.py: apply_metadata): its export args and head.
    md.setdefault("args", str({"batch": batch, "dynamic": dynamic, "half": half, "nms": False}))
    md.setdefault("channels", "3")
    md.setdefault("end2end", str(bool(getattr(model, "end2end", False))))
    return md


