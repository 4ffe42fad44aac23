"""Ray Serve throughput and latency vs replicas and max batch, next to the Detector alone (same run).

What is measured (all on one machine, one local Ray instance, loopback HTTP):

* ``Detector alone``: the same model in this process, JPEG bytes -> ``cv2.imdecode`` -> ``Detector``,
  1 client thread and ``--clients`` client threads (the Detector is thread-safe); runtime threads = all
  cores. This is the ceiling a server on this machine can approach.
* ``Serve``: ``edge_mlla.serve.build_app`` for every (replicas, max_batch) in the grid, driven over
  HTTP by ``--clients`` closed-loop client threads posting the JPEG bytes of BCCD test images
  (640x480); each replica gets ``cores / replicas`` runtime threads and as many Ray CPUs.
* ``streams``: ``serve_streams`` with K video files (every frame) against the best config, for the
  per-camera FPS budget.
* JPEG bytes per 640x480 frame at quality 90 (what a camera client sends) vs raw BGR.
* ``hostile``: the server as ``edge-mlla serve`` starts it (``run``: loopback Ray, the HTTP guard) under hostile
  clients: good-request and ``/health`` latency while 0-128 uploads stall after their headers (next to the same
  app on a Ray started without the guard, where the replicas' own body deadline is the only defence); the peak
  memory a chunked upload of 3x ``max_bytes`` and an accepted near-limit upload add to the proxy and the replicas;
  a replica killed under 8 SDK clients (requests lost, retries, time until Serve has replaced it).

Latency is client-side (send -> JSON parsed), p50/p99 over ``--requests`` requests after a warm-up.
The client threads run in this process and share the cores with the replicas: on a 2-core machine
that costs the server some throughput, as it would cost a real edge box running its own clients.

    .venv/bin/python benchmarks/bench_serve.py                  # writes benchmarks/results/bench_serve.{md,json}
    .venv/bin/python benchmarks/bench_serve.py --parts hostile  # re-measure one part, keep the others' results
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
WEIGHTS = ROOT / "edge_mlla" / "weights" / "yolo11n-mlla-bccd.pt"
IMAGES = sorted((ROOT / "edge_mlla" / "data" / "bccd" / "images" / "test").glob("*.jpg"))
LOG = logging.getLogger("bench_serve")


def cpu_info() -> dict:
    """The machine, as every bench table names it (:mod:`edge_mlla.bench.machine`)."""
    from edge_mlla.bench.machine import describe_machine, machine_line

    m = describe_machine()
    return {"model_name": m["cpu"], "cores": m["cores"]["os_cpu_count"], "flags": m["isa"], "line": machine_line(m),
            "date": m["date"]}  # fmt: skip


def background_load() -> str:
    """Other heavy processes running on the machine (a training run), for the results' caveat; stopped (paused)
    processes do not count. CPU share over the last second, not ps' lifetime average."""
    try:
        import psutil
    except ImportError:
        return ""
    me = os.getpid()
    procs = [p for p in psutil.process_iter(["pid", "status", "cmdline"]) if p.info["pid"] != me]
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.cpu_percent(None)
    time.sleep(1.0)
    busy = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            pct = p.cpu_percent(None)
            if pct > 30 and p.info["status"] != psutil.STATUS_STOPPED:
                busy.append(f"{pct:.0f}% {' '.join(p.info['cmdline'] or [])[:110]}")
    return "; ".join(busy)


def percentiles(lat_s: list[float]) -> dict:
    a = np.asarray(lat_s) * 1000
    return {"p50_ms": round(float(np.percentile(a, 50)), 1), "p99_ms": round(float(np.percentile(a, 99)), 1),
            "mean_ms": round(float(a.mean()), 1)}  # fmt: skip


