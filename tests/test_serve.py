"""Ray Serve deployment of Detector on a local single-node Ray started by run(), as `edge-mlla serve` starts it:
loopback only, the HTTP guard in the proxy, f32.

One server for the module (Ray's start is the slow part); the model is the bundled detector exported at 320 px.
References are independent of the server: a local f32 ``Detector`` on the same file and images, compared with
the JSON the server returns. Hostile clients too: stalled uploads at twice the request slots, a chunked upload
over the limit (memory measured), a replica killed under load (requests lost counted), a token on one app. No
timing assertions: the few deadlines are far above what a check needs and far below what a blocked server would
take (each says why).
"""

from __future__ import annotations

import http.client
import json
import os
import select
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
from conftest import BCCD
from serve_helpers import FakeCamera, free_port, listening, peak_rss_mib, post, ray_children, read_video, reset_peak_rss
from serve_helpers import same as _same
from serve_helpers import same_json as _same_json
from serve_helpers import write_video

ray = pytest.importorskip("ray")
pytest.importorskip("ray.serve")
psutil = pytest.importorskip("psutil")

from edge_mlla import Detector
from edge_mlla.errors import ShapeError

IMGSZ = 320
IMAGES = sorted((BCCD / "images" / "test").glob("*.jpg"))[:6]


TOKEN = "s3cret-token-123"
BODY_TIMEOUT_S = 60.0  # a request queued behind stalled uploads would wait this long; good ones get 20 s below
_post = post


# ------------------------------------------------------------------ one Ray instance for the rest
@pytest.fixture(scope="module")
def server(exported):
    """run() starts its own loopback-only Ray (2 CPUs) with the HTTP guard, as `edge-mlla serve` does; f32 so the
    answers equal a local f32 Detector on any CPU."""
    from edge_mlla.serve import run

    model = exported("openvino", imgsz=IMGSZ)
    port = free_port()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    srv = run(model, replicas=2, port=port, threads=1, num_cpus=0.5, max_batch=4, batch_wait_ms=10, precision="f32",
              body_timeout_s=BODY_TIMEOUT_S, ray_num_cpus=2, blocking=False)  # fmt: skip
    yield {"srv": srv, "model": model, "port": port}
    srv.shutdown()  # the shutdown test normally did this already


@pytest.fixture(scope="module")
def ref(server):
    """A local Detector on the same file, with the server's thresholds and precision."""
    det = Detector(server["model"], conf=0.25, iou=0.45, precision="f32")
    yield det
    det.close()


@pytest.fixture(scope="module")
def ref_dets(ref):
    return [ref(p) for p in IMAGES]


def test_server_binds_loopback_and_health(server, ref):
    port = server["port"]
    status, ctype, body = _post(port, b"", None, "/health", "GET")
    assert status == 200 and ctype.startswith("application/json")
    h = json.loads(body)
    assert h["status"] == "ok" and h["backend"] == ref.backend.name and h["imgsz"] == list(ref.imgsz)
    assert h["precision"] == "f32" == server["srv"].precision and server["srv"].guarded  # the proxy runs the guard
    status, _, body = _post(port, b"", None, "/info", "GET")
    info = json.loads(body)
    assert status == 200 and info["serve"]["max_batch"] == 4 and info["model"]["names"] == {str(k): v for k, v in ref.names.items()}
    assert info["model"]["precision"] == "f32" and info["serve"]["token_required"] is False


