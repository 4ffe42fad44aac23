"""MLLABlock (training form) against the paper's formulas, written independently in token layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tolerance import assert_f32_close

from edge_mlla.errors import ConfigError, InputTypeError, ShapeError
from edge_mlla.nn import C2MLLA, MLLABlock, apply_rope, convert_official_state_dict, rope_angles
from mlla_reference import TokenMLLABlock, TokenRoPE2d, copy_weights


def _randomize(m: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial weights everywhere (LayerNorm affines and biases too), so every term matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("norm1.weight") or name.endswith("norm2.weight"):
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return m


@pytest.mark.parametrize("hw", [(20, 20), (12, 20), (7, 9)])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("dim,heads", [(64, None), (64, 4)])
def test_block_equals_token_reference(hw, batch, dim, heads):
    torch.manual_seed(1)
    blk = _randomize(MLLABlock(dim, num_heads=heads)).eval()
    ref = copy_weights(blk, TokenMLLABlock(dim, *hw, num_heads=blk.num_heads)).eval()
    x = torch.randn(batch, dim, *hw)
    with torch.no_grad():
        ours = blk(x)
        theirs = ref.forward_nchw(x)
    assert ours.shape == x.shape
    # two float32 paths (NCHW convs vs token matmuls) sum in other orders: equal up to f32 reordering
    assert_f32_close(ours.numpy(), theirs.numpy(), n=dim * 9 + hw[0] * hw[1])


def test_default_heads_are_head_dim_32():
    assert MLLABlock(128).num_heads == 4
    assert MLLABlock(32).num_heads == 1
    assert MLLABlock(16).num_heads == 1  # fewer than 32 channels: one head


def test_parameter_names_mirror_paper_block():
    names = {k.rsplit(".", 1)[0] for k in MLLABlock(64).state_dict()}
    expected = {"cpe1", "norm1", "act_proj", "in_proj", "dwc", "attn.qk", "attn.lepe", "out_proj", "cpe2", "norm2",
                "mlp.fc1", "mlp.fc2"}
    assert names == expected


def test_official_linear_weights_map_by_name():
    blk = _randomize(MLLABlock(32)).eval()
    official = {k: (v[:, :, 0, 0] if v.ndim == 4 and v.shape[-1] == 1 and "cpe" not in k and "dwc" not in k
                    and "lepe" not in k else v) for k, v in blk.state_dict().items()}
    official["attn.rope.rotations"] = torch.zeros(1)  # the official code stores its tables: must be dropped
    fresh = MLLABlock(32).eval()
    fresh.load_state_dict(convert_official_state_dict(official))
    x = torch.randn(1, 32, 6, 5)
    with torch.no_grad():
        assert torch.equal(fresh(x), blk(x))


def test_rope_tables_match_independent_formula():
    c, h, w = 16, 5, 7
    ref = TokenRoPE2d(h, w, c)
    ang = rope_angles(c, h, w)  # (c/2, h, w)
    np.testing.assert_allclose(np.cos(ang).transpose(1, 2, 0), ref.cos.numpy(), atol=1e-6)
    np.testing.assert_allclose(np.sin(ang).transpose(1, 2, 0), ref.sin.numpy(), atol=1e-6)


def test_rope_is_2d_rows_and_columns_rotate_different_channels():
    c, h, w = 16, 6, 6
    ang = torch.from_numpy(rope_angles(c, h, w)).float()
    cos, sin = ang.cos(), ang.sin()
    x = torch.zeros(1, c, h, w)
    x[:, 0::2] = 1.0  # every pair (1, 0): its rotation is (cos a, sin a)
    y = apply_rope(x, cos, sin)
    angle = torch.atan2(y[0, 1::2], y[0, 0::2])  # (c/2, h, w)
    row_pairs, col_pairs = angle[: c // 4], angle[c // 4 :]
    # Moving along a row (column index changes) turns only the column pairs, and vice versa.
    assert torch.allclose(row_pairs[:, :, 1], row_pairs[:, :, 0], atol=1e-6)
    assert not torch.allclose(col_pairs[:, :, 1], col_pairs[:, :, 0], atol=1e-3)
    assert torch.allclose(col_pairs[:, 1, :], col_pairs[:, 0, :], atol=1e-6)
    assert not torch.allclose(row_pairs[:, 1, :], row_pairs[:, 0, :], atol=1e-3)
    # Pair 0 has theta = 1: one step down turns it by exactly 1 radian.
    assert abs(angle[0, 1, 0].item() - 1.0) < 1e-6


def test_rope_shift_changes_attention_only_through_position():
    """A 1D (row-major flattened) RoPE would treat (0, w) like (1, 0); ours must not."""
    c, h, w = 16, 4, 4
    ang = rope_angles(c, h, w)
    flat_next = ang[:, 1, 0]  # next row, first column
    same_row = ang[:, 0, 1]  # same row, next column
    assert not np.allclose(flat_next, same_row)


def test_tables_stay_float32_and_block_is_finite_under_bf16_autocast():
    blk = MLLABlock(64).eval()
    x = torch.randn(2, 64, 12, 20)
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        y = blk(x)
        cos, sin = blk.attn.rope(12, 20, x.device)
    assert cos.dtype == torch.float32 and sin.dtype == torch.float32
    assert torch.isfinite(y).all()
    with torch.no_grad():
        ref = blk(x)
    assert (y.float() - ref).abs().max().item() < 0.1 * ref.abs().max().item()


@pytest.mark.parametrize("form", ["training", "deploy"])
def test_checkpoints_do_not_carry_the_rope_cache_and_a_stale_one_is_rebuilt(form):
    """A CUDA run's cached tables went into best.pt; torch.load(map_location="cpu") put them on the CPU under their
    cuda:0 key, and the run's final validation on the GPU mixed devices. Both block forms cache tables: neither
    pickles its cache, and a cached pair on another device than asked for is rebuilt (here: a pair moved to the meta
    device under the cpu key)."""
    import copy
    import io

    blk = _randomize(MLLABlock(64)).eval()
    if form == "deploy":
        blk = blk.reparameterize()
    attn = blk.attn if form == "training" else blk
    x = torch.randn(1, 64, 8, 10)
    with torch.no_grad():
        ref = blk(x)
    assert attn._tables  # the forward filled it
    buf = io.BytesIO()
    torch.save(blk, buf)
    buf.seek(0)
    loaded = torch.load(buf, map_location="cpu", weights_only=False)
    assert (loaded.attn if form == "training" else loaded)._tables == {}
    assert (copy.deepcopy(blk).attn if form == "training" else copy.deepcopy(blk))._tables == {}
    assert attn._tables  # pickling left the live module's cache alone
    key = next(iter(attn._tables))
    attn._tables[key] = tuple(t.to("meta") for t in attn._tables[key])
    with torch.no_grad():
        assert torch.equal(blk(x), ref) and torch.equal(loaded(x), ref)
    assert attn._tables[key][0].device == x.device


def test_gradients_reach_every_parameter():
    blk = MLLABlock(64, drop_path=0.1).train()
    _randomize(blk)
    blk(torch.randn(2, 64, 8, 10)).square().mean().backward()
    for name, p in blk.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum().item() > 0, f"zero gradient for {name}"


def test_c2mlla_shape_and_gradients():
    m = C2MLLA(128, 128, n=2).train()
    y = m(torch.randn(2, 128, 10, 6))
    assert y.shape == (2, 128, 10, 6)
    y.mean().backward()
    assert all(p.grad is not None for p in m.parameters())
    assert len(m.m) == 2 and m.c == 64


@pytest.mark.parametrize(
    "bad,err,match",
    [
        (torch.randn(1, 32, 8, 8), ShapeError, "expects 64 channels, got 32"),
        (torch.randn(64, 8, 8), ShapeError, "4-D"),
        (np.zeros((1, 64, 8, 8), np.float32), InputTypeError, "torch.Tensor"),
    ],
)
def test_bad_input_errors(bad, err, match):
    with pytest.raises(err, match=match):
        MLLABlock(64)(bad)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"dim": 64, "num_heads": 3}, "not divisible by num_heads=3"),
        ({"dim": 66}, "divisible by 4"),
        ({"dim": 24, "num_heads": 8}, "head_dim"),
        ({"dim": 0}, "positive int"),
        ({"dim": 64, "num_heads": 0}, "num_heads"),
    ],
)
def test_bad_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        MLLABlock(**kwargs)


def test_c2mlla_rejects_channel_change():
    with pytest.raises(ConfigError, match="c1 .* must equal c2"):
        C2MLLA(64, 128)