def closed_loop(fn, bodies: list[bytes], requests: int, clients: int, warmup: int) -> dict:
    """``clients`` threads call ``fn(body)`` until ``warmup + requests`` calls are made; the first ``warmup``
    are not measured. Throughput = measured requests / (last measured end - first measured start)."""
    lat: list[float] = []
    spans: list[tuple[float, float]] = []
    extra: list[dict] = []
    lock = threading.Lock()
    counter = iter(range(warmup + requests))

    def worker() -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            t0 = time.perf_counter()
            out = fn(bodies[i % len(bodies)])
            t1 = time.perf_counter()
            if i >= warmup:
                with lock:
                    lat.append(t1 - t0)
                    spans.append((t0, t1))
                    if isinstance(out, dict):
                        extra.append(out)

    with ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(worker) for _ in range(clients)]:
            f.result()
    wall = max(e for _, e in spans) - min(s for s, _ in spans)
    res = {"requests": len(lat), "clients": clients, "throughput_rps": round(len(lat) / wall, 2), **percentiles(lat),
           "_lat": lat, "_extra": extra}  # fmt: skip
    if extra:
        res["mean_batch"] = round(float(np.mean([e["timing_ms"]["batch_size"] for e in extra])), 2)
        res["mean_queue_ms"] = round(float(np.mean([e["timing_ms"]["queue"] for e in extra])), 1)
        res["mean_batch_infer_ms"] = round(float(np.mean([e["timing_ms"]["infer"] for e in extra])), 1)
    return res


def bench_detector(model: Path, backend: str, bodies: list[bytes], args: argparse.Namespace) -> list[dict]:
    from edge_mlla import Detector

    threads = os.cpu_count() or 1
    opts = {"config": {"INFERENCE_NUM_THREADS": threads}} if backend == "openvino" else {"threads": threads}
    det = Detector(model, backend=backend, **opts)

    def one(body: bytes) -> None:
        det(cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR))

    rows = []
    for clients in (1, args.clients):
        r = closed_loop(one, bodies, args.requests, clients, args.warmup)
        rows.append({"what": f"Detector alone, {clients} client thread{'s' if clients > 1 else ''}", "replicas": "-",
                     "max_batch": "-", "threads": threads, **r})  # fmt: skip
        LOG.info("%s", {k: v for k, v in rows[-1].items() if not k.startswith("_")})
    det.close()
    return rows


def batch_efficiency(model: Path, backend: str, threads: int, reps: int = 9) -> list[dict]:
    """Does batching pay on this CPU at all? ``Detector.predict(list of b)`` per image, next to b single calls,
    interleaved; one Detector with the replica thread budget, no Serve involved."""
    from edge_mlla import Detector

    opts = {"config": {"INFERENCE_NUM_THREADS": threads}} if backend == "openvino" else {"threads": threads}
    det = Detector(model, backend=backend, **opts)
    frames = [cv2.imread(str(p)) for p in IMAGES[:8]]
    det(frames[:2])  # warm-up (and shape compilation for batch sizes)
    out = []
    for b in (1, 4, 8):
        batched, single = [], []
        det(frames[:b])
        for _ in range(reps):
            t0 = time.perf_counter()
            det(frames[:b])
            t1 = time.perf_counter()
            for f in frames[:b]:
                det(f)
            t2 = time.perf_counter()
            batched.append((t1 - t0) / b)
            single.append((t2 - t1) / b)
        bm, sm = float(np.median(batched)), float(np.median(single))
        out.append({"batch": b, "threads": threads, "batched_ms_per_image": round(1000 * bm, 1),
                    "single_ms_per_image": round(1000 * sm, 1), "batched_over_single": round(bm / sm, 2)})  # fmt: skip
        LOG.info("%s", out[-1])
    det.close()
    return out