def test_200_requests_at_concurrency_8_equal_local_detector(server, ref, ref_dets):
    port = server["port"]
    bodies = [p.read_bytes() for p in IMAGES]
    from edge_mlla.serve import HTTPClient

    local = threading.local()

    def one(i: int) -> dict:
        if not hasattr(local, "c"):
            local.c = HTTPClient(f"http://127.0.0.1:{port}/")
        status, body = local.c.request("POST", "/", bodies[i % len(bodies)], {"Content-Type": "image/jpeg"})
        assert status == 200, body[:300]
        return json.loads(body)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(200)))
    assert len(answers) == 200
    for i, a in enumerate(answers):
        _same_json(a, ref_dets[i % len(IMAGES)])
        assert a["model"]["backend"] == ref.backend.name and a["model"]["precision"] == ref.precision == "f32"
        assert a["model"]["imgsz"] == list(ref.imgsz)
        assert a["image"] == {"width": 640, "height": 480}
    assert len({a["replica"] for a in answers}) == 2  # both replicas served
    sizes = [a["timing_ms"]["batch_size"] for a in answers]
    assert max(sizes) > 1 and max(sizes) <= 4  # 8 clients on 2 replicas: requests queue and are batched, never above max_batch
    assert all(a["timing_ms"]["infer"] > 0 for a in answers)


BAD = [
    ("not an image", b"hello, world" * 10, "image/jpeg", 400, "bad_image"),
    ("empty body", b"", "image/jpeg", 400, "empty_body"),
    ("wrong content type", None, "text/plain", 415, "unsupported_media_type"),
    ("no content type", None, None, 415, "unsupported_media_type"),
    ("truncated jpeg", "truncated", "image/jpeg", 400, "bad_image"),
]


@pytest.mark.parametrize("what,body,ctype,status,kind", BAD, ids=[b[0] for b in BAD])
def test_bad_payloads_answer_4xx_json(server, what, body, ctype, status, kind):
    real = IMAGES[0].read_bytes()
    if body is None:
        body = real
    elif body == "truncated":
        body = real[: len(real) // 3]
    got, rtype, raw = _post(server["port"], body, ctype)
    assert got == status, raw[:300]
    assert rtype.startswith("application/json")
    err = json.loads(raw)["error"]
    assert err["status"] == status and err["type"] == kind and len(err["message"]) > 10


def test_50_megapixel_image_rejected_from_its_header(server, tmp_path):
    big = np.zeros((7072, 7072), np.uint8)  # 50.0 MP, a real PNG (small: it is all zeros)
    big[::97, ::89] = 255
    ok, buf = cv2.imencode(".png", big, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    assert ok
    data = buf.tobytes()
    hdr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8)  # it really loads
    assert hdr.shape == (884, 884)
    status, _, raw = _post(server["port"], data, "image/png")
    assert status == 413, raw[:300]
    err = json.loads(raw)["error"]
    assert err["type"] == "image_too_large" and "7072x7072" in err["message"] and "max_pixels" in err["message"]
    # the JPEG header path too (a real 50 MP JPEG)
    ok, jbuf = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 50])
    status, _, raw = _post(server["port"], jbuf.tobytes(), "image/jpeg")
    assert status == 413 and "7072x7072" in json.loads(raw)["error"]["message"]


def test_wrong_method_and_route(server):
    status, _, raw = _post(server["port"], b"", None, "/", "GET")
    assert status == 405 and json.loads(raw)["error"]["type"] == "method_not_allowed"
    status, _, raw = _post(server["port"], b"x", "image/jpeg", "/nope")
    assert status == 404 and "/health" in json.loads(raw)["error"]["message"]


def test_a_local_server_listens_on_loopback_only(server):
    """Every listening socket of this process (the driver) and of every process Ray started for the server."""
    from edge_mlla.serve.raystart import is_loopback

    socks = listening(psutil)
    assert ("ray::ProxyActor", "127.0.0.1", server["port"]) in socks
    names = {n for n, _, _ in socks}
    assert {"gcs_server", "raylet"} <= names and any(n.startswith("ray::ServeReplica") for n in names), names
    assert [x for x in socks if not is_loopback(x[1])] == []


