"""Experiment: split_cv1 plus C2f's cv2 over the concat as a sum of partial 1x1 convolutions (no concat)."""
import sys, types, torch
import torch.nn.functional as F
sys.argv, out = sys.argv[:2] + [sys.argv[2]], sys.argv[2]
exec(open(__file__.replace("split_cat.py", "split_cv1.py")).read().split("orig = E._prepare")[0])

def c2f_forward_sum(self, x):
    y = [self.cv1a(x), self.cv1b(x)]
    y.extend(m(y[-1]) for m in self.m)
    w, b = self.cv2.conv.weight, self.cv2.conv.bias
    s, acc = 0, None
    for t in y:
        c = t.shape[1]
        p = F.conv2d(t, w[:, s:s + c])
        acc = p if acc is None else acc + p
        s += c
    return self.cv2.act(acc + b.view(1, -1, 1, 1))

orig = E._prepare
def prepare(model, *a, **k):
    model = orig(model, *a, **k)
    from ultralytics.nn.modules.block import C2f
    for m in model.modules():
        if isinstance(m, C2f):
            m.cv1a, m.cv1b = halves(m.cv1, m.c)
            m.forward = types.MethodType(c2f_forward_sum, m)
    return model
E._prepare = prepare
print(E.export(sys.argv[1], format="openvino", output=out))
