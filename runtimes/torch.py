"""PyTorch backend: an Ultralytics ``.pt`` detector, re-parameterized to its deploy form, on CPU or CUDA.

The only backend that imports torch (and Ultralytics), lazily. The model is loaded with
:func:`edge_mlla.export.load_detector` and converted with :func:`edge_mlla.reparam.reparameterize`
(MLLA blocks to their deploy form, Conv+BN fused), the same graph the ONNX/OpenVINO exports hold,
so its detections match theirs. Inputs may have any batch and any stride-multiple size.

Example:
    >>> from edge_mlla.runtimes.torch import TorchBackend
    >>> be = TorchBackend("yolo11n-mlla-bccd.pt", device="cpu")  # doctest: +SKIP
    >>> be.metadata["names"]                                      # doctest: +SKIP
    "{0: 'Platelets', 1: 'RBC', 2: 'WBC'}"
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from edge_mlla.errors import BackendUnavailableError, ConfigError, MissingFileError, ModelFileError
from edge_mlla.runtimes.base import LOGGER, Backend, TensorSpec, normalize_precision, register


def _load(path: Path) -> Any:
    """A float32 eval DetectionModel from a .pt file (our loader when present, else Ultralytics')."""
    from edge_mlla._env import setup_offline

    setup_offline()
    try:
        from edge_mlla.export import load_detector
    except ImportError:  # export module not installed in this build: plain Ultralytics loading
        load_detector = None
    if load_detector is not None:
        return load_detector(path)
    import edge_mlla.nn  # noqa: F401  registers the MLLA modules so checkpoints unpickle
    from ultralytics.nn.tasks import load_checkpoint

    try:
        model, _ = load_checkpoint(str(path), device="cpu", fuse=False)
    except Exception as e:
        raise ModelFileError(f"{path} is not a loadable Ultralytics checkpoint: {type(e).__name__}: {e}") from e
    return model.float().eval()


def _deploy(model: Any) -> tuple[Any, bool]:
    """The deploy form (re-parameterized, shape-driven RoPE tables) and whether that happened."""
    try:
        from edge_mlla.reparam import bind, reparameterize
    except ImportError as e:
        LOGGER.warning("edge_mlla.reparam unavailable (%s): running the training form", e)
        return model.fuse() if hasattr(model, "fuse") else model, False
    model = reparameterize(model, inplace=True)
    bind(model, None, dynamic=True)
    return model, True


@register
class TorchBackend(Backend):
    """PyTorch eager. ``device``: ``cpu`` (default) or ``cuda[:N]``; ``precision``: f32 (default) or f16
    (CUDA only)."""

    name = "torch"
    suffixes = (".pt",)
    priority = 30

    @classmethod
    def check(cls) -> str | None:
        import importlib.util

        for pkg, hint in (("torch", "pip install torch"), ("ultralytics", "pip install ultralytics")):
            if importlib.util.find_spec(pkg) is None:
                return f"{pkg} is not installed; {hint} (or pip install 'edge-mlla[train]')"
        return None

    def __init__(self, path: str | Path, device: str | None = None, precision: str | None = None, **options: Any) -> None:
        if options:
            raise ConfigError(f"torch backend takes no options, got {sorted(options)}")
        reason = self.check()
        if reason:
            raise BackendUnavailableError(reason)
        import torch

        path = Path(path)
        if not path.is_file():
            raise MissingFileError(f"model file not found: {path}")
        dev = str(device or "cpu").lower()
        if dev != "cpu" and not dev.startswith("cuda"):
            raise ConfigError(f"torch device {device!r} is not 'cpu', 'cuda' or 'cuda:N'")
        if dev.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailableError(f"torch device {dev} requested but torch sees no CUDA device")
        prec = normalize_precision(precision) or "f32"
        if prec not in ("f32", "f16") or (prec == "f16" and dev == "cpu"):
            raise ConfigError(f"torch backend runs f32 on cpu and f32/f16 on cuda; got {prec} on {dev}")
        model, self.reparameterized = _deploy(_load(path))
        self._torch = torch
        self._dtype = torch.float16 if prec == "f16" else torch.float32
        self._model = model.to(torch.device(dev), dtype=self._dtype).eval()
        self._lock = threading.Lock()  # one forward at a time: eager modules are not re-entrant-safe
        self.path, self.device, self.precision = path, dev, prec
        names = getattr(model, "names", None) or {}
        stride = int(max(int(s) for s in model.stride.tolist())) if hasattr(model, "stride") else 32
        imgsz = (getattr(model, "args", None) or {}).get("imgsz", 640) if isinstance(getattr(model, "args", None), dict) else 640
        nc = len(names) or int(getattr(model.model[-1], "nc", 80))
        self._metadata = {
            "names": repr({int(k): str(v) for k, v in dict(names).items()}),
            "stride": str(stride),
            "imgsz": repr([int(imgsz), int(imgsz)] if isinstance(imgsz, int) else [int(v) for v in imgsz]),
            "task": "detect",
        }
        self._inputs = [TensorSpec("images", (None, 3, None, None), np.dtype(np.float32))]
        self._outputs = [TensorSpec("output0", (None, 4 + nc, None), np.dtype(np.float32))]

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        batch = self._check_batch(batch)
        torch = self._torch
        with self._lock, torch.inference_mode():
            x = torch.from_numpy(batch).to(self._model_device(), dtype=self._dtype)
            y = self._model(x)
        y = y[0] if isinstance(y, (list, tuple)) else y
        return [y.float().cpu().numpy()]

    def _model_device(self) -> Any:
        return next(self._model.parameters()).device

    def close(self) -> None:
        self._model = None
