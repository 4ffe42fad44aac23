"""Experiment: the letterbox's resize and padding inside the compiled model, for frames of one fixed size."""
import sys, time, statistics
import numpy as np, cv2, openvino as ov
import openvino.opset13 as op
from openvino.preprocess import ColorFormat, PrePostProcessor
from edge_mlla.runtimes import openvino as rov
from edge_mlla.ops import preprocess, read_image
from edge_mlla.ops.letterbox import letterbox_meta
from edge_mlla.bench.run import default_image

xml = sys.argv[1]
img = read_image(default_image())
H0, W0 = img.shape[:2]
meta = letterbox_meta((H0, W0), 416, 32, False)
(left, top), (uh, uw) = meta.pad, meta.resized_shape
core = ov.Core()

def build(rnd=True):
    model = core.read_model(xml)
    ppp = PrePostProcessor(model)
    inp = ppp.input(0)
    inp.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(ColorFormat.BGR).set_shape([1, H0, W0, 3])
    inp.model().set_layout(ov.Layout("NCHW"))
    def resize_pad(node):
        r = op.interpolate(node, op.constant(np.array([uh, uw], np.int64)), "linear", "sizes",
                           axes=op.constant(np.array([1, 2], np.int64)), coordinate_transformation_mode="half_pixel")
        return op.pad(r, op.constant(np.array([0, top, left, 0], np.int64)),
                      op.constant(np.array([0, 416 - uh - top, 416 - uw - left, 0], np.int64)), "constant", op.constant(np.uint8(114))).output(0)
    inp.preprocess().custom(resize_pad).convert_element_type(ov.Type.f32).convert_color(ColorFormat.RGB).scale(255.0)
    return ppp.build()

props = {"PERFORMANCE_HINT": "LATENCY"}
cg = core.compile_model(build(), "CPU", props)
cb = core.compile_model(rov._fuse_preprocess(ov, core.read_model(xml)), "CPU", props)
rg, rb = cg.create_infer_request(), cb.create_infer_request()
# pixel check: the graph's letterboxed image is not an output; compare model outputs instead
x, metas = preprocess([img], 416, 32, rgb=False, batch_size=1, layout="nhwc_u8")
frame = np.ascontiguousarray(img[None])
rb.infer({0: x}); ob = rb.get_output_tensor(0).data.copy()
rg.infer({0: frame}); og = rg.get_output_tensor(0).data.copy()
print("output max |diff| boxes", np.abs(ob[:, :4] - og[:, :4]).max(), "scores", np.abs(ob[:, 4:] - og[:, 4:]).max())
for _ in range(30): rg.infer({0: frame}); rb.infer({0: x})
def base():
    x, metas = preprocess([img], 416, 32, rgb=False, batch_size=1, layout="nhwc_u8")
    rb.infer({0: x}, share_inputs=True)
def graph():
    rg.infer({0: np.ascontiguousarray(img[None])}, share_inputs=True)
for rnd in range(5):
    tb, tg = [], []
    for k in range(200):
        for fn, acc in ((base, tb), (graph, tg)) if k % 2 else ((graph, tg), (base, tb)):
            a = time.perf_counter(); fn(); acc.append(time.perf_counter() - a)
    mb, mg = statistics.median(tb) * 1e3, statistics.median(tg) * 1e3
    print(f"round {rnd}: letterbox+infer {mb:.3f} ms, in-graph {mg:.3f} ms, ratio {mg/mb:.3f}")
