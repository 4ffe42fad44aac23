"""The hostile-client part of ``bench_serve.py`` (``--parts hostile``): the server as ``edge-mlla serve`` starts it
(``run``: loopback Ray, the HTTP guard) under stalled uploads, oversized chunked uploads and a replica killed under
load, next to the same app on a Ray started without the guard. Run through ``bench_serve.py``."""

from __future__ import annotations

import argparse
import http.client
import logging
import os
import select
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

LOG = logging.getLogger("bench_serve")
IMAGES: list[Path] = []


def _stall(port: int, n: int) -> list[socket.socket]:
    """``n`` uploads that send their headers and 3 of 100,000 body bytes, then stall."""
    out = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\nabc")
        out.append(s)
    return out


def _timed(port: int, method: str, path: str, body: bytes | None, timeout: float) -> tuple[float, int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    t0 = time.perf_counter()
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "image/jpeg"} if body else {})
        r = conn.getresponse()
        r.read()
        return time.perf_counter() - t0, r.status
    except OSError:
        return time.perf_counter() - t0, -1
    finally:
        conn.close()


def stalled_rows(port: int, setup: str, counts: list[int], good: int, timeout: float) -> list[dict]:
    """Good-request and /health latency (ms) while ``n`` uploads stall, for each ``n`` in ``counts``."""
    body, rows = IMAGES[0].read_bytes(), []
    for n in counts:
        socks = _stall(port, n)
        try:
            time.sleep(0.5)  # let the server take them all in
            health = [_timed(port, "GET", "/health", None, timeout) for _ in range(3)]
            posts = [_timed(port, "POST", "/", body, timeout) for _ in range(good)]
        finally:
            for s in socks:
                s.close()
        ok = [t for t, st in posts if st == 200]
        rows.append({"setup": setup, "stalled": n, "good_ok": len(ok), "good": good,
                     "good_p50_ms": round(1000 * float(np.median([t for t, _ in posts])), 1),
                     "good_max_ms": round(1000 * max(t for t, _ in posts), 1),
                     "health_max_ms": round(1000 * max(t for t, _ in health), 1),
                     "statuses": sorted({st for _, st in posts + health})})  # fmt: skip
        LOG.info("%s", rows[-1])
    return rows


def _serve_pids() -> dict[int, str]:
    import psutil

    return {p.pid: p.name() for p in psutil.Process().children(recursive=True)
            if p.name() == "ray::ProxyActor" or p.name().startswith("ray::ServeReplica")}  # fmt: skip


def _peak_growth(pids: dict[int, str], action) -> dict[str, float]:
    """Peak-RSS growth (MiB) of each process while ``action()`` runs (VmHWM reset through clear_refs first)."""
    def hwm(pid: int) -> float:
        line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024

    base = {}
    for pid in pids:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        base[pid] = hwm(pid)
    action()
    return {f"{'proxy' if name == 'ray::ProxyActor' else 'replica'}:{pid}": round(hwm(pid) - base[pid], 1)
            for pid, name in pids.items()}  # fmt: skip


def memory_rows(port: int, max_bytes: int) -> list[dict]:
    """Peak memory added by a chunked upload of 3x ``max_bytes`` (cut by the guard) and by an accepted PNG just
    under the limit (random pixels: the PNG is as big as the image)."""
    def chunked() -> None:
        s = socket.create_connection(("127.0.0.1", port), timeout=20)
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk, sent = b"\xff" * 65536, 0
        try:
            while sent < 3 * max_bytes and not select.select([s], [], [], 0)[0]:
                s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                sent += len(chunk)
            status = s.recv(64)[:12]
        except OSError:
            status = b"closed"
        s.close()
        rows[-1].update(sent_mib=round(sent / 2**20, 1), answer=status.decode("latin-1"))

    side = int((0.9 * max_bytes / 3) ** 0.5)
    png = cv2.imencode(".png", np.random.default_rng(0).integers(0, 256, (side, side, 3), np.uint8),
                       [cv2.IMWRITE_PNG_COMPRESSION, 1])[1].tobytes()  # fmt: skip
    rows = [{"upload": f"chunked, 3 x max_bytes ({3 * max_bytes / 2**20:.0f} MiB)"}]
    rows[0]["growth_mib"] = _peak_growth(_serve_pids(), chunked)
    rows.append({"upload": f"accepted PNG {side}x{side}, {len(png) / 2**20:.1f} MiB"})
    rows[1]["growth_mib"] = _peak_growth(_serve_pids(), lambda: rows[1].update(status=_timed(port, "POST", "/", png, 120)[1]))
    for r in rows:
        LOG.info("%s", r)
    return rows


