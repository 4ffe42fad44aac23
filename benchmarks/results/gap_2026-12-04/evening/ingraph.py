import sys, time, statistics, glob
import numpy as np
import openvino as ov
import openvino.opset13 as op
sys.path.insert(0, ".")  # run from the repo root
sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.abspath(__file__)))
from _ab import rounds
from runtimes.openvino import _fuse_preprocess
from edge_mlla.ops import preprocess, postprocess, read_image

xml = sys.argv[1]
core = ov.Core()
model = _fuse_preprocess(ov, core.read_model(xml))
y = model.get_results()[0].input_value(0)
nc = y.get_partial_shape()[1].get_length() - 4
parts = op.variadic_split(y, 1, [2, 2, nc])
xy, wh, sc = parts.output(0), parts.output(1), parts.output(2)
half = op.multiply(wh, op.constant(np.float32(0.5)))
xyxy = op.concat([op.subtract(xy, half), op.add(xy, half)], 1)
boxes = op.transpose(xyxy, op.constant(np.array([0, 2, 1], np.int64)))
tk = op.topk(sc, op.constant(np.int64(1)), 1, "max", "value", "i32", stable=True)
best, idx = tk.output(0), tk.output(1)
oh = op.one_hot(op.squeeze(idx, op.constant(np.int64(1))), op.constant(np.int64(nc)), op.constant(np.float32(1)), op.constant(np.float32(0)), 1)
masked = op.add(op.multiply(best, oh), op.subtract(oh, op.constant(np.float32(1))))
conf_p = op.parameter([], ov.Type.f32, name="conf")
iou_p = op.parameter([], ov.Type.f32, name="iou")
md_p = op.parameter([], ov.Type.i64, name="max_det")
nms = op.non_max_suppression(boxes, masked, md_p, iou_p, conf_p, box_encoding="corner", sort_result_descending=True, output_type="i64")
sel, ssc = nms.output(0), nms.output(1)
bidx = op.gather(sel, op.constant(np.int64(2)), op.constant(np.int64(1)))
cls = op.gather(sel, op.constant(np.int64(1)), op.constant(np.int64(1)))
bat = op.gather(sel, op.constant(np.int64(0)), op.constant(np.int64(1)))
# boxes flattened over batch: index = b * N + i
N = boxes.output(0).get_partial_shape()[1].get_length()
flat = op.reshape(boxes, op.constant(np.array([-1, 4], np.int64)), False)
rows = op.gather(flat, op.add(op.multiply(bat, op.constant(np.int64(N))), bidx), op.constant(np.int64(0)))
score = op.gather(ssc, op.constant(np.int64(2)), op.constant(np.int64(1)))
det = op.concat([op.unsqueeze(op.convert(bat, "f32"), op.constant(np.int64(1))), rows,
                 op.unsqueeze(score, op.constant(np.int64(1))), op.unsqueeze(op.convert(cls, "f32"), op.constant(np.int64(1)))], 1)
