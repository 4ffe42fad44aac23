"""A/B: float IR/ONNX exported with and without split_cv1 (export_nosplit.py), Detector end to end at batch 1.
Usage: ab_float.py OLD.xml NEW.xml OLD.onnx NEW.onnx   (bf16, f32 on OpenVINO, then ONNX Runtime; 4 rounds each)"""
import os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _ab import rounds
from edge_mlla import Detector
from edge_mlla.bench.run import default_image
from edge_mlla.ops import read_image
img = read_image(default_image())
for kw, files in (({"precision": "bf16"}, sys.argv[1:3]), ({"precision": "f32"}, sys.argv[1:3]),
                  ({"backend": "onnxruntime"}, sys.argv[3:5])):
    dets = [Detector(p, **kw) for p in files]
    for d in dets:
        for _ in range(10): d(img)
    print(kw)
    rounds([lambda d=d: d(img) for d in dets], 4, 60, ["old", "new"])
    for d in dets: d.close()
