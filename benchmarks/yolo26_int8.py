"""YOLO26(-MLLA) OpenVINO INT8: what the NMS-free head needs in float (issue 12 #3).

YOLO26 users report near-zero mAP after OpenVINO INT8. This quantizes one trained YOLO26 checkpoint's end-to-end
export with NNCF MIXED three ways and scores each on BCCD val next to the float model:

* the default scope (``head,kv_matmul,z``: the head's decoding, TopK / GatherElements / class-index arithmetic
  in float);
* ``kv_matmul,z`` (the head quantized like every other layer);
* ``none`` (everything NNCF would quantize).

    python benchmarks/yolo26_int8.py runs/study/yolo26n-mlla-s0/weights/last.pt [--imgsz 416] [--calib 64]

Writes ``benchmarks/results/yolo26_int8.md`` (and prints it).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "yolo26_int8.md"
SCOPES = ("head,kv_matmul,z", "kv_matmul,z", "none")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--imgsz", type=int, default=416)
    ap.add_argument("--calib", type=int, default=64, help="BCCD train images to calibrate with")
    a = ap.parse_args(argv)

    from edge_mlla.bench import describe_machine
    from edge_mlla.eval import evaluate
    from edge_mlla.export import export
    from edge_mlla.quantize import quantize

    ckpt = Path(a.checkpoint)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        xml = export(ckpt, format="openvino", imgsz=a.imgsz, output=Path(tmp) / "fp")  # end2end: the NMS-free head
        f = evaluate(xml, data="bccd", split="val", backend="openvino", precision="f32", progress=False)
        rows.append(("float (f32)", "-", f["mAP50-95"], f["mAP50"], "-"))
        for scope in SCOPES:
            t0 = time.time()
            r = quantize(xml, calib="bccd", subset_size=a.calib, preset="mixed", scope=scope, val=None, latency_runs=0,
                         output=Path(tmp) / f"q_{scope.replace(',', '_')}")  # fmt: skip
            m = evaluate(r.output, data="bccd", split="val", backend="openvino", precision="f32", progress=False)
            rows.append((f"INT8 MIXED, float: {scope}", r.details.get("ignored_nodes", "-"), m["mAP50-95"], m["mAP50"],
                         f"{(f['mAP50-95'] - m['mAP50-95']) * 100:+.2f}"))  # fmt: skip
            print(f"{scope}: {m['mAP50-95']:.4f} ({time.time() - t0:.0f} s)", flush=True)

    mach = describe_machine()
    lines = [
        "# YOLO26 OpenVINO INT8: which ops stay in float",
        "",
        f"Checkpoint `{ckpt}` exported end to end (NMS-free head, output (1, 300, 6)) at {a.imgsz}; NNCF MIXED, full bias",
        f"correction, {a.calib} BCCD train images; mAP50-95 / mAP50 on BCCD val (87 images) through `edge_mlla.eval`,",
        f"OpenVINO at f32. Machine: {mach.get('cpu', '?')}, {mach['cores']['os_cpu_count']} cores; {time.strftime('%Y-%m-%d')}.",
        f"Reproduce: `python benchmarks/yolo26_int8.py {ckpt}`.",
        "",
        "| model | nodes kept in float | mAP50-95 | mAP50 | drop (points) |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [f"| {n} | {k} | {m:.4f} | {m50:.4f} | {d} |" for n, k, m, m50, d in rows]
    text = "\n".join(lines) + "\n"
    OUT.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