def bench_serve(model: Path, backend: str, bodies: list[bytes], args: argparse.Namespace, port: int,
                grid: list[tuple[int, int, str]]) -> list[dict]:  # fmt: skip
    from ray import serve

    from edge_mlla.serve import HTTPClient, build_app

    cores = os.cpu_count() or 1
    rows = []
    for replicas, max_batch, batcher in grid:
        threads = max(1, cores // replicas)
        app = build_app(model, replicas=replicas, max_batch=max_batch, batch_wait_ms=args.batch_wait_ms,
                        batcher=batcher, threads=threads, num_cpus=threads, backend=backend, check=False)  # fmt: skip
        serve.run(app, name="bench", route_prefix="/")
        local = threading.local()

        def one(body: bytes, local: threading.local = local) -> dict:
            if not hasattr(local, "c"):
                local.c = HTTPClient(f"http://127.0.0.1:{port}/")
            return local.c.post_bytes(body, "image/jpeg")

        r = closed_loop(one, bodies, args.requests, args.clients, args.warmup)
        what = "Ray Serve (HTTP)" + ("" if max_batch == 1 else f", {'@serve.batch' if batcher == 'serve' else 'greedy batcher'}")
        rows.append({"what": what, "batcher": batcher, "replicas": replicas, "max_batch": max_batch, "threads": threads, **r})
        LOG.info("%s", {k: v for k, v in rows[-1].items() if not k.startswith("_")})
        serve.delete("bench")
    return rows


def merge_rounds(rounds: list[list[dict]]) -> list[dict]:
    """One row per setup: median throughput over rounds, latency percentiles and batch stats over all requests."""
    out = []
    for same in zip(*rounds):
        lat = [x for r in same for x in r["_lat"]]
        extra = [x for r in same for x in r["_extra"]]
        row = {k: v for k, v in same[0].items() if not k.startswith("_")}
        tps = sorted(r["throughput_rps"] for r in same)
        row.update(requests=len(lat), throughput_rps=round(float(np.median(tps)), 2), throughput_rounds=tps, **percentiles(lat))
        if extra:
            row["mean_batch"] = round(float(np.mean([e["timing_ms"]["batch_size"] for e in extra])), 2)
            row["mean_queue_ms"] = round(float(np.mean([e["timing_ms"]["queue"] for e in extra])), 1)
        out.append(row)
    return out


def make_clips(folder: Path, k: int, frames: int) -> list[Path]:
    imgs = [cv2.imread(str(p)) for p in IMAGES]
    out = []
    for i in range(k):
        p = folder / f"cam{i}.avi"
        vw = cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*"MJPG"), 25, (640, 480))
        for j in range(frames):
            vw.write(imgs[(i * 7 + j) % len(imgs)])
        vw.release()
        out.append(p)
    return out


def bench_streams(model: Path, backend: str, args: argparse.Namespace, port: int, best: dict) -> list[dict]:
    from ray import serve

    from edge_mlla.serve import build_app, serve_streams

    replicas, max_batch, batcher = best["replicas"], best["max_batch"], best["batcher"]
    threads = best["threads"]
    serve.run(build_app(model, replicas=replicas, max_batch=max_batch, batch_wait_ms=args.batch_wait_ms, batcher=batcher,
                        threads=threads, num_cpus=threads, backend=backend, check=False), name="bench", route_prefix="/")  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clips = make_clips(Path(tmp), max(args.cameras), args.frames)
        serve_streams([str(clips[0])], url=f"http://127.0.0.1:{port}/", max_frames=5)  # warm-up
        for k in args.cameras:
            rep = serve_streams([str(c) for c in clips[:k]], url=f"http://127.0.0.1:{port}/", encoding="jpeg")
            per = [s.fps for s in rep.sources]
            rows.append({"cameras": k, "replicas": replicas, "max_batch": max_batch, "batcher": batcher,
                         "total_fps": round(rep.fps, 2),
                         "per_camera_fps_min": round(min(per), 2), "per_camera_fps_max": round(max(per), 2),
                         "frames": sum(s.processed for s in rep.sources), "dropped": sum(s.dropped for s in rep.sources),
                         "errors": sum(s.errors for s in rep.sources),
                         "p50_ms": float(np.median([s.summary()["p50_ms"] for s in rep.sources]))})  # fmt: skip
            LOG.info("%s", rows[-1])
    serve.delete("bench")
    return rows


def frame_bytes() -> dict:
    sizes = {q: [] for q in (70, 90)}
    for p in IMAGES:
        img = cv2.imread(str(p))
        assert img.shape[:2] == (480, 640)
        for q in sizes:
            sizes[q].append(len(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])[1]))
    out = {"raw_bgr_640x480": 640 * 480 * 3}
    out |= {f"jpeg_q{q}_mean": int(np.mean(v)) for q, v in sizes.items()}
    return out


