"""The paper's 2D rotary position embedding (RoPE) for NCHW maps: the angles, their cos/sin tables (as constants,
or from torch ops on traced sizes for a dynamic-shape export) and the rotation. Used by both forms of the MLLA block
(:mod:`edge_mlla.nn.modules`)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from edge_mlla.errors import ConfigError

ROPE_BASE = 10000.0


def rope_angles(dim: int, h: int, w: int) -> np.ndarray:
    """Angles of the paper's 2D RoPE for ``dim`` channels on an ``h x w`` map, shape (dim/2, h, w), float64.

    Channel pairs (2i, 2i+1) rotate together; with ``k_max = dim/4`` and
    ``theta_k = base^(-k/k_max)``, the first ``dim/4`` pairs turn by row index x theta_k, the last
    ``dim/4`` by column index x theta_k.

    Example:
        >>> rope_angles(8, 2, 3).shape
        (4, 2, 3)
    """
    if dim % 4:
        raise ConfigError(f"2D RoPE needs a channel count divisible by 4, got {dim}")
    k_max = dim // 4
    theta = ROPE_BASE ** (-np.arange(k_max, dtype=np.float64) / k_max)  # (k_max,)
    rows = np.arange(h, dtype=np.float64)[:, None] * np.ones((1, w))
    cols = np.ones((h, 1)) * np.arange(w, dtype=np.float64)[None, :]
    return np.concatenate([theta[:, None, None] * rows[None], theta[:, None, None] * cols[None]], axis=0)


def rope_tables(dim: int, h: int, w: int, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 cos/sin of :func:`rope_angles` on ``device``: (dim/2, h, w) each."""
    ang = rope_angles(dim, h, w)
    cos = torch.from_numpy(np.cos(ang).astype(np.float32))
    sin = torch.from_numpy(np.sin(ang).astype(np.float32))
    return cos.to(device), sin.to(device)


def rope_tables_traced(dim: int, h: torch.Tensor | int, w: torch.Tensor | int, device: torch.device):
    """The same tables from torch ops on (possibly traced) sizes: the dynamic-shape export path."""
    k_max = dim // 4
    theta = ROPE_BASE ** (-torch.arange(k_max, device=device, dtype=torch.float32) / k_max)
    rows = torch.arange(h, device=device, dtype=torch.float32)
    cols = torch.arange(w, device=device, dtype=torch.float32)
    rr = theta[:, None, None] * rows[None, :, None] + 0.0 * cols[None, None, :]
    cc = theta[:, None, None] * cols[None, None, :] + 0.0 * rows[None, :, None]
    ang = torch.cat([rr, cc], dim=0)
    return ang.cos(), ang.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (2i, 2i+1) of NCHW ``x`` by the angles whose cos/sin are (C/2, H, W) tables.

    The tables are float32; the result is promoted to float32 with them.
    """
    b, c, h, w = x.shape
    x = x.reshape(b, c // 2, 2, h, w)
    xe, xo = x[:, :, 0], x[:, :, 1]
    out = torch.stack([xe * cos - xo * sin, xe * sin + xo * cos], dim=2)
    return out.reshape(b, c, h, w)


Tables = tuple[torch.Tensor, torch.Tensor]


class TableCache:
    """Mixin for a module that caches its RoPE tables in ``self._tables`` (key -> (cos, sin)): a cached pair is used
    only if it is on the device asked for, and the cache is never pickled (checkpoints, ``deepcopy``). A GPU run's
    cached tables went into best.pt, ``torch.load(map_location="cpu")`` moved them to the CPU under their ``cuda:0``
    key, ``model.to()`` does not move a dict, and the run's final validation on the GPU mixed devices."""

    _tables: dict[tuple, Tables]

    def cached_tables(self, key: tuple, device: torch.device, build: Callable[[], Tables]) -> Tables:
        hit = self._tables.get(key)
        if hit is None or hit[0].device != device:
            hit = self._tables[key] = build()
        return hit

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_tables": {}}
