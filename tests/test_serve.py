"""Ray Serve deployment of Detector on a local single-node Ray (loopback only, no dashboard).

One Ray instance for the whole module (the slow part is starting it); the model is the bundled
detector exported at 320 px. References are independent of the server: a local ``Detector`` on the
same file and the same images, parsed by this file's own code from the JSON the server returns.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import BCCD, ROOT

ray = pytest.importorskip("ray")
pytest.importorskip("ray.serve")

from edge_mlla import Detector
from edge_mlla.errors import ShapeError

IMGSZ = 320
IMAGES = sorted((BCCD / "images" / "test").glob("*.jpg"))[:6]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(port: int, body: bytes, ctype: str | None = "image/jpeg", path: str = "/", method: str = "POST"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        headers = {} if ctype is None else {"Content-Type": ctype}
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        return r.status, r.getheader("content-type"), r.read()
    finally:
        conn.close()


def _same_json(payload: dict, ref, atol: float = 1e-3) -> None:
    """The server's JSON answer equals a local Detections (boxes to ``atol`` px, classes exactly)."""
    boxes = np.asarray(payload["boxes"], np.float64).reshape(-1, 4)
    assert len(boxes) == len(ref), (len(boxes), len(ref))
    np.testing.assert_allclose(boxes, ref.xyxy, atol=atol)
    np.testing.assert_allclose(payload["scores"], ref.confidence, atol=1e-5)
    assert payload["class_ids"] == ref.class_id.tolist()
    assert payload["class_names"] == [ref.names[int(c)] for c in ref.class_id]


def _same(a, b, atol: float = 1e-3) -> None:
    assert len(a) == len(b), (len(a), len(b))
    np.testing.assert_allclose(a.xyxy, b.xyxy, atol=atol)
    np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-5)
    np.testing.assert_array_equal(a.class_id, b.class_id)