def test_stalled_uploads_do_not_block_good_requests(server):
    """2x the request slots (2 replicas x 16) of clients that send headers and 3 body bytes, then stall."""
    port, slots = server["port"], 2 * 16  # replicas x max_ongoing_requests (max(16, 2 x max_batch))
    stalled = []
    try:
        for _ in range(2 * slots):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\nabc")
            stalled.append(s)
        t0 = time.perf_counter()
        status, _, raw = _post(port, IMAGES[0].read_bytes(), timeout=20)  # 20 s: a third of BODY_TIMEOUT_S
        took = time.perf_counter() - t0
        assert status == 200 and json.loads(raw)["boxes"], raw[:300]
        assert _post(port, b"", None, "/health", "GET", timeout=20)[0] == 200
        print(f"\n{len(stalled)} stalled uploads open: a good request answered in {1000 * took:.0f} ms")
    finally:
        for s in stalled:
            s.close()


def _chunked_upload(port: int, total: int) -> tuple[int, bytes]:
    """Send ``total`` bytes as 64 KiB chunks, stopping when the server answers or closes; ``(sent, reply)``."""
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk, sent, reply = b"\xff" * 65536, 0, b""
    try:
        while sent < total and not select.select([s], [], [], 0)[0]:
            s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            sent += len(chunk)
    except OSError:
        pass  # the server closed the connection: it stopped reading
    try:
        while not reply.endswith(b"}}") and (part := s.recv(65536)):
            reply += part
    finally:
        s.close()
    return sent, reply


def test_chunked_upload_over_the_limit_is_cut_at_max_bytes(server):
    """3x max_bytes in chunks, no Content-Length: 413 JSON at once, reading stopped, and neither the HTTP proxy nor
    a replica grows by more than max_bytes + 10% (peak RSS, reset before the upload)."""
    limit = 32 << 20  # the server's max_bytes (the default)
    procs = {p.pid: p.name() for p in psutil.Process().children(recursive=True)
             if p.name() == "ray::ProxyActor" or p.name().startswith("ray::ServeReplica")}  # fmt: skip
    try:
        base = {pid: reset_peak_rss(pid) for pid in procs}
    except OSError as e:
        pytest.skip(f"cannot reset the peak RSS mark here ({e})")
    sent, reply = _chunked_upload(server["port"], 3 * limit)
    assert sent < 3 * limit and reply.startswith(b"HTTP/1.1 413"), (sent, reply[:200])
    err = json.loads(reply.split(b"\r\n\r\n", 1)[1])["error"]
    assert err["type"] == "body_too_large" and "max_bytes" in err["message"]
    grew = {f"{procs[pid]}:{pid}": peak_rss_mib(pid) - base[pid] for pid in procs}
    print(f"\nchunked upload cut after {sent / 2**20:.1f} of {3 * limit / 2**20:.0f} MiB sent; peak RSS growth MiB: "
          + ", ".join(f"{n} {g:.1f}" for n, g in grew.items()))
    assert len(grew) == 3 and all(g <= 1.1 * limit / 2**20 for g in grew.values()), grew


def test_handle_api_equals_local_detector(server, ref, ref_dets):
    from edge_mlla.serve import RemoteDetector

    rd = server["srv"].detector
    assert isinstance(rd, RemoteDetector)
    frames = [cv2.imread(str(p)) for p in IMAGES]
    for d, r in zip(rd(frames), ref_dets):  # a list: sent concurrently, batched by Serve
        _same(d, r)
        assert d.timing is not None and d.timing.images >= 1
    _same(rd(IMAGES[1]), ref_dets[1])  # a path: sent as its JPEG bytes
    _same(rd(IMAGES[2].read_bytes()), ref_dets[2])
    assert rd.info()["model"]["backend"] == ref.backend.name
    with pytest.raises(ShapeError, match="dtype"):  # the replica's typed error reaches the caller
        rd(np.zeros((8, 8, 3), np.float32))


