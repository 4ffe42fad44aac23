"""PyTorch backend: an Ultralytics ``.pt`` detector, re-parameterized to its deploy form, on CPU or CUDA.

The only backend that imports torch (and Ultralytics), lazily, and only through the model side
(:mod:`edge_mlla.nn`): :func:`edge_mlla.nn.load.load_detector` loads the checkpoint and
:func:`edge_mlla.nn.reparam.reparameterize` converts it (MLLA blocks to their deploy form, Conv+BN fused), the
same graph the ONNX/OpenVINO exports hold, so its detections match theirs. There is no fallback: a model that
cannot be re-parameterized is an error, never a silent run of the training form. Inputs may have any batch and any stride-multiple size.

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

from edge_mlla.errors import BackendUnavailableError, ClosedError, ConfigError, MissingFileError
from edge_mlla.modelfile import make_metadata, normalize_precision
from edge_mlla.runtimes.base import Backend, TensorSpec, check_threads, register


def _deploy_model(path: Path) -> Any:
    """The deploy form of a ``.pt`` detector: loaded by the model side (:func:`edge_mlla.nn.load.load_detector`),
    re-parameterized (MLLA blocks to their deploy form, Conv+BN fused) with shape-driven RoPE tables."""
    from edge_mlla.nn.load import load_detector
    from edge_mlla.nn.reparam import bind, reparameterize

    model = reparameterize(load_detector(path), inplace=True)
    bind(model, None, dynamic=True)
    return model


@register
class TorchBackend(Backend):
    """PyTorch eager. ``device``: None (default: ``cuda`` when torch sees a GPU, as Ultralytics' predict, else
    ``cpu``), ``cpu`` or ``cuda[:N]``; ``precision``: f32 (default) or f16 (CUDA only)."""

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

    def __init__(self, path: str | Path, device: str | None = None, precision: str | None = None,
                 threads: int | None = None, **options: Any) -> None:
        if options:
            raise ConfigError(f"torch backend takes only the threads option, got {sorted(options)}")
        threads = check_threads(threads)
        reason = self.check()
        if reason:
            raise BackendUnavailableError(reason)
        import torch

        path = Path(path)
        if not path.is_file():
            raise MissingFileError(f"model file not found: {path}")
        dev = str(device or ("cuda" if torch.cuda.is_available() else "cpu")).lower()
        if dev != "cpu" and not dev.startswith("cuda"):
            raise ConfigError(f"torch device {device!r} is not 'cpu', 'cuda' or 'cuda:N'")
        if dev.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailableError(f"torch device {dev} requested but torch sees no CUDA device")
        prec = normalize_precision(precision) or "f32"
        if prec not in ("f32", "f16") or (prec == "f16" and dev == "cpu"):
            raise ConfigError(f"torch backend runs f32 on cpu and f32/f16 on cuda; got {prec} on {dev}")
        model = _deploy_model(path)
        self.reparameterized = True
        self._torch = torch
        self._dtype = torch.float16 if prec == "f16" else torch.float32
        self._model = model.to(torch.device(dev), dtype=self._dtype).eval()
        self._lock = threading.Lock()  # one forward at a time: eager modules are not re-entrant-safe
        self.path, self.device, self.precision = path, dev, prec
        if threads:
            torch.set_num_threads(threads)  # process-wide in torch: the last backend made decides
        names = {int(k): str(v) for k, v in dict(getattr(model, "names", None) or {}).items()}
        stride = int(max(int(s) for s in model.stride.tolist())) if hasattr(model, "stride") else 32
        from edge_mlla.nn.load import train_imgsz

        imgsz = train_imgsz(model) or 640
        nc = len(names) or int(getattr(model.model[-1], "nc", 80))
        self._metadata = make_metadata(names, stride, (imgsz, imgsz), precision=prec)
        self._inputs = [TensorSpec("images", (None, 3, None, None), np.dtype(np.float32))]
        self._outputs = [TensorSpec("output0", (None, 4 + nc, None), np.dtype(np.float32))]

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        if self._model is None:
            raise ClosedError(f"this {self.name} backend is closed")
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
