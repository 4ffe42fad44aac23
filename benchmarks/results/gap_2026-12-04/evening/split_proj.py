"""Experiment: the MLLA deploy block's proj (g and y halves) as two convolutions at export (no channel split)."""
import sys, types, copy, torch
import torch.nn.functional as F
import edge_mlla.export as E
import edge_mlla.nn.modules as M
from edge_mlla.export.blocks import _half

src = M.MLLABlockDeploy.forward
def forward(self, x):
    # the deploy forward with proj's chunk replaced by the two halves
    c, nh = self.dim, self.num_heads
    d = c // nh
    h, w = (int(s) for s in x.shape[-2:])
    n = h * w
    cos_t, sin_t = self._static_tables(h, w, x.device, x.dtype)
    x = self.cpe1(x)
    shortcut = x
    xn = M._normalize_channels(x, self.eps1)
    g, y = self.proj_g(xn), self.proj_y(xn)
    g = F.silu(g)
    v = F.silu(self.dwc(y))
    qk = F.elu(self.qk(v)) + 1.0
    t = qk.reshape(-1, 2, nh, 2, (d // 2) * n)
    rope = (t * cos_t + t.flip(3) * sin_t).reshape(-1, 2 * nh, d, n)
    q_rope, k_rope = rope.chunk(2, dim=1)
    q, k = (p.reshape(-1, nh, d, n) for p in t.reshape(-1, 2, nh * d * n).chunk(2, dim=1))
    k_mean = k.mean(3).unsqueeze(2)
    kv_t = v.reshape(-1, nh, d, n) @ k_rope.transpose(-1, -2)
    y = self.z(kv_t @ q_rope, k_mean, q).reshape(-1, c, h, w) + self.lepe(v)
    x = shortcut + self.out_proj(y * g)
    x = self.cpe2(x)
    return x + self.fc2(F.gelu(self.fc1(M._normalize_channels(x, self.eps2))))

class Wrap(torch.nn.Module):
    def __init__(self, conv): super().__init__(); self.conv = conv
orig = E._prepare
def prepare(model, *a, **k):
    model = orig(model, *a, **k)
    n = 0
    for m in model.modules():
        if isinstance(m, M.MLLABlockDeploy):
            c = m.dim
            for name, sl in (("proj_g", slice(0, c)), ("proj_y", slice(c, 2 * c))):
                conv = copy.deepcopy(m.proj)
                conv.weight = torch.nn.Parameter(m.proj.weight[sl].clone(), requires_grad=False)
                conv.bias = torch.nn.Parameter(m.proj.bias[sl].clone(), requires_grad=False)
                conv.out_channels = c
                setattr(m, name, conv)
            m.forward = types.MethodType(forward, m)
            n += 1
    print("split proj", n)
    return model
E._prepare = prepare
print(E.export(sys.argv[1], format="openvino", output=sys.argv[2]))