det.output(0).get_tensor().set_names({"detections"})
m2 = ov.Model([model.get_results()[0], op.result(det)], [*model.get_parameters(), conf_p, iou_p, md_p], "with_nms")
props = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": sys.argv[2] if len(sys.argv) > 2 else "bf16"}
cm = core.compile_model(m2, "CPU", props)
cm0 = core.compile_model(model, "CPU", props)
req, req0 = cm.create_infer_request(), cm0.create_infer_request()
files = sorted(glob.glob("edge_mlla/data/bccd/images/val/*")) + sorted(glob.glob("edge_mlla/data/bccd/images/test/*"))
mism = 0; total = 0
for conf, iou in ((0.25, 0.45), (0.001, 0.7), (0.5, 0.3)):
    for f in files:
        img = read_image(f)
        x, metas = preprocess([img], 416, 32, rgb=False, batch_size=1, layout="nhwc_u8")
        req.infer({0: x, 1: np.float32(conf), 2: np.float32(iou), 3: np.int64(300)}, share_inputs=True)
        raw = req.get_output_tensor(0).data.copy(); d = req.get_output_tensor(1).data.copy()
        ref = postprocess(raw, metas, conf=conf, iou=iou, max_det=300)[0]
        from edge_mlla.ops.letterbox import scale_boxes
        got = scale_boxes(d[:300, 1:5].astype(np.float32), metas[0], clip=True)
        total += 1
        def canon(b, s_, c):
            a = np.column_stack([b, s_, c]).astype(np.float64)
            return a[np.lexsort(a.T[::-1])]
        setok = len(got) == len(ref.xyxy) and np.array_equal(canon(got, d[:300,5], d[:300,6]), canon(ref.xyxy, ref.confidence, ref.class_id))
        setmism = globals().setdefault("setmism", [0]); setmism[0] += (not setok)
        ok = len(got) == len(ref.xyxy) and np.array_equal(got, ref.xyxy) and np.array_equal(d[:300, 5], ref.confidence) and np.array_equal(d[:300, 6].astype(int), ref.class_id)
        if not ok:
            mism += 1
            if mism < 4: print("mismatch", f, conf, iou, len(got), len(ref.xyxy), np.abs(got[:len(ref.xyxy)] - ref.xyxy[:len(got)]).max() if len(got) and len(ref.xyxy) else None)
print(f"{mism}/{total} mismatches (order), {setmism[0]} as sets")

from edge_mlla.bench.run import default_image
from edge_mlla.results import Detections
from edge_mlla.ops.letterbox import scale_boxes
img = read_image(default_image())
names = {0: "a", 1: "b", 2: "c"}
def old():
    x, metas = preprocess([img], 416, 32, rgb=False, batch_size=1, layout="nhwc_u8")
    req0.infer({0: x}, share_inputs=True, share_outputs=True)
    raw = req0.get_output_tensor(0).data.copy()
    return postprocess(raw, metas, conf=0.25, iou=0.45, max_det=300, names=names)[0]
cf, io, mdt = np.float32(0.25), np.float32(0.45), np.int64(300)
def new():
    x, metas = preprocess([img], 416, 32, rgb=False, batch_size=1, layout="nhwc_u8")
    req.infer({0: x, 1: cf, 2: io, 3: mdt}, share_inputs=True, share_outputs=True)
    d = req.get_output_tensor(1).data
    return Detections(xyxy=np.ascontiguousarray(scale_boxes(d[:, 1:5].astype(np.float32), metas[0], clip=True)), confidence=d[:, 5].copy(), class_id=d[:, 6].astype(np.int64), names=names)
for _ in range(20): old(); new()
rounds([old, new], 3, 300, ["python NMS", "in-graph NMS"])

print("--- decode-only variant")
dec = op.concat([boxes, op.transpose(best, op.constant(np.array([0, 2, 1], np.int64))), op.transpose(op.convert(idx, "f32"), op.constant(np.array([0, 2, 1], np.int64)))], 2)
m3 = ov.Model([op.result(dec)], list(model.get_parameters()), "decoded")
cm3 = core.compile_model(m3, "CPU", props); req3 = cm3.create_infer_request()
from edge_mlla.ops.boxes import nms as _nms
def dec_only():
    x, metas = preprocess([img], 416, 32, rgb=False, batch_size=1, layout="nhwc_u8")
    req3.infer({0: x}, share_inputs=True, share_outputs=True)
    d = req3.get_output_tensor(0).data[0]
    cand = np.flatnonzero(d[:, 4] > 0.25)
    r = d[cand]
    keep = _nms(r[:, :4], r[:, 4], 0.45, r[:, 5], 300)
    r = r[keep]
    return Detections(xyxy=np.ascontiguousarray(scale_boxes(r[:, :4], metas[0], clip=True)), confidence=r[:, 4].copy(), class_id=r[:, 5].astype(np.int64), names=names)
a, b = old(), dec_only()
print("same:", np.array_equal(a.xyxy, b.xyxy), np.array_equal(a.confidence, b.confidence), np.array_equal(a.class_id, b.class_id))
for _ in range(20): dec_only()
rounds([old, dec_only], 3, 300, ["python decode", "decode in graph"])
