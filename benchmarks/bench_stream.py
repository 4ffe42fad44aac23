"""Stream throughput on the bundled clip: StreamRunner and the camera sample against ``benchmark_app``, per-stage
milliseconds, 1/2/4 sources into one Detector, and a 2,000-frame soak (RSS growth).

For each IR (the bundled model exported at 640, OpenVINO at its default precision f32, and its NNCF INT8 copy):

* ``benchmark_app -hint throughput -infer_precision f32``: the runtime alone on random data (the ceiling);
* ``runner``: ``StreamRunner(Detector(xml, hint="throughput"), clip, max_inflight=requests + 1)`` over every
  frame of the clip, no drawing: decode + letterbox + inference + decode/NMS, the SDK's stream FPS;
* ``sample``: ``samples/camera.py`` on the same clip, drawing and writing an mp4v video (and with ``--track --line``).

benchmark_app runs before and after the runner in the same round and the ratio uses their mean, so background
load hits both alike (the machine is shared: read ratios, not absolute FPS). Then 1, 2 and 4 copies of the
clip go through one runner (INT8; batch-1 IR through async requests, and a fixed batch-4 f32 IR through
padded batches), and 2,000 frames of the looped clip through the INT8 runner measure RSS growth.
Not a test: run it by hand; it writes benchmarks/results/bench_stream.md and .json.

    .venv/bin/python benchmarks/bench_stream.py            # ~10 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WEIGHTS = ROOT / "edge_mlla" / "weights" / "yolo11n-mlla-bccd.pt"
BENCHMARK_APP = Path(sys.executable).parent / "benchmark_app"


def cpu_info() -> dict:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), platform.processor())
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    keep = sorted(f for f in flags if f == "avx2" or f.startswith(("avx512", "amx", "avx_vnni")))
    return {"model": name, "cores": os.cpu_count(), "flags": keep}


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def models(out: Path, batch4: bool) -> dict[str, Path]:
    """f32 and INT8 IRs at 640 (made once under ``out``), and a fixed batch-4 f32 IR when asked."""
    f32 = out / "yolo11n-mlla-bccd_openvino_model" / "yolo11n-mlla-bccd.xml"
    int8 = out / "yolo11n-mlla-bccd_int8_openvino_model" / "yolo11n-mlla-bccd_int8.xml"
    b4 = out / "batch4" / "yolo11n-mlla-bccd_openvino_model" / "yolo11n-mlla-bccd.xml"
    if not f32.is_file():
        from edge_mlla.export import export

        f32 = Path(export(WEIGHTS, format="openvino", imgsz=640, output=out))
    if not int8.is_file():
        from edge_mlla.quantize import quantize

        int8 = Path(quantize(f32, calib="bccd", subset_size=64, latency_runs=0).output)
    res = {"f32": f32, "int8": int8}
    if batch4:
        if not b4.is_file():
            from edge_mlla.export import export

            b4 = Path(export(WEIGHTS, format="openvino", imgsz=640, batch=4, output=out / "batch4"))
        res["f32 batch4"] = b4
    return res


def benchmark_app(xml: Path, seconds: int) -> dict:
    cmd = [str(BENCHMARK_APP), "-m", str(xml), "-d", "CPU", "-hint", "throughput", "-infer_precision", "f32", "-t", str(seconds)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds * 10 + 120).stdout
    fps = re.search(r"Throughput:\s*([\d.]+)\s*FPS", out)
    req = re.search(r"(\d+) inference requests", out)
    if not fps:
        raise RuntimeError(f"benchmark_app printed no throughput:\n{out[-2000:]}")
    return {"fps": float(fps.group(1)), "requests": int(req.group(1)) if req else None}


def runner(xml: Path, sources: list, inflight: int, max_frames: int | None = None, loop: bool = False,
           soak_marks: tuple[int, ...] = ()) -> dict:  # fmt: skip
    from edge_mlla import Detector
    from edge_mlla.stream import StreamRunner

    rss = {}
    with Detector(xml, hint="throughput") as det:
        det(_first_frame(sources[0]))  # warm-up
        run = StreamRunner(det, sources, max_inflight=inflight, max_frames=max_frames, loop=loop)
        n = 0
        batches = []
        for r in run:
            n += 1
            batches.append(r.timing.batch)
            if n in soak_marks:
                rss[n] = rss_mb()
        s = run.stats
    return {
        "sources": len(sources), "frames": s.processed, "seconds": round(s.elapsed, 2), "fps": round(s.fps, 2),
        "per_source_fps": [round(p.fps, 2) for p in s.sources], "batch": det.batch,
        "mean_batch": round(statistics.mean(batches), 2) if batches else None,
        "stages_ms": {k: round(v, 2) for k, v in s.stages_ms.items()}, "rss_mb": rss,
    }  # fmt: skip


def _first_frame(path: Path):
    import cv2

    cap = cv2.VideoCapture(str(path))
    ok, frame = cap.read()
    cap.release()
    return frame


def sample(xml: Path, clip: Path, inflight: int, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, str(ROOT / "samples" / "camera.py"), "--model", str(xml), "--source", str(clip),
               "--hint", "throughput", "--inflight", str(inflight), "--save", str(Path(tmp) / "out.mp4"), *extra]  # fmt: skip
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, cwd=ROOT)
    m = re.search(r"(\d+) frames processed in ([\d.]+) s: ([\d.]+) FPS", p.stdout)
    if p.returncode != 0 or not m:
        raise RuntimeError(f"camera.py failed ({p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    stages = {k: float(v) for k, v in re.findall(r"\| (\w+)[^|]* \| ([\d.]+) \| [\d.]+ \| [\d.]+ \|", p.stdout)}
    return {"frames": int(m.group(1)), "seconds": float(m.group(2)), "fps": float(m.group(3)), "stages_ms": stages}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_stream", help="where the IRs are made/reused")
    ap.add_argument("--seconds", type=int, default=15, help="benchmark_app duration per run")
    ap.add_argument("--rounds", type=int, default=2, help="benchmark_app / runner / sample rounds per model")
    ap.add_argument("--inflight", type=int, default=3, help="runner max_inflight (OpenVINO throughput: requests + 1)")
    ap.add_argument("--soak", type=int, default=2000, help="frames for the RSS soak (0: skip)")
    ap.add_argument("--no-batch4", action="store_true", help="skip the fixed batch-4 IR")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--note", default="2-core machine shared with a training run and other jobs: compare ratios measured in the same round",
                    help="how busy the machine was (goes into the report with the load averages)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from edge_mlla.clips import bundled_clip

    clip = bundled_clip()
    cpu = cpu_info()
    print(f"CPU: {cpu['model']}, {cpu['cores']} cores, flags {' '.join(cpu['flags']) or '-'}", flush=True)
    irs = models(args.out, not args.no_batch4)
    report: dict = {"cpu": cpu, "clip": str(clip.relative_to(ROOT)), "inflight": args.inflight, "models": {}, "sources": [], "soak": None,
                    "note": f"{args.note}; load average at start {tuple(round(x, 2) for x in os.getloadavg())}"}  # fmt: skip
    for name in ("f32", "int8"):
        xml = irs[name]
        rounds = []
        for k in range(args.rounds):
            before = benchmark_app(xml, args.seconds)
            run = runner(xml, [clip], args.inflight)
            after = benchmark_app(xml, args.seconds)
            smp = sample(xml, clip, args.inflight, [])
            trk = sample(xml, clip, args.inflight, ["--track", "--line", "320,0,320,480"])
            ba = (before["fps"] + after["fps"]) / 2
            rounds.append({"benchmark_app": [before, after], "runner": run, "sample": smp, "sample_track": trk,
                           "runner_vs_benchmark_app": round(run["fps"] / ba, 3), "sample_vs_benchmark_app": round(smp["fps"] / ba, 3)})  # fmt: skip
            print(f"{name} round {k + 1}: benchmark_app {before['fps']:.2f}/{after['fps']:.2f} FPS, runner {run['fps']:.2f} "
                  f"({run['fps'] / ba:.2f}x), sample {smp['fps']:.2f} ({smp['fps'] / ba:.2f}x), sample+track {trk['fps']:.2f}", flush=True)  # fmt: skip
        report["models"][name] = {"xml": str(xml), "rounds": rounds}
    n_frames = 240  # per configuration, split over the sources
    for name in ("int8", "f32 batch4") if "f32 batch4" in irs else ("int8",):
        for n in (1, 2, 4):
            res = runner(irs[name], [clip] * n, max(args.inflight, 2), max_frames=n_frames // n)
            res["model"] = name
            report["sources"].append(res)
            print(f"{name}: {n} source(s): {res['fps']:.2f} FPS aggregate, per source {res['per_source_fps']}, "
                  f"mean batch {res['mean_batch']}", flush=True)  # fmt: skip
    if args.soak:
        marks = (200, args.soak)
        res = runner(irs["int8"], [clip], args.inflight, max_frames=args.soak, loop=True, soak_marks=marks)
        growth = res["rss_mb"][args.soak] / res["rss_mb"][200] - 1
        report["soak"] = {"frames": res["frames"], "fps": res["fps"], "rss_mb_at_200": round(res["rss_mb"][200], 1),
                          "rss_mb_at_end": round(res["rss_mb"][args.soak], 1), "growth": round(growth, 4)}  # fmt: skip
        print(f"soak: {res['frames']} frames, RSS {res['rss_mb'][200]:.1f} -> {res['rss_mb'][args.soak]:.1f} MB ({100 * growth:+.1f}%)", flush=True)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "bench_stream.json").write_text(json.dumps(report, indent=2))
    md = to_markdown(report)
    (args.results / "bench_stream.md").write_text(md)
    print(md)


def to_markdown(rep: dict) -> str:
    cpu = rep["cpu"]
    lines = [
        "# Stream throughput (benchmarks/bench_stream.py)", "",
        f"CPU: {cpu['model']}, {cpu['cores']} cores, flags: {', '.join(cpu['flags']) or 'none of avx2/avx512/amx'}. "
        f"{rep['note']}. Clip: `{rep['clip']}` (640x480, 300 frames). Model: bundled YOLO11n-MLLA at 640, OpenVINO "
        f"2 infer requests (throughput hint), runner `max_inflight={rep['inflight']}`.", "",
        "| model | round | benchmark_app FPS (before / after) | runner FPS | runner / benchmark_app | sample FPS (draw + write) | sample / benchmark_app | sample + track + line FPS |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for name, m in rep["models"].items():
        for k, r in enumerate(m["rounds"], 1):
            b = r["benchmark_app"]
            lines.append(f"| {name} | {k} | {b[0]['fps']:.2f} / {b[1]['fps']:.2f} | {r['runner']['fps']:.2f} | {r['runner_vs_benchmark_app']:.2f}x | "
                         f"{r['sample']['fps']:.2f} | {r['sample_vs_benchmark_app']:.2f}x | {r['sample_track']['fps']:.2f} |")  # fmt: skip
    lines += ["", "Per-stage mean ms per frame (last round). `infer` is submit -> result, so it includes waiting for a free",
              "infer request; `wait` is the time a decoded frame sat in the file queue before it was submitted.", "",
              "| model | where | capture | wait | preprocess | infer | postprocess | track | draw | write | latency |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    keys = ("capture", "wait", "preprocess", "infer", "postprocess", "track", "draw", "write", "latency")
    for name, m in rep["models"].items():
        r = m["rounds"][-1]
        for where, st in (("runner", r["runner"]["stages_ms"]), ("sample", r["sample"]["stages_ms"]), ("sample + track", r["sample_track"]["stages_ms"])):
            lines.append(f"| {name} | {where} | " + " | ".join(f"{st[k]:.1f}" if k in st else "-" for k in keys) + " |")
    lines += ["", "Many sources into one Detector (copies of the clip, every frame, 240 frames per row):", "",
              "| model | model batch | sources | aggregate FPS | per-source FPS | mean frames per call |", "|---|---:|---:|---:|---|---:|"]  # fmt: skip
    for s in rep["sources"]:
        lines.append(f"| {s['model']} | {s['batch']} | {s['sources']} | {s['fps']:.2f} | {', '.join(f'{v:.2f}' for v in s['per_source_fps'])} | {s['mean_batch']} |")
    if rep["soak"]:
        s = rep["soak"]
        lines += ["", f"Soak: {s['frames']} frames (INT8, looped clip) at {s['fps']:.2f} FPS; RSS {s['rss_mb_at_200']} MB after 200 frames, "
                  f"{s['rss_mb_at_end']} MB at the end: {100 * s['growth']:+.1f}% (limit +10%)."]  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
