"""Experiment: Detect head in an NHWC-friendly export form (boxes per anchor, softmax over the innermost axis).

Usage: nhwc_head.py CKPT OUT [c]   (c: variant C, the softmax written by hand: ReduceMax, Exp, one MatMul for
numerator and denominator)
"""
import sys, types, torch
from torch import nn
import edge_mlla.export.head as H

VARIANT_C = len(sys.argv) > 3 and sys.argv[3] == "c"

class DFLLast(nn.Module):
    def __init__(self, dfl):
        super().__init__()
        self.c1 = int(dfl.c1)
        self.register_buffer("bins", dfl.conv.weight.detach().reshape(self.c1, 1).clone())
        self.register_buffer("w", torch.cat([self.bins, torch.ones_like(self.bins)], 1).clone())
    def forward(self, x):
        b, a, _ = x.shape
        if VARIANT_C:
            x = x.view(b, a, 4, self.c1)
            nd = (x - x.amax(-1, keepdim=True)).exp() @ self.w
            return (nd[..., 0] / nd[..., 1]).transpose(1, 2)
        return (x.view(b, a, 4, self.c1).softmax(-1) @ self.bins).view(b, a, 4).transpose(1, 2)

def forward_head(self, x, box_head=None, cls_head=None):
    if box_head is None or cls_head is None:
        return {}
    bs = x[0].shape[0]
    boxes = torch.cat([box_head[i](x[i]).permute(0, 2, 3, 1).reshape(bs, -1, 4 * self.reg_max) for i in range(self.nl)], 1)
    scores = torch.cat([cls_head[i](x[i]).view(bs, self.nc, -1) for i in range(self.nl)], -1)
    return {"boxes": boxes, "scores": scores, "feats": x}

def swap(model):
    from ultralytics.nn.modules.block import DFL
    heads = [m for m in model.modules() if isinstance(getattr(m, "dfl", None), DFL)]
    for m in heads:
        m.dfl = DFLLast(m.dfl)
        m.forward_head = types.MethodType(forward_head, m)
    return len(heads)

H.swap_dfl = swap
from edge_mlla.export import export
print(export(sys.argv[1], format="openvino", output=sys.argv[2]))
