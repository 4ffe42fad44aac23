"""Training form -> deploy form: one walker for any model (ours or stock Ultralytics).

:func:`reparameterize` replaces every sub-module that defines ``reparameterize()`` by what that
method returns (for MLLA: :class:`~edge_mlla.nn.modules.MLLABlockDeploy`), then applies
Ultralytics' Conv+BN fusion. :func:`bind` fixes the RoPE table sizes of every deploy block for
an input size (what a static export needs) or switches them to shape-driven (dynamic export).

Example:
    >>> import edge_mlla.nn
    >>> from ultralytics import YOLO
    >>> from edge_mlla.reparam import reparameterize, bind
    >>> yolo = YOLO("yolo11n-mlla.yaml")  # doctest: +SKIP
    >>> deploy = reparameterize(yolo.model)  # a copy; yolo.model is untouched  # doctest: +SKIP
    >>> sizes = bind(deploy, 640)  # {'model.10.m.0': (20, 20), ...}  # doctest: +SKIP

Imports inside functions: Ultralytics and our modules load when a model is converted (start-up time).
"""

from __future__ import annotations

import copy
import logging
from typing import TypeVar

from edge_mlla._env import setup_offline

setup_offline()  # before anything imports Ultralytics

import torch  # noqa: E402
from torch import nn  # noqa: E402

from edge_mlla.errors import InputTypeError  # noqa: E402

LOGGER = logging.getLogger("edge_mlla")
M = TypeVar("M", bound=nn.Module)

__all__ = ["reparameterize", "bind", "deploy_blocks", "fuse_conv_bn", "is_reparameterized", "normalize_imgsz"]


def _unwrap(model: object) -> nn.Module:
    """The ``nn.Module`` inside a ``YOLO`` object (``yolo.model``), or the module itself."""
    inner = getattr(model, "model", None)
    if type(model).__name__ in {"YOLO", "Model"} or (
        isinstance(inner, nn.Module) and hasattr(model, "predictor") and hasattr(model, "overrides")
    ):
        if not isinstance(inner, nn.Module):
            raise InputTypeError(f"{type(model).__name__} holds no torch model (got {type(inner).__name__})")
        return inner
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"reparameterize() expects a torch nn.Module or an Ultralytics YOLO, got {type(model).__name__}")
    return model


def _swap_children(module: nn.Module) -> int:
    """Depth-first: replace each child that has ``reparameterize()`` by its result. Returns the count swapped."""
    count = 0
    for name, child in list(module.named_children()):
        fn = getattr(child, "reparameterize", None)
        if callable(fn):
            new = fn()
            if not isinstance(new, nn.Module):
                raise InputTypeError(f"{type(child).__name__}.reparameterize() returned {type(new).__name__}, not a Module")
            if new is not child:
                setattr(module, name, new)
                count += 1
            if new is child:  # deploy forms return themselves; still walk inside them
                count += _swap_children(child)
        else:
            count += _swap_children(child)
    return count


def fuse_conv_bn(module: nn.Module) -> None:
    """Ultralytics' Conv+BN fusion: the model's own ``fuse()`` when it has one, else the same per-module steps."""
    fuse = getattr(module, "fuse", None)
    if callable(fuse) and hasattr(module, "is_fused"):  # an Ultralytics BaseModel
        module.fuse(verbose=False)
        return
    from ultralytics.nn.modules import Conv, Conv2, DWConv, RepConv
    from ultralytics.utils.torch_utils import fuse_conv_and_bn

    for m in module.modules():
        if isinstance(m, (Conv, Conv2, DWConv)) and hasattr(m, "bn"):
            if isinstance(m, Conv2):
                m.fuse_convs()
            m.conv = fuse_conv_and_bn(m.conv, m.bn)
            delattr(m, "bn")
            m.forward = m.forward_fuse
        elif isinstance(m, RepConv) and hasattr(m, "conv1"):
            m.fuse_convs()
            m.forward = m.forward_fuse


