"""MLLA (Mamba-Like Linear Attention, arXiv 2405.16605) for Ultralytics YOLO, NCHW throughout.

Two forms of one block:

* :class:`MLLABlock`, the training form. It mirrors the paper's block parameter for
  parameter (``cpe1, norm1, act_proj, in_proj, dwc, attn.qk, attn.lepe, out_proj, cpe2,
  norm2, mlp.fc1, mlp.fc2``), with 1x1 convolutions standing for the paper's Linear layers,
  so official weights map by name (:func:`convert_official_state_dict`).
* :class:`MLLABlockDeploy`, its re-parameterized form (``MLLABlock.reparameterize()``):
  residual depthwise convs folded, LayerNorm affines folded into the next 1x1 convs,
  ``in_proj``/``act_proj`` merged, RoPE as constant real cos/sin tables with the 1/N
  scaling folded in, no layout transposes, constant reshapes, ``z`` computed in float32.

:class:`C2MLLA` is a drop-in for Ultralytics' ``C2PSA``.

Imports inside functions: ultralytics is optional or slow to import, so it loads when the function that uses it
runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edge_mlla.errors import ConfigError, InputTypeError, ShapeError
from edge_mlla.nn.rope import TableCache, apply_rope, rope_tables, rope_tables_traced

__all__ = [
    "C2MLLA",
    "MLLABlock",
    "MLLABlockDeploy",
    "LayerNorm2d",
    "LinearAttention",
    "convert_official_state_dict",
]

Z_EPS = 1e-6


# ---------------------------------------------------------------------------------------------------- small parts
class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of an NCHW tensor (``nn.LayerNorm(dim)`` applied per pixel)."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _normalize_channels(x, self.eps) * self.weight[:, None, None] + self.bias[:, None, None]


def _normalize_channels(x: torch.Tensor, eps: float) -> torch.Tensor:
    # Written as the (x - mean) / sqrt(var + eps) pattern that OpenVINO fuses into one MVN op.
    mu = x.mean(1, keepdim=True)
    xc = x - mu
    return xc / torch.sqrt((xc * xc).mean(1, keepdim=True) + eps)


def _dw3x3(dim: int) -> nn.Conv2d:
    return nn.Conv2d(dim, dim, 3, padding=1, groups=dim)


def _pw(c_in: int, c_out: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 1, bias=bias)


class Mlp(nn.Module):
    """The block's MLP: ``fc2(GELU(fc1(x)))`` with 1x1 convs."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = _pw(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = _pw(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DropPath(nn.Module):
    """Stochastic depth per sample (identity in eval)."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


# -------------------------------------------------------------------------------------------- training form
class LinearAttention(TableCache, nn.Module):
    """The paper's linear attention with 2D RoPE and LePE, on NCHW input (``v`` is the input itself)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.dim, self.num_heads = dim, num_heads
        self.qk = _pw(dim, 2 * dim, bias=qkv_bias)
        self.lepe = _dw3x3(dim)
        self._tables: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def rope(self, h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """float32 cos/sin tables (C/2, h, w) for this map size, cached per device (:class:`TableCache`)."""
        return self.cached_tables((h, w, str(device)), device, lambda: rope_tables(self.dim, h, w, device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n, nh = h * w, self.num_heads
        d = c // nh
        q, k = self.qk(x).chunk(2, dim=1)
        q, k = F.elu(q) + 1.0, F.elu(k) + 1.0
        v = x
        cos, sin = self.rope(h, w, x.device)
        q_rope = apply_rope(q, cos, sin).reshape(b, nh, d, n)
        k_rope = apply_rope(k, cos, sin).reshape(b, nh, d, n)
        q, k, vh = q.reshape(b, nh, d, n), k.reshape(b, nh, d, n), v.reshape(b, nh, d, n)
        z = 1.0 / ((q * k.mean(-1, keepdim=True)).sum(2, keepdim=True) + Z_EPS)  # (b, nh, 1, n)
        kv = (k_rope @ vh.transpose(-1, -2).to(k_rope.dtype)) / n  # (b, nh, d_k, d_v)
        y = (kv.transpose(-1, -2) @ q_rope) * z  # (b, nh, d_v, n)
        return y.reshape(b, c, h, w).to(x.dtype) + self.lepe(v)


def _check_dims(dim: int, num_heads: int | None) -> int:
    if not isinstance(dim, int) or isinstance(dim, bool) or dim <= 0:
        raise ConfigError(f"MLLA dim must be a positive int, got {dim!r}")
    if num_heads is None:
        num_heads = max(dim // 32, 1)  # head_dim 32
    if not isinstance(num_heads, int) or num_heads <= 0:
        raise ConfigError(f"num_heads must be a positive int or None, got {num_heads!r}")
    if dim % 4:
        raise ConfigError(f"MLLA dim must be divisible by 4 for 2D RoPE, got dim={dim}")
    if dim % num_heads:
        raise ConfigError(f"MLLA dim={dim} is not divisible by num_heads={num_heads}")
    if (dim // num_heads) % 2:
        raise ConfigError(f"MLLA head_dim = dim/num_heads must be even for RoPE pairs, got {dim}/{num_heads}")
    return num_heads


def _check_input(x: object, dim: int, who: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise InputTypeError(f"{who} expects a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ShapeError(f"{who} expects NCHW input (4-D), got {x.ndim}-D shape {tuple(x.shape)}")
    if x.shape[1] != dim:
        raise ShapeError(f"{who} expects {dim} channels, got {x.shape[1]} (shape {tuple(x.shape)})")


class MLLABlock(nn.Module):
    """Mamba-Like Linear Attention block (training form), NCHW in and out, any H x W, batch >= 1.

    Args:
        dim: channels (divisible by 4 and by ``num_heads``; head_dim even).
        num_heads: attention heads; ``None`` means head_dim 32 (at least one head).
        mlp_ratio: MLP hidden width over ``dim``.
        qkv_bias: bias on the ``qk`` projection.
        drop_path: stochastic depth rate.

    Example:
        >>> import torch
        >>> blk = MLLABlock(64).eval()
        >>> blk(torch.randn(2, 64, 12, 20)).shape
        torch.Size([2, 64, 12, 20])
    """

    def __init__(
        self, dim: int, num_heads: int | None = None, mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_path: float = 0.0
    ) -> None:
        super().__init__()
        self.num_heads = _check_dims(dim, num_heads)
        self.dim = dim
        self.mlp_ratio = mlp_ratio
        self.cpe1 = _dw3x3(dim)
        self.norm1 = LayerNorm2d(dim)
        self.act_proj = _pw(dim, dim)
        self.in_proj = _pw(dim, dim)
        self.dwc = _dw3x3(dim)
        self.act = nn.SiLU()
        self.attn = LinearAttention(dim, self.num_heads, qkv_bias)
        self.out_proj = _pw(dim, dim)
        self.drop_path = DropPath(drop_path)
        self.cpe2 = _dw3x3(dim)
        self.norm2 = LayerNorm2d(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.dim, type(self).__name__)
        x = x + self.cpe1(x)
        shortcut = x
        y = self.norm1(x)
        g = self.act(self.act_proj(y))
        y = self.act(self.dwc(self.in_proj(y)))
        y = self.attn(y)
        x = shortcut + self.drop_path(self.out_proj(y * g))
        x = x + self.cpe2(x)
        return x + self.drop_path(self.mlp(self.norm2(x)))

    @torch.no_grad()
    def reparameterize(self) -> MLLABlockDeploy:
        """Return the deploy form, numerically equal in float32 (eval mode)."""
        return MLLABlockDeploy.from_training(self)


# ------------------------------------------------------------------------------------------------ deploy form
def _fold_identity_dw(conv: nn.Conv2d) -> nn.Conv2d:
    """``x + dw(x)`` as one depthwise conv: add 1 at the kernel centre."""
    out = _dw3x3(conv.in_channels)
    w = conv.weight.detach().clone()
    w[:, 0, 1, 1] += 1.0
    out.weight.copy_(w)
    out.bias.copy_(conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels))
    return out


def _fold_affine_into_pw(ln: LayerNorm2d, *convs: nn.Conv2d) -> nn.Conv2d:
    """``cat(conv_i(ln.weight * n + ln.bias))`` as one 1x1 conv on the normalized ``n``."""
    ws, bs = [], []
    for conv in convs:
        w = conv.weight.detach()[:, :, 0, 0]
        b = conv.bias.detach() if conv.bias is not None else torch.zeros(w.shape[0])
        ws.append(w * ln.weight.detach()[None, :])
        bs.append(b + w @ ln.bias.detach())
    w, b = torch.cat(ws), torch.cat(bs)
    out = _pw(w.shape[1], w.shape[0])
    out.weight.copy_(w[:, :, None, None])
    out.bias.copy_(b)
    return out


def _rope_channel_order(dim: int, num_heads: int) -> list[int]:
    """Within each head: even channels first, then odd ones, so RoPE pairs split with one constant reshape."""
    d = dim // num_heads
    return [hd * d + 2 * t + par for hd in range(num_heads) for par in (0, 1) for t in range(d // 2)]


class _ZScale(nn.Module):
    """``att * z`` with ``z = 1 / (k_mean . q + eps)`` per head and pixel, computed in float32.

    A module of its own so exported nodes carry the ``/z/`` name scope (the fp16 ONNX converter keeps
    that scope in float32). Parameter-free.
    """

    def forward(self, att: torch.Tensor, k_mean: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        z = 1.0 / (k_mean.float() @ q.float() + Z_EPS)  # (b, nh, 1, d) @ (b, nh, d, n) -> (b, nh, 1, n)
        return (att.float() * z).to(att.dtype)


def _pack_tables(cos: torch.Tensor, sin: torch.Tensor, nh: int, n) -> tuple[torch.Tensor, torch.Tensor]:
    """(C/2, h, w) cos/sin -> broadcastable RoPE tables for the (b, 2, nh, 2, d/2 * n) q/k layout.

    ``cos_t`` (2, nh, 1, X) and ``sin_t`` (2, nh, 2, X): index 0 of the first axis is q, 1 is k (k's
    rows carry the 1/N of ``kv``); ``sin_t``'s third axis holds (-sin, +sin) for (even, odd) outputs.
    """
    c = cos.reshape(1, nh, 1, -1)
    s = sin.reshape(1, nh, 1, -1)
    s2 = torch.cat([-s, s], dim=2)
    return torch.cat([c, c / n], dim=0), torch.cat([s2, s2 / n], dim=0)


class MLLABlockDeploy(TableCache, nn.Module):
    """Re-parameterized MLLA block: export-friendly ops only, equal to :class:`MLLABlock` in float32.

    What changed against the training form: ``x + cpe(x)`` folded into one depthwise conv (twice);
    LayerNorm affines folded into the next 1x1 convs; ``act_proj``/``in_proj`` merged into ``proj``;
    ``qk`` rows reordered per head (even channels, then odd) so RoPE is one constant reshape of q and
    k together, a flip of the (even, odd) axis and ``t * cos + flip(t) * sin`` with constant float32
    tables (1/N folded into k's tables); no layout transposes: the only Transpose is the operand of
    ``kv = v @ k^T`` (contraction over N, the last axis of both), which ONNX Runtime fuses into
    FusedMatMul(transB) and OpenVINO into MatMul(transpose_b); ``z`` computed in float32.

    RoPE tables are constants bound to a feature size (:meth:`bind`); a call at another size uses
    tables for that size (computed once and cached), so eager use stays correct on any input. With
    ``dynamic = True`` the tables and reshape sizes come from the input's shape instead; measured on a
    YOLO11n-MLLA export (TorchScript exporter, opset 17, onnxslim) that adds 37 nodes per block
    (62 -> 99): Shape 1, Gather 2, Range 2, Cast 3, Cos 1, Sin 1, Neg 1, Unsqueeze 6, Concat 8,
    Mul 6, Div 2, Add 2 and 2 Reshapes whose sizes are computed at run time.

    Example:
        >>> import torch
        >>> blk = MLLABlock(64).eval()
        >>> dep = blk.reparameterize().bind(8, 12)
        >>> x = torch.randn(1, 64, 8, 12)
        >>> bool((blk(x) - dep(x)).abs().max() < 1e-5)
        True
    """

    def __init__(self, dim: int, num_heads: int, hidden: int, eps1: float = 1e-5, eps2: float = 1e-5) -> None:
        super().__init__()
        self.dim, self.num_heads, self.eps1, self.eps2 = dim, _check_dims(dim, num_heads), eps1, eps2
        self.cpe1 = _dw3x3(dim)
        self.proj = _pw(dim, 2 * dim)  # [act_proj; in_proj] with norm1's affine folded in
        self.dwc = _dw3x3(dim)
        self.qk = _pw(dim, 2 * dim)  # rows reordered per head: even channels, then odd ones
        self.lepe = _dw3x3(dim)
        self.out_proj = _pw(dim, dim)
        self.cpe2 = _dw3x3(dim)
        self.fc1 = _pw(dim, hidden)  # norm2's affine folded in
        self.fc2 = _pw(hidden, dim)
        self.z = _ZScale()
        self.dynamic = False
        self.bound: tuple[int, int] | None = None
        self._tables: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    @torch.no_grad()
    def from_training(cls, blk: MLLABlock) -> MLLABlockDeploy:
        """Build the deploy form of a training-form block (eval-mode semantics; DropPath is dropped)."""
        dim, nh = blk.dim, blk.num_heads
        dep = cls(dim, nh, blk.mlp.fc1.out_channels, blk.norm1.eps, blk.norm2.eps)
        dep.cpe1 = _fold_identity_dw(blk.cpe1)
        dep.cpe2 = _fold_identity_dw(blk.cpe2)
        dep.proj = _fold_affine_into_pw(blk.norm1, blk.act_proj, blk.in_proj)
        dep.fc1 = _fold_affine_into_pw(blk.norm2, blk.mlp.fc1)
        dep.dwc.load_state_dict(blk.dwc.state_dict())
        dep.lepe.load_state_dict(blk.attn.lepe.state_dict())
        dep.out_proj.load_state_dict(blk.out_proj.state_dict())
        dep.fc2.load_state_dict(blk.mlp.fc2.state_dict())
        order = torch.tensor(_rope_channel_order(dim, nh))
        rows = torch.cat([order, order + dim])
        dep.qk.weight.copy_(blk.attn.qk.weight[rows])
        dep.qk.bias.copy_(blk.attn.qk.bias[rows] if blk.attn.qk.bias is not None else torch.zeros(2 * dim))
        dep.to(blk.cpe1.weight.device, blk.cpe1.weight.dtype)
        return dep.train(blk.training)

    def reparameterize(self) -> MLLABlockDeploy:
        """Already in deploy form: returns itself (safe to call twice)."""
        return self

    def bind(self, h: int, w: int) -> MLLABlockDeploy:
        """Bind the constant RoPE tables (and reshape sizes) to an ``h x w`` feature map; returns self."""
        if not (isinstance(h, int) and isinstance(w, int)) or isinstance(h, bool) or isinstance(w, bool):
            raise ConfigError(f"bind() needs positive int sizes, got h={h!r}, w={w!r}")
        if h <= 0 or w <= 0:
            raise ConfigError(f"bind() needs positive int sizes, got h={h!r}, w={w!r}")
        self.bound = (h, w)
        return self

    def _static_tables(self, h: int, w: int, device: torch.device, dtype: torch.dtype):
        def build():
            cos, sin = rope_tables(self.dim, h, w)  # (C/2, h, w) float32 from numpy: constants in a trace
            cos_t, sin_t = _pack_tables(cos, sin, self.num_heads, h * w)
            return cos_t.to(device, dtype), sin_t.to(device, dtype)

        return self.cached_tables((h, w, str(device), dtype), device, build)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, nh = self.dim, self.num_heads
        d = c // nh
        if self.dynamic:
            h, w = x.shape[-2], x.shape[-1]
            n = h * w
            cos, sin = rope_tables_traced(c, h, w, x.device)
            cos_t, sin_t = _pack_tables(cos, sin, nh, n)
            cos_t, sin_t = cos_t.to(x.dtype), sin_t.to(x.dtype)
        else:
            h, w = (int(s) for s in x.shape[-2:])
            if self.bound is not None and (h, w) != self.bound and torch.jit.is_tracing():
                raise ShapeError(f"deploy MLLA is bound to {self.bound} but traced at {(h, w)}: bind() it first")
            n = h * w
            cos_t, sin_t = self._static_tables(h, w, x.device, x.dtype)

        x = self.cpe1(x)
        shortcut = x
        g, y = self.proj(_normalize_channels(x, self.eps1)).chunk(2, dim=1)
        g = F.silu(g)
        v = F.silu(self.dwc(y))
        qk = F.elu(self.qk(v)) + 1.0  # (b, 2C, h, w): [q; k], per head even channels then odd ones
        t = qk.reshape(-1, 2, nh, 2, (d // 2) * n)  # (b, q/k, head, even/odd, pair x pixel)
        rope = (t * cos_t + t.flip(3) * sin_t).reshape(-1, 2 * nh, d, n)
        q_rope, k_rope = rope.chunk(2, dim=1)  # (b, nh, d, n) each; k_rope carries 1/N
        # q and k (b, nh, d, n) from the planar tensor the RoPE already reads, not a channel split of qk: OpenVINO
        # ran that split on the convolution's blocked layout with its reference kernel (~0.08 ms of 8 per frame on a
        # 2-core AMD EPYC with AVX-512 BF16/VNNI, INT8 at 416)
        q, k = (p.reshape(-1, nh, d, n) for p in t.reshape(-1, 2, nh * d * n).chunk(2, dim=1))
        k_mean = k.mean(3).unsqueeze(2)  # (b, nh, 1, d): each channel's mean over the pixels
        kv_t = v.reshape(-1, nh, d, n) @ k_rope.transpose(-1, -2)  # (b, nh, d_v, d_k): the one operand transpose
        y = self.z(kv_t @ q_rope, k_mean, q).reshape(-1, c, h, w) + self.lepe(v)
        x = shortcut + self.out_proj(y * g)
        x = self.cpe2(x)
        return x + self.fc2(F.gelu(self.fc1(_normalize_channels(x, self.eps2))))


# ------------------------------------------------------------------------------------------------------ C2MLLA
class C2MLLA(nn.Module):
    """C2PSA-shaped drop-in with MLLA: 1x1 conv, split, ``n`` MLLABlocks on the hidden half, concat, 1x1 conv.

    Example:
        >>> import torch
        >>> m = C2MLLA(128, 128, n=1).eval()
        >>> m(torch.randn(1, 128, 20, 12)).shape
        torch.Size([1, 128, 20, 12])
    """

    def __init__(self, c1: int, c2: int, n: int = 1, e: float = 0.5) -> None:
        super().__init__()
        from ultralytics.nn.modules import Conv

        if c1 != c2:
            raise ConfigError(f"C2MLLA keeps the channel count: c1 ({c1}) must equal c2 ({c2})")
        self.c = int(c1 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv(2 * self.c, c1, 1)
        self.m = nn.Sequential(*(MLLABlock(self.c) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.cv1(x).split((self.c, self.c), dim=1)
        return self.cv2(torch.cat((a, self.m(b)), 1))


# ------------------------------------------------------------------------------------------ official weights
_LINEAR_KEYS = ("act_proj", "in_proj", "out_proj", "attn.qk", "mlp.fc1", "mlp.fc2")


def convert_official_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map an official MLLA block state dict (Linear layers, ``(out, in)`` weights) onto :class:`MLLABlock`.

    Linear weights become 1x1 conv weights ``(out, in, 1, 1)``; everything else keeps its name and
    value. RoPE buffers of the official code (``attn.rope.*``) are dropped: ours are computed per size.
    """
    out = {}
    for key, val in sd.items():
        if ".rope." in key or key.startswith("attn.rope"):
            continue
        if key.endswith(".weight") and key[: -len(".weight")].endswith(_LINEAR_KEYS) and val.ndim == 2:
            val = val[:, :, None, None]
        out[key] = val
    return out


def count_heads(dim: int) -> int:
    """Default head count of an MLLA block of ``dim`` channels (head_dim 32)."""
    return _check_dims(dim, None)