def kill_row(port: int, clients: int, requests: int) -> dict:
    """``clients`` SDK clients (HTTPClient, default retries); a replica is killed after 20% of the answers."""
    import ray
    from ray import serve

    from edge_mlla.serve import HTTPClient

    body, done, lost, lock, local, clients_made = IMAGES[0].read_bytes(), [], [], threading.Lock(), threading.local(), []

    def one(i: int) -> None:
        if not hasattr(local, "c"):
            local.c = HTTPClient(f"http://127.0.0.1:{port}/", timeout_s=120)
            clients_made.append(local.c)
        try:
            replica = local.c.post_bytes(body)["replica"]
        except Exception as e:  # lost: the client gave up after its retries
            with lock:
                lost.append(f"{type(e).__name__}: {e}"[:200])
            return
        with lock:
            done.append(replica)

    with ThreadPoolExecutor(clients) as pool:
        futs = [pool.submit(one, i) for i in range(requests)]
        while len(done) < requests // 5:
            time.sleep(0.02)
        victim = done[-1]
        ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
        t_kill = time.perf_counter()
        for f in futs:
            f.result()
    while True:  # until Serve runs two replicas again
        dep = serve.status().applications["edge_mlla"].deployments["Detector"]
        if dep.replica_states.get("RUNNING", 0) == 2 and dep.status == "HEALTHY":
            break
        time.sleep(0.2)
    row = {"clients": clients, "requests": requests, "answered": len(done), "lost": len(lost),
           "retries": sum(c.retries for c in clients_made), "healed_s": round(time.perf_counter() - t_kill, 1),
           "lost_errors": lost[:5]}  # fmt: skip
    LOG.info("%s", row)
    return row


def run_hostile(model: Path, args: argparse.Namespace, images: list[Path]) -> dict:
    """The hostile-client part: the guarded server (run), then the same app on a Ray started without the guard."""
    IMAGES[:] = images
    import ray
    from ray import serve

    from edge_mlla.serve import build_app, run

    port, cores = 18766, os.cpu_count() or 1
    common = dict(replicas=2, threads=max(1, cores // 2), num_cpus=cores / 2, max_batch=4, backend=args.backend)
    server = run(model, port=port, ray_num_cpus=cores, blocking=False, **common)
    try:
        _timed(port, "POST", "/", IMAGES[0].read_bytes(), 120)  # warm-up
        out = {"precision": server.precision, "stalled": stalled_rows(port, "guard (edge-mlla serve)", args.stalled, 10, 60),
               "memory": memory_rows(port, 32 << 20), "kill": kill_row(port, args.clients, args.kill_requests)}  # fmt: skip
    finally:
        server.shutdown()
    ray.init(address="local", num_cpus=cores, include_dashboard=False, log_to_driver=False)  # no guard in its proxy
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(model, body_timeout_s=5.0, check=False, **common), name="edge_mlla", route_prefix="/")
        _timed(port, "POST", "/", IMAGES[0].read_bytes(), 120)
        out["stalled"] += stalled_rows(port, "no guard, replica deadline 5 s", [0, 64], 3, 60)
    finally:
        ray.shutdown()
    return out


def render_hostile(r: dict) -> list[str]:
    k = r["kill"]
    return [
        f"2 replicas, precision {r['precision']}. Stalled uploads: each sends its headers (Content-Length 100,000) and 3 "
        "body bytes, then nothing; then 3 `GET /health` and 10 good requests (one at a time). Request slots: 2 replicas x "
        "16; the guard reads at most 128 bodies at once (max_uploads) and then evicts the slowest upload to make room. "
        "Without the guard the replicas' own body deadline (5 s here) is the only defence.", "",
        "| setup | stalled uploads | good requests answered | good p50 ms | good max ms | /health max ms | statuses |",
        "|---|---:|---:|---:|---:|---:|---|",
        *[f"| {x['setup']} | {x['stalled']} | {x['good_ok']}/{x['good']} | {x['good_p50_ms']:.0f} | {x['good_max_ms']:.0f} "
          f"| {x['health_max_ms']:.0f} | {', '.join(map(str, x['statuses']))} |" for x in r["stalled"]], "",
        "Peak memory an upload adds (VmHWM reset before it; max_bytes 32 MiB):", "",
        "| upload | answer | proxy MiB | replicas MiB |", "|---|---|---:|---:|",
        *[f"| {m['upload']} | {m.get('answer', m.get('status'))} | "
          f"{sum(v for n, v in m['growth_mib'].items() if n.startswith('proxy')):.1f} | "
          + " / ".join(f"{v:.1f}" for n, v in m['growth_mib'].items() if n.startswith("replica")) + " |"
          for m in r["memory"]], "",
        f"Replica killed under load: {k['clients']} SDK clients (`HTTPClient`, default retries), {k['requests']} requests, "
        f"one of 2 replicas killed after {k['requests'] // 5} answers: **{k['lost']} lost**, {k['answered']} answered, "
        f"{k['retries']} retries; Serve ran 2 healthy replicas again {k['healed_s']:.1f} s after the kill.",
    ]  # fmt: skip