def reparameterize(model: M, inplace: bool = False, fuse: bool = True) -> M:
    """Deploy form of ``model``: every module with ``reparameterize()`` swapped for its result, Conv+BN fused.

    Works on a deep copy unless ``inplace=True`` (then ``model`` itself is converted and returned).
    Accepts an ``nn.Module`` (a DetectionModel, a C2MLLA, a single block, ...) or an Ultralytics
    ``YOLO`` object (its ``.model`` is converted; a YOLO is returned). The result is in eval mode
    and still runs in Ultralytics (predict/val/export). Safe to call twice: deploy forms return
    themselves and a fused model has nothing left to fuse.

    Example:
        >>> import torch, edge_mlla.nn
        >>> from edge_mlla.nn import C2MLLA
        >>> m = C2MLLA(64, 64).eval()
        >>> d = reparameterize(m)
        >>> x = torch.randn(1, 64, 8, 12)
        >>> bool((m(x) - d(x)).abs().max() < 1e-5)
        True
    """
    if not isinstance(inplace, bool):
        raise InputTypeError(f"inplace must be a bool, got {inplace!r}")
    inner = _unwrap(model)
    if not inplace:
        if inner is model:
            model = inner = copy.deepcopy(inner)
        else:
            new_inner = copy.deepcopy(inner)
            model = copy.copy(model)  # shallow YOLO copy that owns the converted module
            object.__setattr__(model, "_modules", dict(model._modules))
            model.model = new_inner
            if hasattr(model, "predictor"):
                model.predictor = None  # a cached predictor holds the old module; let Ultralytics rebuild it
            inner = new_inner
    inner.eval()
    fn = getattr(inner, "reparameterize", None)
    if callable(fn):  # the root itself is a block (e.g. an MLLABlock)
        new = fn()
        if new is not inner:
            if model is not inner:
                raise InputTypeError("a YOLO object's root model cannot itself be re-parameterized")
            LOGGER.debug("re-parameterized root %s", type(inner).__name__)
            return new.eval()
    n = _swap_children(inner)
    with torch.no_grad():
        if fuse:
            fuse_conv_bn(inner)
    inner.eval()
    LOGGER.debug("re-parameterized %d module(s) in %s", n, type(inner).__name__)
    return model


def deploy_blocks(model: nn.Module) -> dict[str, nn.Module]:
    """Deploy-form MLLA blocks of ``model`` by module path (``model.10.m.0`` ...)."""
    from edge_mlla.nn.modules import MLLABlockDeploy

    inner = _unwrap(model)
    return {name: m for name, m in inner.named_modules() if isinstance(m, MLLABlockDeploy)}


def is_reparameterized(model: nn.Module) -> bool:
    """True when ``model`` has no module left that ``reparameterize()`` would change."""
    from edge_mlla.nn.modules import MLLABlock

    inner = _unwrap(model)
    return not any(isinstance(m, MLLABlock) for m in inner.modules())


def normalize_imgsz(imgsz: int | tuple[int, int] | list[int] | str, stride: int = 32) -> tuple[int, int]:
    """``imgsz`` as (height, width), checked: positive ints, each a multiple of the model's max ``stride``
    (:func:`edge_mlla.ops.parse_imgsz`, the one parser of the library and the CLI).

    Example:
        >>> normalize_imgsz(640)
        (640, 640)
        >>> normalize_imgsz("384x640")
        (384, 640)
    """
    from edge_mlla.ops import parse_imgsz

    return parse_imgsz(imgsz, stride=stride)


@torch.no_grad()
def bind(model: nn.Module, imgsz: int | tuple[int, int] | None, dynamic: bool = False) -> dict[str, tuple[int, int]]:
    """Bind every deploy MLLA block's RoPE tables to the feature size it sees for an ``imgsz`` input.

    Runs one forward pass of a zero image (batch 1) to learn each block's feature size, so it works
    for any architecture. With ``dynamic=True`` the blocks compute their tables from the input shape
    instead (what a dynamic-shape export needs) and ``imgsz`` may be None. Returns
    ``{module path: (h, w)}`` (empty when dynamic or when there is no deploy block).

    Example:
        >>> import edge_mlla.nn
        >>> from edge_mlla.nn import C2MLLA
        >>> d = reparameterize(C2MLLA(64, 64))
        >>> bind(d, (64, 96))
        {'m.0': (64, 96)}
    """
    blocks = deploy_blocks(model)
    for blk in blocks.values():
        blk.dynamic = bool(dynamic)
        if dynamic:
            blk.bound = None
    if dynamic or not blocks:
        return {}
    inner = _unwrap(model)
    h, w = normalize_imgsz(imgsz, stride=1)
    seen: dict[str, tuple[int, int]] = {}
    hooks = [
        blk.register_forward_pre_hook(lambda m, args, _n=name: seen.__setitem__(_n, tuple(args[0].shape[-2:])))
        for name, blk in blocks.items()
    ]
    try:
        for blk in blocks.values():
            blk.bound = None
        p = next(inner.parameters(), None)
        first = _first_conv(inner)
        c_in = first.in_channels if first is not None else 3
        x = torch.zeros(1, c_in, h, w, device=p.device if p is not None else "cpu", dtype=p.dtype if p is not None else None)
        was_training = inner.training
        inner.eval()
        inner(x)
        inner.train(was_training)
    finally:
        for hk in hooks:
            hk.remove()
    for name, (bh, bw) in seen.items():
        blocks[name].bind(int(bh), int(bw))
    missing = sorted(set(blocks) - set(seen))
    if missing:
        LOGGER.warning("deploy MLLA blocks not reached by a forward pass, left unbound: %s", missing)
    return {k: (int(v[0]), int(v[1])) for k, v in seen.items()}


def _first_conv(module: nn.Module) -> nn.Conv2d | None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            return m
    return None