def test_replica_killed_mid_load_is_restarted_no_request_lost(server, ref_dets):
    """8 clients: 6 use the SDK's HTTPClient (it retries what the lost replica failed: no request may be lost), 2
    are raw HTTP clients that do not retry (every failure they see must be a JSON error). Counts are printed."""
    from ray import serve

    from edge_mlla.serve import HTTPClient, Retry

    port, n = server["port"], 120
    bodies = [p.read_bytes() for p in IMAGES]
    answers: dict[int, dict] = {}
    raw_failures: list[tuple[int, str, dict]] = []
    lock = threading.Lock()
    local = threading.local()
    sdk = []

    def one(i: int) -> None:
        if i % 4 == 3:  # a raw client: one try, the answer as it comes
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            try:
                conn.request("POST", "/", bodies[i % len(bodies)], {"Content-Type": "image/jpeg"})
                r = conn.getresponse()
                status, ctype, body = r.status, r.getheader("content-type") or "", r.read()
            finally:
                conn.close()
            if status != 200:
                with lock:
                    raw_failures.append((status, ctype, json.loads(body)))  # fails the test if not JSON
                return
        else:
            if not hasattr(local, "c"):
                local.c = HTTPClient(f"http://127.0.0.1:{port}/", timeout_s=120, retry=Retry(tries=8, base_s=0.25))
                sdk.append(local.c)
            body = json.dumps(local.c.post_bytes(bodies[i % len(bodies)])).encode()
        with lock:
            answers[i] = json.loads(body)

    with ThreadPoolExecutor(8) as pool:
        futs = [pool.submit(one, i) for i in range(n)]
        deadline = time.monotonic() + 300  # does not hang: 20 answers take seconds
        while len(answers) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        with lock:
            victim = answers[max(answers)]["replica"]
        ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
        for f in futs:
            f.result()
    sdk_ids = [i for i in range(n) if i % 4 != 3]
    assert all(i in answers for i in sdk_ids)  # the SDK client lost none
    for i, a in answers.items():
        _same_json(a, ref_dets[i % len(IMAGES)])
    for status, ctype, err in raw_failures:  # what a client without retries saw: JSON, saying what happened
        assert status >= 500 and ctype.startswith("application/json") and err["error"]["status"] == status, (status, err)
    retries = sum(c.retries for c in sdk)
    print(f"\nreplica {victim} killed after 20 answers: SDK clients {len(sdk_ids)} requests, 0 lost, {retries} retries; "
          f"raw clients {n - len(sdk_ids)} requests, {len(raw_failures)} failed "
          f"({sorted({e['error']['type'] for _, _, e in raw_failures})})")

    # Serve replaces the dead replica: two RUNNING replicas again, one of them new
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        dep = serve.status().applications["edge_mlla"].deployments["Detector"]
        if dep.replica_states.get("RUNNING", 0) == 2 and dep.status == "HEALTHY":
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"deployment did not recover: {dep}")
    with pytest.raises(ValueError):
        ray.get_actor(victim, namespace="serve")  # the killed actor is gone for good
    c = HTTPClient(f"http://127.0.0.1:{port}/")
    seen = {json.loads(c.request("POST", "/", bodies[0], {"Content-Type": "image/jpeg"})[1])["replica"] for _ in range(30)}
    assert victim not in seen


def test_serve_streams_files_every_frame_live_latest_frame(server, ref, tmp_path):
    from edge_mlla.serve import serve_streams

    imgs = [cv2.resize(cv2.imread(str(p)), (320, 240)) for p in IMAGES]
    vids = [write_video(tmp_path / "a.avi", imgs[:4]), write_video(tmp_path / "b.avi", imgs[2:6])]
    decoded = [read_video(v) for v in vids]
    assert [len(d) for d in decoded] == [4, 4]

    for transport in ("http", "handle"):
        url = server["srv"].url if transport == "http" else None
        rep = serve_streams([str(v) for v in vids], url=url, encoding="png", keep_results=True)
        assert rep.transport == transport and len(rep.sources) == 2
        for st, frames in zip(rep.sources, decoded):
            assert not st.live and st.read == st.processed == len(frames) and st.dropped == st.errors == 0
            assert [r.frame for r in st.results] == list(range(len(frames)))
            for r in st.results:  # png is lossless: the server saw exactly the decoded frame
                _same(r.detections, ref(frames[r.frame]))
            assert st.fps > 0

    cam = FakeCamera(imgs, 150)
    rep = serve_streams([cam], keep_results=True)
    st = rep.sources[0]
    assert st.live and st.read == 150 and st.errors == 0
    assert st.read == st.processed + st.dropped and st.dropped > 0  # stale frames dropped, every frame accounted
    idx = [r.frame for r in st.results]
    assert idx == sorted(set(idx))  # always the newest frame: never an older one after a newer one
    for r in st.results[:5]:
        _same(r.detections, ref(imgs[r.frame % len(imgs)]))

    rep = serve_streams([str(vids[0])], url=server["srv"].url, max_frames=2)
    assert rep.sources[0].processed == 2
    assert "| all (http, 0 retries) |" in rep.table() and rep.failed == 0 and not rep.gave_up


