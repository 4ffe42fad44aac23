"""Export form of the split blocks (``C2f``/``C3k2``, ``C2PSA``, ``C2MLLA``): their first 1x1 convolution as two.

Each of these blocks runs ``cv1`` (a 1x1 convolution) and splits its output channels in two halves. OpenVINO runs
that channel split as a ``VariadicSplit`` copy with its reference kernel on the INT8 model's NHWC layout (per-layer
counters of the bundled model's INT8 IR at 416 on a 2-core AVX-512 EPYC: 10 such nodes, 0.09 ms of 6.8). A
convolution's output channels are independent, so ``cv1`` with its weights and bias cut in two computes each half
on its own: the same numbers (the float IRs' outputs were bit-identical on that EPYC), no split in the graph. Detector end
to end at batch 1 on the INT8 IRs, interleaved rounds: 0.977x the latency (6 rounds, 0.975-1.004) while this
shared host ran slow (10 ms a frame), 1.00x while it ran fast (7.4 ms): the reference copies are what a busy memory
system slows most. INT8 mAP50-95 unchanged within calibration noise (BCCD val 0.5516 against 0.5502). The float
models, same A/B: OpenVINO bf16 0.995x, f32 1.007x (the one small cost), ONNX Runtime f32 0.954x; with oneDNN capped
at AVX2 (no VNNI, no BF16): INT8 0.995x, f32 0.997x.

Example:
    >>> import torch
    >>> from ultralytics.nn.modules.block import C3k2
    >>> m = C3k2(16, 32, n=1).eval()
    >>> for c in m.modules():
    ...     if hasattr(c, "bn"):
    ...         c.conv = torch.nn.utils.fuse_conv_bn_eval(c.conv, c.bn); delattr(c, "bn"); c.forward = c.forward_fuse
    >>> x = torch.randn(1, 16, 8, 8)
    >>> ref = m(x)
    >>> split_cv1(m), bool(torch.allclose(m(x), ref, rtol=1e-5, atol=1e-6))
    (1, True)
"""

from __future__ import annotations

import copy
import types

import torch
from torch import nn


def _half(cv1: nn.Module, part: slice) -> nn.Module:
    """A copy of the fused Conv ``cv1`` producing only the output channels ``part``."""
    m = copy.deepcopy(cv1)
    m.conv.weight = nn.Parameter(cv1.conv.weight[part].clone(), requires_grad=False)
    m.conv.bias = nn.Parameter(cv1.conv.bias[part].clone(), requires_grad=False)
    m.conv.out_channels = int(m.conv.weight.shape[0])
    return m


def _c2f_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:  # C2f.forward with cv1 in two
    y = [self.cv1a(x), self.cv1b(x)]
    y.extend(m(y[-1]) for m in self.m)
    return self.cv2(torch.cat(y, 1))


def _c2psa_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:  # C2PSA.forward / C2MLLA.forward with cv1 in two
    return self.cv2(torch.cat((self.cv1a(x), self.m(self.cv1b(x))), 1))


def split_cv1(model: nn.Module) -> int:
    """Give every split block in ``model`` (in place) ``cv1a``/``cv1b`` halves and a forward that uses them; returns
    how many. Only blocks whose forward is the library's own (not a subclass's override) and whose ``cv1`` is a fused
    Conv (bias, no BatchNorm: after ``fuse``) with ``2 * c`` outputs are changed; call after fusing."""
    from ultralytics.nn.modules.block import C2PSA, C2f

    from edge_mlla.nn.modules import C2MLLA

    forms = {C2f.forward: _c2f_forward, C2PSA.forward: _c2psa_forward, C2MLLA.forward: _c2psa_forward}
    n = 0
    for m in model.modules():
        form = forms.get(getattr(type(m), "forward", None))
        cv1, c = getattr(m, "cv1", None), getattr(m, "c", None)
        conv = getattr(cv1, "conv", None)
        if form is None or hasattr(m, "cv1a") or hasattr(cv1, "bn") or getattr(conv, "bias", None) is None:
            continue
        if not isinstance(c, int) or conv.weight.shape[0] != 2 * c:
            continue
        m.cv1a, m.cv1b = _half(cv1, slice(0, c)), _half(cv1, slice(c, 2 * c))
        del m.cv1  # the halves replace it: no unused weights in the exported file
        m.forward = types.MethodType(form, m)
        n += 1
    return n