# ------------------------------------------------------------------ CLI errors (no Ray instance needed)
def test_cli_bad_input_is_one_line_no_traceback(tmp_path, monkeypatch, capsys, exported):
    from edge_mlla.cli import main

    assert main(["serve", str(tmp_path / "missing.xml"), "--port", str(_free_port())]) == 2
    err = capsys.readouterr().err
    assert "model file not found" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1

    not_a_model = tmp_path / "model.onnx"
    not_a_model.write_bytes(b"this is not onnx")
    assert main(["serve", str(not_a_model), "--port", str(_free_port())]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and "model.onnx" in err

    assert main(["serve", str(exported("onnx", imgsz=IMGSZ)), "--replicas", "0"]) == 2
    assert "replicas must be an integer >= 1" in capsys.readouterr().err

    # Ray missing: the pip command, not an ImportError traceback
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setitem(sys.modules, "ray.serve", None)
    assert main(["serve", str(exported("onnx", imgsz=IMGSZ))]) == 2
    err = capsys.readouterr().err
    assert 'pip install "edge-mlla[serve]"' in err and "Traceback" not in err


def test_unreachable_cluster_fails_fast():
    """Ray itself retries a dead address for minutes; we check the port first."""
    from edge_mlla.errors import ConfigError, ServeError
    from edge_mlla.serve.lifecycle import probe_cluster as _probe_cluster

    with pytest.raises(ServeError, match=r"no Ray cluster answers at 127\.0\.0\.1:\d+ .*ray start --head"):
        _probe_cluster(f"127.0.0.1:{_free_port()}", timeout_s=2)
    with pytest.raises(ConfigError, match="HOST:PORT"):
        _probe_cluster("not-an-address")


def test_replicas_run_what_the_probe_ran(trained_pt, exported, monkeypatch):
    """Replicas reserve CPUs only: the backend and device are decided once, for CPUs, before the probe, so a GPU on
    the serving machine cannot make the probe pass where every replica would fail."""
    import dataclasses

    from edge_mlla.errors import ConfigError
    from edge_mlla.runtimes import available, select_backend
    from edge_mlla.serve import replica_target

    assert replica_target(trained_pt) == ("torch", "cpu")  # a .pt: torch would pick cuda where it sees a GPU
    assert replica_target(trained_pt, "torch", "cpu") == ("torch", "cpu")
    onnx = exported("onnx")
    cpu_choice = select_backend(onnx).name  # what auto picks on this machine, which has no GPU
    assert cpu_choice != "cuda"
    gpu = {k: dataclasses.replace(v, available=True, reason="") if k == "cuda" else v for k, v in available().items()}
    for where in ("edge_mlla.runtimes.available", "edge_mlla.runtimes.base.available"):
        monkeypatch.setattr(where, lambda refresh=False: gpu)
    assert select_backend(onnx).name == "cuda"  # the stand-in GPU machine: auto would take cuda...
    assert replica_target(onnx) == (cpu_choice, None)  # ...but replicas serve .onnx on the CPU backend
    for bad in ({"backend": "cuda"}, {"device": "cuda:0"}):
        with pytest.raises(ConfigError, match="replicas on CPUs"):
            replica_target(onnx, **bad)


def test_stream_clients_open_sources_by_the_runner_rule(tmp_path, val_images):
    """serve-streams opens sources with stream.open_source's rule: folders too, files not live, the same typed
    errors, and no password in a label that reaches logs and reports."""
    from edge_mlla.errors import InputTypeError, MissingFileError, SourceError
    from edge_mlla.serve import open_capture

    folder = tmp_path / "frames"
    folder.mkdir()
    for p in val_images[:2]:
        (folder / p.name).write_bytes(p.read_bytes())
    cap, live, label = open_capture(folder)
    frames = [cap.read() for _ in range(3)]
    cap.release()
    assert not live and label == str(folder) and [ok for ok, _ in frames] == [True, True, False]
    with pytest.raises(MissingFileError, match="video source not found"):
        open_capture(tmp_path / "missing.mp4")
    with pytest.raises(InputTypeError):
        open_capture(3.5)
    with pytest.raises(SourceError) as e:  # nothing listens on this port: refused at once, within the open timeout
        open_capture(f"rtsp://admin:secret@127.0.0.1:{_free_port()}/live", open_timeout=2)
    assert "secret" not in str(e.value)


def test_cli_port_in_use_is_a_clear_error(exported):
    """A fresh process, as a user runs it: the port check happens before Ray starts."""
    model = exported("onnx", imgsz=IMGSZ)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        r = subprocess.run([sys.executable, "-m", "edge_mlla", "serve", str(model), "--port", str(port)],
                           capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr and "Traceback" not in r.stderr


# ------------------------------------------------------------------ greedy batcher (plain asyncio)
def test_greedy_batcher_fills_batches_from_the_backlog():
    import asyncio

    from edge_mlla.serve import GreedyBatcher

    sizes: list[int] = []

    async def work(xs):
        sizes.append(len(xs))
        await asyncio.sleep(0.01)
        if -1 in xs:
            raise ValueError("bad item")
        return [x * 10 for x in xs]

    async def main():
        b = GreedyBatcher(work, max_batch=4, wait_s=0.0)
        out = await asyncio.gather(*(b(i) for i in range(10)))  # all 10 wait before the first batch starts
        bad = await asyncio.gather(b(-1), b(5), return_exceptions=True)  # one batch: both callers get the error
        after = await b(7)  # the loop survives a failed batch
        return out, bad, after

    out, bad, after = asyncio.run(main())
    assert out == [i * 10 for i in range(10)]
    assert sizes[:3] == [4, 4, 2]  # full batches from the backlog, in arrival order
    assert all(isinstance(e, ValueError) for e in bad) and after == 70


# ------------------------------------------------------------------ one Ray instance for the rest
@pytest.fixture(scope="module")
def server(exported):
    from ray import serve

    from edge_mlla.serve import run

    model = exported("openvino", imgsz=IMGSZ)
    port = _free_port()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    try:
        srv = run(model, replicas=2, port=port, threads=1, num_cpus=0.5, max_batch=4, batch_wait_ms=10, blocking=False)
    except BaseException:
        ray.shutdown()
        raise
    yield {"srv": srv, "model": model, "port": port}
    if ray.is_initialized():  # the shutdown test normally did this already
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="module")
def ref(server):
    """A local Detector on the same file, with the server's thresholds."""
    det = Detector(server["model"], conf=0.25, iou=0.45)
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
    # only the loopback address answers: the proxy is bound to 127.0.0.1, not 0.0.0.0
    listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout
    if listening.strip():  # ss present
        assert all(line.split()[3].startswith("127.0.0.1:") for line in listening.strip().splitlines()), listening
    status, _, body = _post(port, b"", None, "/info", "GET")
    info = json.loads(body)
    assert status == 200 and info["serve"]["max_batch"] == 4 and info["model"]["names"] == {str(k): v for k, v in ref.names.items()}


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
        assert a["model"]["backend"] == ref.backend.name and a["model"]["precision"] == ref.precision
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
    from ray import serve

    from edge_mlla.serve import HTTPClient

    port, n = server["port"], 120
    bodies = [p.read_bytes() for p in IMAGES]
    answers: dict[int, dict] = {}
    retries = []
    lock = threading.Lock()
    local = threading.local()

    def one(i: int) -> None:
        if not hasattr(local, "c"):
            local.c = HTTPClient(f"http://127.0.0.1:{port}/", timeout_s=60)
        for attempt in range(40):
            try:
                status, body = local.c.request("POST", "/", bodies[i % len(bodies)], {"Content-Type": "image/jpeg"})
            except OSError as e:  # connection reset while the replica dies
                status, body = -1, str(e).encode()
            if status == 200:
                with lock:
                    answers[i] = json.loads(body)
                return
            assert status >= 500 or status == -1, (status, body[:300])  # only server-side failures are retried
            with lock:
                retries.append((i, status))
            time.sleep(0.2)
        raise AssertionError(f"request {i} not answered after 40 tries")

    with ThreadPoolExecutor(8) as pool:
        futs = [pool.submit(one, i) for i in range(n)]
        while len(answers) < 20:
            time.sleep(0.05)
        with lock:
            victim = answers[max(answers)]["replica"]
        ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
        for f in futs:
            f.result()
    assert sorted(answers) == list(range(n))  # none lost
    for i, a in answers.items():
        _same_json(a, ref_dets[i % len(IMAGES)])
    print(f"\nreplica {victim} killed after 20 answers: {len(retries)} client retries, statuses {sorted({s for _, s in retries})}")

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


def _video(path: Path, frames: list[np.ndarray]) -> Path:
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (w, h))
    assert vw.isOpened()
    for f in frames:
        vw.write(f)
    vw.release()
    return path


