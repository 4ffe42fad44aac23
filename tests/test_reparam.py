"""Deploy form == training form: per block (<= 1e-5 abs), whole YOLO11n-MLLA (<= 1e-4 of the output scale).

References are independent of the deploy code: the training form ``MLLABlock`` and the token-layout
block in tests/mlla_reference.py (written from the paper, no shared code). Models are built from
yaml with random weights; every LayerNorm / BatchNorm gets non-trivial statistics and affines so
that the folds are actually exercised.
"""

from __future__ import annotations

import copy

import cv2
import numpy as np
import pytest
import torch
from torch import nn

import edge_mlla.nn  # noqa: F401  (offline set-up, registration)
from edge_mlla.errors import ConfigError, InputTypeError
from edge_mlla.nn import C2MLLA, MLLABlock, MLLABlockDeploy
from edge_mlla.reparam import bind, deploy_blocks, is_reparameterized, normalize_imgsz, reparameterize

NAMES = {0: "RBC", 1: "WBC", 2: "Platelets"}


# ------------------------------------------------------------------------------------------------ helpers
def perturb(model: nn.Module, seed: int = 0, scale: float = 0.05) -> nn.Module:
    """Non-trivial norms (LayerNorm/BatchNorm affine and running stats) and weights, deterministically."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            elif type(m).__name__ == "LayerNorm2d":
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
        for name, p in model.named_parameters():
            if ".m." in name or name.startswith("m.") or "cpe" in name or "attn" in name:  # MLLA internals
                p.add_(torch.randn(p.shape, generator=g) * scale)
    return model


def tiny_detector(cfg: str = "yolo11n-mlla.yaml", seed: int = 0):
    """A YOLO11n(-MLLA) DetectionModel with nc=3 and BCCD names, random but non-trivial, eval mode."""
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(seed)
    model = DetectionModel(cfg, nc=3, verbose=False)
    model.names = dict(NAMES)
    with torch.no_grad():  # class scores spread over (0, 1) instead of the ~0.01 prior of a fresh head
        for branch in model.model[-1].cv3:
            branch[-1].bias.zero_()
            branch[-1].weight.mul_(30.0)
    return perturb(model, seed).eval()


def save_checkpoint(model: nn.Module, path) -> None:
    """Save in Ultralytics' checkpoint layout (what trainer.save_model writes), loadable by load_checkpoint."""
    torch.save({"model": copy.deepcopy(model).half(), "ema": None, "train_args": {"task": "detect"}}, str(path))


def bccd_batch(val_images, h: int, w: int, n: int = 2) -> torch.Tensor:
    """Real BCCD images resized to h x w, RGB, [0, 1], NCHW."""
    ims = []
    for p in val_images[:n]:
        im = cv2.imread(str(p))
        assert im is not None, p
        ims.append(cv2.resize(im, (w, h), interpolation=cv2.INTER_LINEAR)[:, :, ::-1])
    return torch.from_numpy(np.ascontiguousarray(np.stack(ims))).permute(0, 3, 1, 2).float() / 255.0


@pytest.fixture(scope="module")
def model():
    return tiny_detector()


@pytest.fixture(scope="module")
def deployed(model):
    return reparameterize(model)


# ------------------------------------------------------------------------------------------ per block
@pytest.mark.parametrize(("c", "h", "w", "b"), [(128, 20, 20, 1), (128, 12, 20, 2), (64, 7, 5, 2), (32, 4, 6, 1)])
def test_block_deploy_equals_training_form(c, h, w, b):
    torch.manual_seed(c + h)
    blk = perturb(MLLABlock(c), seed=c, scale=0.1).eval()
    dep = blk.reparameterize().bind(h, w)
    assert isinstance(dep, MLLABlockDeploy)
    x = torch.randn(b, c, h, w) * 2
    with torch.no_grad():
        ref, out = blk(x), dep(x)
    assert ref.abs().max() > 1.0  # a real signal, not a vanishing one
    assert (out - ref).abs().max().item() <= 1e-5
    dep.dynamic = True  # shape-driven tables: same numbers
    with torch.no_grad():
        assert (dep(x) - ref).abs().max().item() <= 1e-5


