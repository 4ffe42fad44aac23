"""Interleaved A/B of one model under Detector settings: the default against each JSON set of Detector keywords,
e.g. ab_config.py X.xml '{"config": {"ENABLE_CPU_PINNING": false}}' '{"precision": "f32"}' (5 rounds).
(The f32-float-ops run on the INT8 IR was '{"precision": "f32"}'; OpenVINO properties go under "config".)"""
import json, os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _ab import rounds
from edge_mlla import Detector
from edge_mlla.bench.run import default_image
from edge_mlla.ops import read_image
img = read_image(default_image())
kws = [{}] + [json.loads(c) for c in sys.argv[2:]]
dets = [Detector(sys.argv[1], **kw) for kw in kws]
for d in dets:
    for _ in range(20): d(img)
rounds([lambda d=d: d(img) for d in dets], 5, 150, ["default"] + sys.argv[2:])
