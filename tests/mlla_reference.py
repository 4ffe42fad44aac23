"""An independent MLLA block in the paper's token layout, for tests and benchmarks only.

Written from the formulas of "Demystify Mamba in Vision: A Linear Attention Perspective"
(arXiv 2405.16605) and its official code's structure: tokens (B, N, C), ``nn.Linear`` layers,
``nn.LayerNorm``, transposes into image layout around every depthwise conv, and a real-valued
2D RoPE built with ``torch.meshgrid`` (not with edge_mlla's tables). It shares no code with
``edge_mlla.nn``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TokenRoPE2d(nn.Module):
    """Real-valued 2D RoPE on (B, H, W, C): pair (2i, 2i+1) turns by row*theta_i (first C/4 pairs)
    or by col*theta_(i-C/4) (last C/4 pairs), theta_k = 10000^(-k/(C/4))."""

    def __init__(self, h: int, w: int, c: int, base: float = 10000.0) -> None:
        super().__init__()
        k_max = c // 4
        theta = 1.0 / (base ** (torch.arange(k_max, dtype=torch.float64) / k_max))
        ii, jj = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
        angles = torch.cat([ii[..., None] * theta, jj[..., None] * theta], dim=-1)  # (h, w, c/2)
        self.register_buffer("cos", torch.cos(angles).float(), persistent=False)
        self.register_buffer("sin", torch.sin(angles).float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        re, im = x[..., 0::2], x[..., 1::2]
        out = torch.empty_like(x)
        out[..., 0::2] = re * self.cos - im * self.sin
        out[..., 1::2] = re * self.sin + im * self.cos
        return out


class TokenLinearAttention(nn.Module):
    def __init__(self, dim: int, h: int, w: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.dim, self.h, self.w, self.num_heads = dim, h, w, num_heads
        self.qk = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.lepe = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.rope = TokenRoPE2d(h, w, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        h, w, nh = self.h, self.w, self.num_heads
        hd = c // nh
        qk = self.qk(x).reshape(b, n, 2, c).permute(2, 0, 1, 3)
        q, k, v = qk[0], qk[1], x
        q, k = F.elu(q) + 1.0, F.elu(k) + 1.0
        q_rope = self.rope(q.reshape(b, h, w, c)).reshape(b, n, nh, hd).permute(0, 2, 1, 3)
        k_rope = self.rope(k.reshape(b, h, w, c)).reshape(b, n, nh, hd).permute(0, 2, 1, 3)
        q = q.reshape(b, n, nh, hd).permute(0, 2, 1, 3)
        k = k.reshape(b, n, nh, hd).permute(0, 2, 1, 3)
        v = v.reshape(b, n, nh, hd).permute(0, 2, 1, 3)
        z = 1 / (q @ k.mean(dim=-2, keepdim=True).transpose(-2, -1) + 1e-6)
        kv = (k_rope.transpose(-2, -1) * (n**-0.5)) @ (v * (n**-0.5))
        x = (q_rope @ kv) * z
        x = x.transpose(1, 2).reshape(b, n, c)
        v = v.transpose(1, 2).reshape(b, h, w, c).permute(0, 3, 1, 2)
        return x + self.lepe(v).permute(0, 2, 3, 1).reshape(b, n, c)


class TokenMLLABlock(nn.Module):
    """The paper's MLLA block on tokens (B, N, C) for a fixed h x w."""

    def __init__(self, dim: int, h: int, w: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True) -> None:
        super().__init__()
        self.dim, self.h, self.w = dim, h, w
        self.cpe1 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim)
        self.in_proj = nn.Linear(dim, dim)
        self.act_proj = nn.Linear(dim, dim)
        self.dwc = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.attn = TokenLinearAttention(dim, h, w, num_heads, qkv_bias)
        self.out_proj = nn.Linear(dim, dim)
        self.cpe2 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential()
        self.mlp.fc1 = nn.Linear(dim, hidden)
        self.mlp.act = nn.GELU()
        self.mlp.fc2 = nn.Linear(hidden, dim)

    def _img(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, self.h, self.w, c).permute(0, 3, 1, 2)

    @staticmethod
    def _tok(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).permute(0, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self._tok(self.cpe1(self._img(x)))
        shortcut = x
        x = self.norm1(x)
        act_res = F.silu(self.act_proj(x))
        x = self.in_proj(x)
        x = self._tok(F.silu(self.dwc(self._img(x))))
        x = self.attn(x)
        x = shortcut + self.out_proj(x * act_res)
        x = x + self._tok(self.cpe2(self._img(x)))
        return x + self.mlp(self.norm2(x))

    def forward_nchw(self, x: torch.Tensor) -> torch.Tensor:
        """Convenience: NCHW in, NCHW out (layout conversion outside the block)."""
        return self._img(self.forward(self._tok(x)))


def copy_weights(src: nn.Module, dst: TokenMLLABlock) -> TokenMLLABlock:
    """Copy an ``edge_mlla.nn.MLLABlock``'s weights by parameter name into a token block (1x1 conv -> Linear)."""
    sd = {}
    ref = dst.state_dict()
    for k, v in src.state_dict().items():
        if k not in ref:
            continue
        sd[k] = v.reshape(ref[k].shape) if v.ndim == 4 and ref[k].ndim == 2 else v
    missing = [k for k in ref if k not in sd and not k.startswith("attn.rope")]
    if missing:
        raise KeyError(f"parameters without a source: {missing}")
    dst.load_state_dict(sd, strict=False)
    return dst
