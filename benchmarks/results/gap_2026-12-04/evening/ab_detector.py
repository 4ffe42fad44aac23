"""Interleaved A/B of Detector end to end at batch 1 (latency hint) on model files: per-round medians and ratios.
Usage: ab_detector.py A.xml B.xml [...]   (ROUNDS=6 by default)"""
import os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _ab import rounds
from edge_mlla import Detector
from edge_mlla.bench.run import default_image
from edge_mlla.ops import read_image
img = read_image(default_image())
dets = [Detector(p, conf=0.25, iou=0.45) for p in sys.argv[1:]]
for d in dets:
    for _ in range(20): d(img)
rounds([lambda d=d: d(img) for d in dets], int(os.environ.get("ROUNDS", 6)), 150, [os.path.basename(p) for p in sys.argv[1:]])