def _read_all(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        out.append(f)
    cap.release()
    return out


class FakeCamera:
    """A live source that produces frames much faster than the server answers them."""

    live = True
    label = "fake-camera"

    def __init__(self, frames: list[np.ndarray], n: int) -> None:
        self.frames, self.n, self.i = frames, n, 0

    def read(self):
        if self.i >= self.n:
            return False, None
        time.sleep(0.002)
        f = self.frames[self.i % len(self.frames)]
        self.i += 1
        return True, f

    def release(self) -> None:
        pass


def test_serve_streams_files_every_frame_live_latest_frame(server, ref, tmp_path):
    from edge_mlla.serve import serve_streams

    imgs = [cv2.resize(cv2.imread(str(p)), (320, 240)) for p in IMAGES]
    vids = [_video(tmp_path / "a.avi", imgs[:4]), _video(tmp_path / "b.avi", imgs[2:6])]
    decoded = [_read_all(v) for v in vids]
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
    assert "| all (http) |" in rep.table()


def test_second_app_onnxruntime_dynamic_batch_shipped_model(server, exported):
    """Any backend: a dynamic-batch ONNX on ONNX Runtime, model bytes shipped through Ray, on /ort, greedy batcher."""
    from ray import serve

    from edge_mlla.serve import run

    onnx = exported("onnx", imgsz=IMGSZ, dynamic=True)
    srv2 = run(onnx, name="edge_mlla_ort", route_prefix="/ort", replicas=1, threads=1, num_cpus=0.5, max_batch=4,
               batch_wait_ms=50, batcher="greedy", backend="onnxruntime", ship_model=True, port=server["port"],
               blocking=False)  # fmt: skip
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
        status, _, raw = _post(server["port"], IMAGES[0].read_bytes(), "image/jpeg", "/ort")
        assert status == 200 and json.loads(raw)["model"]["backend"] == "onnxruntime"
        local.close()
    finally:
        srv2.shutdown()  # deletes this app only: Serve and the first app keep running
    assert "edge_mlla_ort" not in serve.status().applications
    assert _post(server["port"], b"", None, "/health", "GET")[0] == 200


def _ray_children() -> list[str]:
    import psutil

    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            name = p.name()
        except psutil.NoSuchProcess:
            continue
        if name in ("raylet", "gcs_server") or name.startswith("ray::"):
            out.append(f"{p.pid}:{name}")
    return out


def test_clean_shutdown_leaves_no_processes(server):
    """Last test of the module: SIGTERM (as docker stop / systemd send it) ends Server.wait(), which shuts Serve
    down; then ray.shutdown(), and nothing of Ray is left."""
    import signal

    from ray import serve

    assert any(n.split(":", 1)[1] in ("raylet", "gcs_server") for n in _ray_children())  # they were ours
    default = signal.getsignal(signal.SIGTERM)

    def send_when_armed() -> None:  # only once wait() has put its handler in place
        deadline = time.monotonic() + 30
        while signal.getsignal(signal.SIGTERM) is default and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=send_when_armed, daemon=True).start()
    server["srv"].wait()  # returns after shutting Serve down
    assert signal.getsignal(signal.SIGTERM) is default  # handler restored
    with pytest.raises(OSError):  # Serve's HTTP proxy is gone with it
        _post(server["port"], b"", None, "/health", "GET")
    serve.shutdown()  # no-op now; the documented pair
    ray.shutdown()
    deadline = time.monotonic() + 30
    while _ray_children() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _ray_children() == []
