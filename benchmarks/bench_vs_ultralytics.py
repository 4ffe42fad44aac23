"""Ultralytics' deploy path against ours on one checkpoint (a script, not a test): what `edge-mlla bench
--vs-ultralytics` runs, with the settings the recorded results used.

Writes ``<out>/vs_ultralytics.md``, ``.json`` and ``.png`` (default ``benchmarks/results``). Run it alone on the
machine (``/work/bin/quiet`` here: it pauses background work): the ratios are medians of per-round ratios, but a
busy machine still widens them.

``--stream``: instead, how close ``StreamRunner`` comes to ``benchmark_app`` on the same IR and hint (throughput),
for our float model at f32 and bf16 (where the CPU has it) and our INT8 model, interleaved rounds; writes
``<out>/stream_vs_benchmark_app.{md,json}``.

Usage:
    .venv/bin/python benchmarks/bench_vs_ultralytics.py [--pt edge_mlla/weights/yolo11n-mlla-bccd.pt] [--data bccd]
        [--rounds 5] [--frames 150] [--out benchmarks/results]
    .venv/bin/python benchmarks/bench_vs_ultralytics.py --stream [--rounds 3] [--frames 300]
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
    ap.add_argument("--stream", action="store_true", help="StreamRunner against benchmark_app instead")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if a.stream:
        return stream_study(a)
    from edge_mlla.bench.vs_ultralytics import compare

    res = compare(a.pt, data=a.data, output=a.out, progress=True, imgsz=a.imgsz, rounds=a.rounds, runs=a.runs,
                  frames=a.frames, throughput_s=a.throughput_s, mode=a.mode)  # fmt: skip
    print(res.table())
    return 0


def stream_study(a: argparse.Namespace) -> int:
    """StreamRunner FPS over benchmark_app FPS, same IR, same hint (throughput), same precision, interleaved."""
    import json
    import statistics
    import tempfile
    import time
    import warnings

    from edge_mlla import Detector
    from edge_mlla.bench.machine import describe_machine, machine_line
    from edge_mlla.bench.measure import interleaved
    from edge_mlla.bench.vs_ultralytics import benchmark_app_fps
    from edge_mlla.clips import bundled_clip
    from edge_mlla.export import export
    from edge_mlla.quantize import quantize
    from edge_mlla.stream import StreamRunner

    work = Path(tempfile.mkdtemp(prefix="stream_study_"))
    xml = Path(export(a.pt, format="openvino", imgsz=a.imgsz, output=work))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = Path(quantize(xml, calib=a.data, output=work / "int8", progress=False, latency_runs=0).output)
    cases = [("f32", xml, "f32"), ("bf16", xml, None), ("int8", q, None)]
    dets = {}
    for name, path, prec in cases:
        try:
            dets[name] = (Detector(path, precision=prec, hint="throughput"), path, prec)
        except Exception as e:  # noqa: BLE001  (bf16 on a CPU without it: said, not measured)
            print(f"{name}: not measured: {e}")
    clip = bundled_clip()

    def stream(det) -> float:  # noqa: ANN001
        n, t0 = 0, time.perf_counter()
        with StreamRunner(det, clip, max_frames=a.frames) as run:
            for _ in run:
                n += 1
        return n / (time.perf_counter() - t0)

    measures = []
    for name, (det, path, prec) in dets.items():
        pr = None if name == "int8" else (prec or det.float_precision)  # the precision the stream ran in
        measures += [lambda r, d=det: stream(d), lambda r, p=path, pr=pr: benchmark_app_fps(p, a.throughput_s, precision=pr)]
    got = interleaved(measures, a.rounds, combine=list)
    res = {"machine": describe_machine(), "frames": a.frames, "rounds": a.rounds, "rows": []}
    for i, (name, (det, _, _)) in enumerate(dets.items()):
        s_fps, b_fps = got[2 * i], got[2 * i + 1]
        res["rows"].append({"precision": name if name != "int8" else f"int8 ({det.float_precision} float ops)",
                            "stream_fps": round(statistics.median(s_fps), 1),
                            "benchmark_app_fps": round(statistics.median(b_fps), 1),
                            "ratio": round(statistics.median(x / y for x, y in zip(s_fps, b_fps)), 3),
                            "rounds": {"stream": s_fps, "benchmark_app": b_fps}})  # fmt: skip
        det.close()
    lines = [f"# StreamRunner against benchmark_app (same IR, throughput hint), {Path(a.pt).name}", "",
             f"**Machine**: {machine_line(res['machine'])}; {res['machine']['date']}. {a.rounds} interleaved rounds, "
             f"{a.frames} frames of bccd_pan.mp4 per stream run, ratio = median of per-round ratios.", "",
             "| precision | StreamRunner FPS | benchmark_app FPS | ratio |", "|---|---:|---:|---:|"]  # fmt: skip
    lines += [f"| {r['precision']} | {r['stream_fps']:.1f} | {r['benchmark_app_fps']:.1f} | {r['ratio']:.2f} |"
              for r in res["rows"]]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "stream_vs_benchmark_app.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    (out / "stream_vs_benchmark_app.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