def table(rows: list[dict], base: float) -> str:
    lines = ["| setup | replicas | max batch | threads / replica | throughput img/s | vs Detector alone (8 clients) | p50 ms | p99 ms | mean batch | mean queue ms |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['what']} | {r['replicas']} | {r['max_batch']} | {r['threads']} | {r['throughput_rps']:.1f} | "
                     f"{r['throughput_rps'] / base:.2f}x | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | "
                     f"{r.get('mean_batch', '-')} | {r.get('mean_queue_ms', '-')} |")  # fmt: skip
    return "\n".join(lines)


# ------------------------------------------------------------------ grid part, report, main
def run_grid(model: Path, args: argparse.Namespace) -> dict:
    """Replicas x max batch x batcher over HTTP, next to the Detector alone; then streams against the best row."""
    from ray import serve

    from edge_mlla.serve import check_port
    from edge_mlla.serve.guard import CALLBACK, CALLBACK_ENV, LIMITS_ENV, GuardLimits
    from edge_mlla.serve.raystart import start_ray

    bodies = [p.read_bytes() for p in IMAGES[:8]]
    batch_rows = [r for t in sorted({max(1, (os.cpu_count() or 1) // n) for n in args.replicas})
                  for r in batch_efficiency(model, args.backend, t)]  # fmt: skip
    port = 18765
    check_port("127.0.0.1", port)
    start_ray(None, os.cpu_count(), env={CALLBACK_ENV: CALLBACK, LIMITS_ENV: GuardLimits().to_env()})  # as `serve` does
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        grid = [(r, b, k) for r in args.replicas for b in args.max_batch for k in args.batchers if b > 1 or k == "serve"]
        det_rounds, serve_rounds = [], []
        for rnd in range(args.rounds):  # interleaved: every setup once per round, order reversed every other round
            LOG.info("round %d of %d", rnd + 1, args.rounds)
            order = grid if rnd % 2 == 0 else grid[::-1]
            det_rounds.append(bench_detector(model, args.backend, bodies, args))
            rows_r = bench_serve(model, args.backend, bodies, args, port, order)
            serve_rounds.append(sorted(rows_r, key=lambda r: grid.index((r["replicas"], r["max_batch"], r["batcher"]))))
        det_rows, serve_rows = merge_rounds(det_rounds), merge_rounds(serve_rounds)
        best = max(serve_rows, key=lambda r: r["throughput_rps"])
        stream_rows = bench_streams(model, args.backend, args, port, best)
    finally:
        import ray

        ray.shutdown()
    return {"rows": det_rows + serve_rows, "batch_efficiency": batch_rows, "streams": stream_rows, "frame_bytes": frame_bytes(),
            "clients": args.clients, "requests": args.requests, "rounds": args.rounds, "batch_wait_ms": args.batch_wait_ms}  # fmt: skip


def render(res: dict) -> str:
    """The Markdown report of every part in ``res`` (each part names its own date, machine and command)."""
    md = ["# Ray Serve: throughput, latency and hostile clients", ""]
    for part, title in (("grid", "Replicas x max batch"), ("hostile", "Hostile clients")):
        if part in res:
            r = res[part]
            from bench_serve_hostile import render_hostile

            md += [f"## {title}", "", f"{r['date']}; CPU: **{r['machine']}**; `{r['command']}`; model: {r['model']}; "
                   f"{r['wall_s']:.0f} s.", ""] + (render_grid(r) if part == "grid" else render_hostile(r)) + [""]  # fmt: skip
    return "\n".join(md)


def render_grid(r: dict) -> list[str]:
    base = r["rows"][1]["throughput_rps"]
    return [
        f"{r['clients']} closed-loop HTTP clients in the benchmark process, {r['requests']} measured requests per row and "
        f"round, {r['rounds']} interleaved rounds (JPEG 640x480 BCCD images), batch wait {r['batch_wait_ms']} ms. "
        "Throughput: median over rounds; p50/p99 over all requests. **Noisy**: compare rows of this run (ratios), not "
        "digits" + (f"; measured while another process used the cores ({r['background_load']})" if r["background_load"] else "") + ".",
        "", table(r["rows"], base), "",
        "Does batching pay on this CPU? One `Detector`, `predict(list of b)` vs b single calls, ms per image (median of 9, "
        "interleaved, no Serve; the batch-1 row does the same work both ways: its ratio is the noise floor):", "",
        "| threads | batch | batched ms/img | single ms/img | batched / single |", "|---:|---:|---:|---:|---:|",
        *[f"| {b['threads']} | {b['batch']} | {b['batched_ms_per_image']:.1f} | {b['single_ms_per_image']:.1f} | "
          f"{b['batched_over_single']:.2f}x |" for b in r["batch_efficiency"]], "",
        "Streams (`serve_streams`: a `StreamRunner` over video files with a `RemoteDetector`, JPEG q90 over HTTP) "
        f"against the fastest row (replicas={r['streams'][0]['replicas']}, max_batch={r['streams'][0]['max_batch']}, "
        f"{r['streams'][0]['batcher']} batcher):", "",
        "| cameras | total FPS | per-camera FPS (min-max) | frames | failed | p50 ms |", "|---:|---:|---|---:|---:|---:|",
        *[f"| {s['cameras']} | {s['total_fps']:.1f} | {s['per_camera_fps_min']:.1f}-{s['per_camera_fps_max']:.1f} | "
          f"{s['frames']} | {s['errors']} | {s['p50_ms']:.0f} |" for s in r["streams"]], "",
        f"Bytes per 640x480 frame: raw BGR {r['frame_bytes']['raw_bgr_640x480']:,}; JPEG q90 "
        f"{r['frame_bytes']['jpeg_q90_mean']:,}; JPEG q70 {r['frame_bytes']['jpeg_q70_mean']:,} (BCCD mean).",
    ]  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", default="grid,hostile", help="comma-separated: grid, hostile (others kept from --out's JSON)")
    ap.add_argument("--weights", default=str(WEIGHTS))
    ap.add_argument("--model", default=None, help="an exported dynamic-batch model (default: export the weights)")
    ap.add_argument("--backend", default="openvino", choices=["openvino", "onnxruntime"])
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--requests", type=int, default=80)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=16)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--max-batch", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--batch-wait-ms", type=float, default=5.0)
    ap.add_argument("--batchers", nargs="+", default=["serve", "greedy"], choices=["serve", "greedy"])
    ap.add_argument("--cameras", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--frames", type=int, default=40, help="frames per camera clip")
    ap.add_argument("--stalled", type=int, nargs="+", default=[0, 64, 128, 256], help="stalled uploads per hostile row")
    ap.add_argument("--kill-requests", type=int, default=200, help="requests in the replica-kill measurement")
    ap.add_argument("--out", default=str(RESULTS / "bench_serve"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    out = Path(args.out)
    old = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(".json").is_file() else {}
    result = {k: v for k, v in old.items() if k in ("grid", "hostile")}
    cpu, load = cpu_info(), background_load()
    LOG.info("CPU: %s", cpu["line"])
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else None
        if model is None:
            from edge_mlla.export import export

            model = Path(export(args.weights, format="openvino" if args.backend == "openvino" else "onnx",
                                imgsz=args.imgsz, dynamic=True, output=Path(tmp) / "m"))  # fmt: skip
        for part in args.parts.split(","):
            t0 = time.time()
            if part == "grid":
                res = run_grid(model, args)
            else:
                from bench_serve_hostile import run_hostile

                res = run_hostile(model, args, IMAGES)
            res |= {"date": cpu["date"], "machine": cpu["line"], "cpu": cpu, "background_load": load or background_load(),
                    "command": "python benchmarks/bench_serve.py " + " ".join(sys.argv[1:]), "wall_s": round(time.time() - t0, 1),
                    "model": f"bundled YOLO11n-MLLA, dynamic batch, {args.imgsz}x{args.imgsz}, {args.backend}"}  # fmt: skip
            result[part] = res
    import edge_mlla

    result |= {"python": sys.version.split()[0], "edge_mlla": edge_mlla.__version__}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(render(result) + "\n")
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
