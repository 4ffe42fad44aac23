"""YOLO26(-MLLA) OpenVINO INT8: what each head needs in float, and what that costs (issue 12 #3).

YOLO26 users report near-zero mAP after OpenVINO INT8. This exports one trained YOLO26 checkpoint with each head
(the one-to-many head with NMS afterwards, the default and Ultralytics' own; the NMS-free end-to-end head), quantizes
each with NNCF MIXED under several float scopes (``quantize/scope.py`` groups) and scores everything on BCCD val
next to its float model:

* ``head,kv_matmul,z``: the default (the head's decoding in float; for the NMS-free head also its TopK /
  GatherElements / class-index arithmetic);
* ``+head_conv``: the head's last 1x1 convs (box and class logits) in float too;
* ``+box``: the head's whole box-regression branches (3 convs per level) in float too;
* ``kv_matmul,z``: the head quantized like every other layer;
* ``none``: everything NNCF would quantize.

Then it times every model (OpenVINO CPU, LATENCY hint, batch 1, median of ``--runs`` per round, rounds interleaved
so drift hits all models alike).

    python benchmarks/yolo26_int8.py runs/study/yolo26n-mlla-s0/weights/best.pt [--imgsz 416] [--calib 64]

Writes ``benchmarks/results/yolo26_int8.md`` (and prints it).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "yolo26_int8.md"
DEFAULT = "head,kv_matmul,z"
SCOPES = (DEFAULT, "head,head_conv,kv_matmul,z", "head,box,kv_matmul,z", "kv_matmul,z", "none")
HEADS = {"one-to-many + NMS (default)": False, "NMS-free end2end": True}


def _latencies(models: list[Path], runs: int, rounds: int) -> list[float]:
    """Median latency (ms) of each IR, rounds interleaved; the median over rounds of the per-round medians."""
    import openvino as ov

    core = ov.Core()
    compiled = [core.compile_model(str(m), "CPU", {"PERFORMANCE_HINT": "LATENCY"}) for m in models]
    xs = [np.random.default_rng(0).random(tuple(c.inputs[0].shape), dtype=np.float32) for c in compiled]
    per: list[list[float]] = [[] for _ in models]
    for _ in range(rounds):
        for i, (c, x) in enumerate(zip(compiled, xs)):
            req = c.create_infer_request()
            for _ in range(5):
                req.infer({0: x})
            t = []
            for _ in range(runs):
                t0 = time.perf_counter()
                req.infer({0: x})
                t.append((time.perf_counter() - t0) * 1e3)
            per[i].append(float(np.median(t)))
    return [float(np.median(p)) for p in per]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--imgsz", type=int, default=416)
    ap.add_argument("--calib", type=int, default=64, help="BCCD train images to calibrate with")
    ap.add_argument("--scopes", default=";".join(SCOPES), help="';'-separated float scopes to quantize with")
    ap.add_argument("--bias-correction", default="full", choices=["full", "fast", "none"])
    ap.add_argument("--runs", type=int, default=50, help="timed runs per model and round")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args(argv)

    from edge_mlla.bench import describe_machine
    from edge_mlla.eval import evaluate
    from edge_mlla.export import export
    from edge_mlla.quantize import quantize

    ckpt = Path(a.checkpoint)
    rows, models = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for head, e2e in HEADS.items():
            xml = export(ckpt, format="openvino", imgsz=a.imgsz, output=Path(tmp) / f"fp{int(e2e)}", end2end=e2e)
            f = evaluate(xml, data="bccd", split="val", backend="openvino", precision="f32", progress=False)
            rows.append([head, "float (f32)", "-", f["mAP50-95"], f["mAP50"], "-"])
            models.append(Path(xml))
            print(f"{head} f32: {f['mAP50-95']:.4f}", flush=True)
            for scope in a.scopes.split(";"):
                t0 = time.time()
                r = quantize(xml, calib="bccd", subset_size=a.calib, preset="mixed", scope=scope, val=None,
                             latency_runs=0, bias_correction=a.bias_correction, progress=False,
                             output=Path(tmp) / f"q{int(e2e)}_{scope.replace(',', '_')}")  # fmt: skip
                m = evaluate(r.output, data="bccd", split="val", backend="openvino", precision="f32", progress=False)
                rows.append([head, f"INT8, float: {scope.replace(DEFAULT, 'default')}", r.details["ignored_nodes"],
                             m["mAP50-95"], m["mAP50"], f"{(f['mAP50-95'] - m['mAP50-95']) * 100:+.2f}"])  # fmt: skip
                models.append(Path(r.output))
                print(f"{head} {scope}: {m['mAP50-95']:.4f} ({time.time() - t0:.0f} s)", flush=True)
        lat = _latencies(models, a.runs, a.rounds)

    mach = describe_machine()
    lines = [
        "# YOLO26 OpenVINO INT8: which ops stay in float",
        "",
        f"Checkpoint `{ckpt}` exported with each head at {a.imgsz} (one-to-many: output (1, 4 + nc, anchors), NMS in",
        f"Detector; NMS-free: (1, 300, 6)); NNCF MIXED, {a.bias_correction} bias correction, {a.calib} BCCD train "
        "images; mAP50-95 / mAP50 on BCCD val (87 images) through `edge_mlla.eval`, OpenVINO at f32 (INT8 where "
        f"quantized). Latency: OpenVINO CPU, LATENCY hint, batch 1, median of {a.runs} runs x {a.rounds} interleaved "
        f"rounds. Machine: {mach.get('cpu', '?')}, {mach['cores']['os_cpu_count']} cores; {time.strftime('%Y-%m-%d')}.",
        f"Reproduce: `python benchmarks/yolo26_int8.py {ckpt}`. `default` = `{DEFAULT}`.",
        "",
        "| head | model | nodes kept in float | mAP50-95 | mAP50 | drop (points) | latency ms |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {h} | {n} | {k} | {m:.4f} | {m50:.4f} | {d} | {ms:.1f} |" for (h, n, k, m, m50, d), ms in zip(rows, lat)]
    text = "\n".join(lines) + "\n"
    OUT.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
