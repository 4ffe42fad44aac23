"""Export form of the detect head's box decoding: Ultralytics' ``DFL`` without its transpose and 1x1 convolution.

``DFL`` turns each box side's ``reg_max`` (16) logits into the expected distance: ``softmax`` over the bins, then a
1x1 convolution whose fixed weights are ``0..15``. To get the bins onto the channel axis of that convolution it
transposes (B, 4, 16, A) to (B, 16, 4, A). OpenVINO runs the transpose as a ``Transpose`` plus a ``Reorder`` of the
softmax output into the convolution's blocked layout: per-layer counters of the bundled model's INT8 IR at 416 on a
2-core AVX-512 EPYC: 0.16 + 0.04 ms, about 2% of a frame, for arithmetic that is a 16-term dot product.
:class:`DFLExport` computes the same expectation as a ``MatMul`` of the bins row (1, 16) with the softmax over the
bin axis where it lies: same numbers to float rounding, no transpose. Detector end to end at batch 1 on the INT8
IRs, interleaved rounds: 0.978x the latency with a softmax + ``ReduceSum`` form (OpenVINO keeps that one's head in
f32), then 0.970x of that with this ``MatMul`` form (its head runs in the native bf16, as Ultralytics' DFL convolution
does); INT8 mAP50-95 unchanged (BCCD val 0.5502 vs 0.5505, test 0.5568 both).

Example:
    >>> import torch
    >>> from ultralytics.nn.modules.block import DFL
    >>> x = torch.randn(2, 64, 100)
    >>> bool(torch.allclose(DFLExport(DFL(16))(x), DFL(16)(x), atol=1e-5))
    True
"""

from __future__ import annotations

import torch
from torch import nn


class DFLExport(nn.Module):
    """Ultralytics' ``DFL`` (distribution focal loss decoding) as softmax over the bin axis and a MatMul by the bins."""

    def __init__(self, dfl: nn.Module) -> None:
        super().__init__()
        self.c1 = int(dfl.c1)
        self.register_buffer("bins", dfl.conv.weight.detach().reshape(1, self.c1).clone())  # 0..c1-1 as a row

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, a = x.shape  # (batch, 4 * c1, anchors) -> (batch, 4, anchors)
        return (self.bins @ x.view(b, 4, self.c1, a).softmax(2)).view(b, 4, a)  # (1, c1) @ (b, 4, c1, a)


def swap_dfl(model: nn.Module) -> int:
    """Replace every detect head's ``DFL`` in ``model`` (in place) by :class:`DFLExport`; returns how many.
    Heads without distribution bins (``reg_max=1``, e.g. YOLO26: ``nn.Identity``) are left as they are."""
    from ultralytics.nn.modules.block import DFL

    heads = [m for m in model.modules() if isinstance(getattr(m, "dfl", None), DFL)]
    for m in heads:
        m.dfl = DFLExport(m.dfl)
    return len(heads)
