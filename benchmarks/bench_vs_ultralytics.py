"""Ultralytics' deploy path against ours on one checkpoint (a script, not a test): what `edge-mlla bench
--vs-ultralytics` runs, with the settings the recorded results used.

Writes ``<out>/vs_ultralytics.md``, ``.json`` and ``.png`` (default ``benchmarks/results``). Run it alone on the
machine (``/work/bin/quiet`` here: it pauses background work): the ratios are medians of per-round ratios, but a
busy machine still widens them.

Usage:
    .venv/bin/python benchmarks/bench_vs_ultralytics.py [--pt edge_mlla/weights/yolo11n-mlla-bccd.pt] [--data bccd]
        [--rounds 5] [--frames 150] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pt", default=str(ROOT / "edge_mlla" / "weights" / "yolo11n-mlla-bccd.pt"))
    ap.add_argument("--data", default="bccd")
    ap.add_argument("--imgsz", type=int, default=None, help="default: the training size")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--throughput-s", type=float, default=3.0)
    ap.add_argument("--mode", choices=["fast", "thorough"], default="fast")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    from edge_mlla.bench.vs_ultralytics import compare

    res = compare(a.pt, data=a.data, output=a.out, progress=True, imgsz=a.imgsz, rounds=a.rounds, runs=a.runs,
                  frames=a.frames, throughput_s=a.throughput_s, mode=a.mode)  # fmt: skip
    print(res.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