def test_block_matches_independent_token_reference():
    from mlla_reference import TokenMLLABlock, copy_weights

    c, h, w = 64, 6, 10
    blk = perturb(MLLABlock(c), seed=3, scale=0.1).eval()
    tok = copy_weights(blk, TokenMLLABlock(c, h, w, blk.num_heads)).eval()
    dep = blk.reparameterize().bind(h, w)
    x = torch.randn(2, c, h, w)
    with torch.no_grad():
        ref = tok(x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(2, c, h, w)
        assert (dep(x) - ref).abs().max().item() <= 1e-5


def test_block_other_size_than_bound_still_correct_in_eager():
    blk = perturb(MLLABlock(64), seed=5).eval()
    dep = blk.reparameterize().bind(8, 8)
    x = torch.randn(1, 64, 4, 12)
    with torch.no_grad():
        assert (dep(x) - blk(x)).abs().max().item() <= 1e-5


def test_deploy_block_folds_what_the_design_says():
    blk = perturb(MLLABlock(64), seed=1).eval()
    dep = blk.reparameterize()
    names = {n for n, _ in dep.named_children()}
    assert {"norm1", "norm2", "act_proj", "in_proj", "attn"}.isdisjoint(names)
    assert dep.proj.out_channels == 128 and dep.qk.out_channels == 128
    # identity folded into the depthwise kernel centre
    assert torch.allclose(dep.cpe1.weight[:, 0, 1, 1], blk.cpe1.weight[:, 0, 1, 1] + 1)
    assert dep.reparameterize() is dep


def test_half_precision_keeps_z_in_float32():
    m = perturb(C2MLLA(64, 64), seed=2).eval()
    d = reparameterize(m).to(torch.bfloat16)  # bfloat16 runs on CPU; fp16 follows the same code path
    blk = next(iter(deploy_blocks(d).values()))
    g = torch.Generator().manual_seed(0)
    att = (torch.rand(1, 2, 32, 64, generator=g) * 50).to(torch.bfloat16)
    k_mean = (torch.rand(1, 2, 1, 32, generator=g) + 1).to(torch.bfloat16)
    q = (torch.rand(1, 2, 32, 64, generator=g) + 1).to(torch.bfloat16)
    want = (att.float() / (k_mean.float() @ q.float() + 1e-6)).to(torch.bfloat16)
    in_bf16 = att * (1.0 / (k_mean @ q + 1e-6))
    assert torch.equal(blk.z(att, k_mean, q), want)
    assert not torch.equal(in_bf16, want)  # the test can tell float32 from bfloat16 arithmetic
    x = torch.randn(1, 64, 8, 8)
    with torch.no_grad():
        y, ref = d(x.to(torch.bfloat16)), m(x)
    assert y.dtype == torch.bfloat16
    assert (y.float() - ref).abs().max().item() < 0.05 * ref.abs().max().item()


# -------------------------------------------------------------------------------------------- walker
def test_walker_copy_by_default_and_inplace(model):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    dep = reparameterize(model)
    assert dep is not model and not is_reparameterized(model) and is_reparameterized(dep)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # source untouched
    assert not any(hasattr(m, "bn") for m in dep.modules())  # Ultralytics Conv+BN fusion applied
    assert len(deploy_blocks(dep)) == 1
    twice = reparameterize(dep, inplace=True)  # safe to call twice
    assert twice is dep and len(deploy_blocks(twice)) == 1


def test_walker_on_yolo_object_and_stock_model(tmp_path):
    from ultralytics import YOLO

    stock = tiny_detector("yolo11n.yaml", seed=1)
    ckpt = tmp_path / "stock.pt"
    save_checkpoint(stock, ckpt)
    yolo = YOLO(str(ckpt))
    sentinel = object()
    yolo.predictor = sentinel  # a predictor cached on the source must not leak into the copy
    out = reparameterize(yolo)
    assert type(out).__name__ == "YOLO" and out.model is not yolo.model
    assert out.predictor is None and yolo.predictor is sentinel
    assert not any(hasattr(m, "bn") for m in out.model.modules())
    x = torch.rand(1, 3, 160, 160)
    with torch.no_grad():
        a, b = yolo.model.eval()(x)[0], out.model(x)[0]
    assert (a - b).abs().max().item() <= 1e-4 * a.abs().max().item()
    res = out.predict(np.zeros((160, 160, 3), np.uint8), imgsz=160, verbose=False)  # still runs in Ultralytics
    assert len(res) == 1


def test_walker_rejects_non_modules():
    with pytest.raises(InputTypeError, match="nn.Module"):
        reparameterize("yolo11n.pt")


# ------------------------------------------------------------------------------------------ whole model
@pytest.mark.parametrize("hw", [(640, 640), (384, 640)])
@pytest.mark.parametrize("source", ["random", "bccd"])
def test_whole_model_equal(model, deployed, val_images, hw, source):
    torch.manual_seed(0)
    x = torch.rand(2, 3, *hw) if source == "random" else bccd_batch(val_images, *hw)
    sizes = bind(deployed, hw)
    assert sizes == {"model.10.m.0": (hw[0] // 32, hw[1] // 32)}
    with torch.no_grad():
        ref, out = model(x)[0], deployed(x)[0]
    assert out.shape == ref.shape == (2, 4 + 3, sum((hw[0] // s) * (hw[1] // s) for s in (8, 16, 32)))
    scale = ref.abs().max().item()
    assert (out - ref).abs().max().item() <= 1e-4 * scale
    norm = torch.tensor([hw[1], hw[0], hw[1], hw[0]] + [1] * 3)[None, :, None]
    assert ((out - ref) / norm).abs().max().item() <= 1e-4


def test_bind_reports_each_block_size_p4_variant():
    m = reparameterize(tiny_detector("yolo11n-mlla-p4.yaml", seed=4))
    sizes = bind(m, (256, 384))
    assert sorted(sizes.values()) == [(8, 12), (16, 24)]
    assert all(deploy_blocks(m)[k].bound == v for k, v in sizes.items())
    assert bind(m, None, dynamic=True) == {} and all(b.dynamic for b in deploy_blocks(m).values())


@pytest.mark.parametrize("bad", [330, (320, 100), 0, -32, (32,) * 3, "640x330", "abc", True, 64.0])
def test_imgsz_rule(bad):
    with pytest.raises(ConfigError, match="imgsz"):
        normalize_imgsz(bad)
    assert normalize_imgsz((384, 640)) == (384, 640) and normalize_imgsz(320) == (320, 320)


def test_imgsz_error_states_the_rule():
    with pytest.raises(ConfigError, match=r"multiple of the model's max stride 32 \(e\.g\. 352x320\)"):
        normalize_imgsz((330, 320))


def test_bundled_weights_whole_model_equal(val_images):
    from conftest import WEIGHTS

    if not WEIGHTS.is_file():  # lands when the bundled training run finishes
        pytest.skip(f"bundled weights not trained yet: {WEIGHTS}")
    from edge_mlla.export import load_detector

    train = load_detector(WEIGHTS)
    dep = reparameterize(train)
    for hw in ((640, 640), (384, 640)):
        bind(dep, hw)
        x = bccd_batch(val_images, *hw, n=1)
        with torch.no_grad():
            ref, out = train(x)[0], dep(x)[0]
        assert (out - ref).abs().max().item() <= 1e-4 * ref.abs().max().item()
