"""Load an Ultralytics detection checkpoint for export or inference, never downloading (imports torch).

The one loader the model side uses: :mod:`edge_mlla.export` and the torch runtime backend
(:mod:`edge_mlla.runtimes.torch`) both call :func:`load_detector`.

Example:
    >>> from edge_mlla.nn.load import load_detector
    >>> model = load_detector("runs/n640/weights/best.pt")  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import os
import zipfile
from pathlib import Path

from edge_mlla._env import setup_offline

setup_offline()  # before anything imports Ultralytics

from edge_mlla.errors import InputTypeError, MissingFileError, ModelFileError  # noqa: E402

__all__ = ["load_detector"]


def _root_cause(e: BaseException) -> str:
    """The first line of the innermost exception: Ultralytics wraps load errors in advice to run `yolo predict`
    with a model it would download, which is neither our tool nor possible offline."""
    while e.__cause__ is not None or (e.__context__ is not None and not e.__suppress_context__):
        e = e.__cause__ or e.__context__
    line = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {line[:200]}"


def train_imgsz(model: object) -> int | None:
    """The square size a loaded detector was trained at (its checkpoint's ``train_args``), None when unknown.

    Example:
        >>> train_imgsz(load_detector("edge_mlla/weights/yolo11n-mlla-bccd.pt"))  # doctest: +SKIP
        416
    """
    args = getattr(model, "args", None)
    size = args.get("imgsz") if isinstance(args, dict) else getattr(args, "imgsz", None)
    if isinstance(size, (list, tuple)) and size:
        size = max(size)
    return int(size) if isinstance(size, int) and not isinstance(size, bool) and size > 0 else None


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
        if not zipfile.is_zipfile(path):  # torch.save has written zip archives since torch 1.6
            raise ModelFileError(f"{path} is not a PyTorch checkpoint (not a zip archive: empty, truncated or another "
                                 "kind of file); expected an Ultralytics .pt file")  # fmt: skip
        from ultralytics.nn.tasks import load_checkpoint

        try:
            model, _ = load_checkpoint(str(path), device="cpu", fuse=False)
        except Exception as e:  # TypeError/RuntimeError/EOFError/UnpicklingError/...: all mean "cannot read it"
            raise ModelFileError(f"{path} is not a loadable Ultralytics checkpoint ({_root_cause(e)})") from e
        where = str(path)
    else:
        from edge_mlla.nn.reparam import _unwrap

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