def test_second_app_onnxruntime_dynamic_batch_shipped_model(server, exported):
    """Any backend: a dynamic-batch ONNX on ONNX Runtime, model bytes shipped through Ray, on /ort, greedy batcher,
    and a bearer token its replicas check on every HTTP route but /health (the handle API is Ray's own)."""
    from ray import serve

    from edge_mlla.serve import run

    onnx = exported("onnx", imgsz=IMGSZ, dynamic=True)
    srv2 = run(onnx, name="edge_mlla_ort", route_prefix="/ort", replicas=1, threads=1, num_cpus=0.5, max_batch=4,
               batch_wait_ms=50, batcher="greedy", backend="onnxruntime", ship_model=True, port=server["port"],
               token=TOKEN, blocking=False)  # fmt: skip
    try:
        local = Detector(onnx, backend="onnxruntime")
        frames = [cv2.imread(str(p)) for p in IMAGES] * 2
        h = serve.get_app_handle("edge_mlla_ort")
        answers = [r.result(timeout_s=120) for r in [h.detect_json.remote(f) for f in frames]]
        sizes = [a["timing_ms"]["batch_size"] for a in answers]
        assert sum(s == 4 for s in sizes) >= 4  # 12 in flight on one replica: at least one full batch
        for a, f in zip(answers, frames):
            assert a["model"]["backend"] == "onnxruntime" and a["model"]["batch"] is None
            _same_json(a, local(f))  # batched vs one at a time: equal to float noise
        status, ctype, raw = _post(server["port"], IMAGES[0].read_bytes(), "image/jpeg", "/ort")  # no token: refused
        assert status == 401 and ctype == "application/json" and json.loads(raw)["error"]["type"] == "unauthorized"
        assert _post(server["port"], b"", None, "/ort/health", "GET")[0] == 200  # /health needs none
        status, _, raw = _post(server["port"], IMAGES[0].read_bytes(), "image/jpeg", "/ort",
                               headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
        assert status == 200 and json.loads(raw)["model"]["backend"] == "onnxruntime"
        local.close()
    finally:
        srv2.shutdown()  # deletes this app only: Serve and the first app keep running
    assert "edge_mlla_ort" not in serve.status().applications
    assert _post(server["port"], b"", None, "/health", "GET")[0] == 200


def test_clean_shutdown_leaves_no_processes(server):
    """Last test of the module: SIGTERM (as docker stop / systemd send it) ends Server.wait(), which deletes the app
    and stops the Ray that run() started; nothing of Ray is left."""
    import signal

    assert any(n.split(":", 1)[1] in ("raylet", "gcs_server") for n in ray_children(psutil))  # they were ours
    default = signal.getsignal(signal.SIGTERM)

    def send_when_armed() -> None:  # only once wait() has put its handler in place
        deadline = time.monotonic() + 30
        while signal.getsignal(signal.SIGTERM) is default and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=send_when_armed, daemon=True).start()
    server["srv"].wait()  # returns after shutting Serve and Ray down
    assert signal.getsignal(signal.SIGTERM) is default  # handler restored
    with pytest.raises(OSError):  # Serve's HTTP proxy is gone with it
        _post(server["port"], b"", None, "/health", "GET")
    assert not ray.is_initialized() and ray_children(psutil) == []  # reaped by shutdown(), not left to time out
