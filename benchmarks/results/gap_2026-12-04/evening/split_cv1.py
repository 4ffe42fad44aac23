"""Experiment: C2f/C3k2/C2MLLA's cv1 split into two convolutions at export (no channel split in the graph)."""
import sys, types, copy, torch
import edge_mlla.export as E

def halves(conv_mod, c):
    out = []
    for sl in (slice(0, c), slice(c, 2 * c)):
        m = copy.deepcopy(conv_mod)
        m.conv.weight = torch.nn.Parameter(conv_mod.conv.weight[sl].clone(), requires_grad=False)
        if m.conv.bias is not None:
            m.conv.bias = torch.nn.Parameter(conv_mod.conv.bias[sl].clone(), requires_grad=False)
        m.conv.out_channels = c
        assert not hasattr(m, "bn") or not isinstance(getattr(m, "bn", None), torch.nn.BatchNorm2d) or True
        out.append(m)
    return out

def c2f_forward(self, x):
    y = [self.cv1a(x), self.cv1b(x)]
    y.extend(m(y[-1]) for m in self.m)
    return self.cv2(torch.cat(y, 1))

def c2mlla_forward(self, x):
    return self.cv2(torch.cat((self.cv1a(x), self.m(self.cv1b(x))), 1))

orig = E._prepare
def prepare(model, *a, **k):
    model = orig(model, *a, **k)
    from ultralytics.nn.modules.block import C2f
    from edge_mlla.nn.modules import C2MLLA
    n = 0
    for m in model.modules():
        if isinstance(m, (C2f, C2MLLA)):
            assert not hasattr(m.cv1, "bn"), "expects fused convs"
            m.cv1a, m.cv1b = halves(m.cv1, m.c)
            m.forward = types.MethodType(c2f_forward if isinstance(m, C2f) else c2mlla_forward, m)
            n += 1
    print("split", n)
    return model
E._prepare = prepare
print(E.export(sys.argv[1], format="openvino", output=sys.argv[2]))
