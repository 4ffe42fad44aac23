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
    .venv/bin/python benchmarks/bench_vs_ultralytics.py --simulate-avx2 --out benchmarks/results/avx2
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
    ap.add_argument("--simulate-avx2", action="store_true",
                    help="run both paths as on a CPU with AVX2 only (no AVX-512, no BF16): see simulate_avx2()")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if a.simulate_avx2:
        simulate_avx2()
    if a.stream:
        return stream_study(a)
    from edge_mlla.bench.vs_ultralytics import compare

    res = compare(a.pt, data=a.data, output=a.out, progress=True, imgsz=a.imgsz, rounds=a.rounds, runs=a.runs,
                  frames=a.frames, throughput_s=a.throughput_s, mode=a.mode)  # fmt: skip
    print(res.table())
    if a.simulate_avx2:
        md = Path(a.out) / "vs_ultralytics.md"
        lines = md.read_text().splitlines()
        lines.insert(3, SIMULATED)
        md.write_text("\n".join(lines) + "\n")
    return 0


SIMULATED = ("**Simulated AVX2-only CPU** (`--simulate-avx2`): oneDNN limited to AVX2 (`ONEDNN_MAX_CPU_ISA=AVX2`: the "
             "convolutions run `jit_avx2` kernels; a few of OpenVINO's own elementwise kernels still use AVX-512), float "
             "ops in f32 for both paths (what OpenVINO picks on a CPU without BF16; Ultralytics' compile gets it through "
             "the Core default, ours through `EDGE_MLLA_CAPS=avx2`), `benchmark_app -infer_precision f32`. Same cores, "
             "caches and clock as the machine line says: an ISA simulation, not a different CPU.\n")


def simulate_avx2() -> None:
    """Make this process, and the benchmark_app processes it starts, run as on a CPU with AVX2 only: oneDNN's ISA
    capped at AVX2 (before OpenVINO loads), every OpenVINO Core defaulting to f32 (on this host OpenVINO would pick
    bf16, which has no AVX2 kernels: compiling then fails), our precision policy told the CPU has AVX2 only."""
    import os

    os.environ["ONEDNN_MAX_CPU_ISA"] = "AVX2"
    from edge_mlla.runtimes.capabilities import CAPS_ENV

    os.environ[CAPS_ENV] = "avx2"
    import openvino as ov

    init = ov.Core.__init__

    def core_init(self, *args, **kwargs) -> None:  # noqa: ANN001, ANN002, ANN003
        init(self, *args, **kwargs)
        self.set_property("CPU", {"INFERENCE_PRECISION_HINT": "f32"})

    ov.Core.__init__ = core_init
    import edge_mlla.bench.vs_ultralytics as vs

    app = vs.benchmark_app_fps
    vs.benchmark_app_fps = lambda xml, seconds, hint="throughput", precision=None: app(xml, seconds, hint, precision or "f32")


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

    def stream(det) -> tuple[float, float]:  # noqa: ANN001
        """(steady FPS: the frames after the first over the time since the first result, as benchmark_app leaves its
        warm-up out; FPS from the runner's start, opening the clip included)."""
        n, t0, t1 = 0, time.perf_counter(), 0.0
        with StreamRunner(det, clip, max_frames=a.frames) as run:
            for _ in run:
                n += 1
                if n == 1:
                    t1 = time.perf_counter()
        t = time.perf_counter()
        return (n - 1) / (t - t1), n / (t - t0)

    measures = []
    for name, (det, path, prec) in dets.items():
        pr = None if name == "int8" else (prec or det.float_precision)  # the precision the stream ran in
        measures += [lambda r, d=det: stream(d), lambda r, p=path, pr=pr: benchmark_app_fps(p, a.throughput_s, precision=pr)]
    got = interleaved(measures, a.rounds, combine=list)
    res = {"machine": describe_machine(), "frames": a.frames, "rounds": a.rounds, "rows": []}
    for i, (name, (det, _, _)) in enumerate(dets.items()):
        s_fps, b_fps = [v[0] for v in got[2 * i]], got[2 * i + 1]
        whole = [v[1] for v in got[2 * i]]
        res["rows"].append({"precision": name if name != "int8" else f"int8 ({det.float_precision} float ops)",
                            "stream_fps": round(statistics.median(s_fps), 1),
                            "stream_fps_from_start": round(statistics.median(whole), 1),
                            "ratio_from_start": round(statistics.median(x / y for x, y in zip(whole, b_fps)), 3),
                            "benchmark_app_fps": round(statistics.median(b_fps), 1),
                            "ratio": round(statistics.median(x / y for x, y in zip(s_fps, b_fps)), 3),
                            "rounds": {"stream": s_fps, "stream_from_start": whole, "benchmark_app": b_fps}})  # fmt: skip
        det.close()
    lines = [f"# StreamRunner against benchmark_app (same IR, throughput hint), {Path(a.pt).name}", "",
             f"**Machine**: {machine_line(res['machine'])}; {res['machine']['date']}. {a.rounds} interleaved rounds, "
             f"{a.frames} frames of bccd_pan.mp4 per stream run, ratio = median of per-round ratios. StreamRunner FPS: "
             "steady (frames after the first result over the time since it; benchmark_app also leaves its warm-up "
             "out) and from the runner's start (opening the clip and the first frame's latency included).", "",
             "| precision | StreamRunner FPS steady | from start | benchmark_app FPS | ratio steady | from start |",
             "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    lines += [f"| {r['precision']} | {r['stream_fps']:.1f} | {r['stream_fps_from_start']:.1f} | {r['benchmark_app_fps']:.1f} "
              f"| {r['ratio']:.2f} | {r['ratio_from_start']:.2f} |" for r in res["rows"]]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "stream_vs_benchmark_app.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    (out / "stream_vs_benchmark_app.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
