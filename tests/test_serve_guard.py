"""The serving layer's defences, without Ray: the HTTP proxy guard (stalled and oversized bodies, the upload cap,
the token, JSON for every error), the bounded body reader, the retrying client, the process reaper and the
exposure warning. Plain asyncio and a loopback HTTP server in a thread: fast, and no timing assertions (deadlines
are tiny body timeouts that prove the guard stops waiting, and fake sleeps record the back-off)."""

from __future__ import annotations

import asyncio
import http.server
import json
import logging
import subprocess
import sys
import threading

import pytest

from edge_mlla.errors import ConfigError
from edge_mlla.serve import HTTPClient, RemoteError, Retry, ServeConfig
from edge_mlla.serve.codec import HTTPError, read_body
from edge_mlla.serve.guard import BodyGuard, GuardLimits, proxy_middlewares

TOKEN = "s3cret-token-123"


class FakeApp:
    """Stands in for Serve's proxy: records what it received; answers 200 JSON, or ``plain`` text, or nothing."""

    def __init__(self, answer: str = "json", status: int = 200) -> None:
        self.answer, self.status, self.bodies, self.calls = answer, status, [], 0

    async def __call__(self, scope, receive, send):
        self.calls += 1
        if scope["method"] == "POST":
            msg = await receive()
            self.bodies.append(msg["body"])
        if self.answer == "none":  # what Serve's proxy does when the replica died: no response at all
            return
        ctype, body = (b"application/json", b'{"ok":true}') if self.answer == "json" else (b"text/plain", b"Request timed out after 5s.")
        await send({"type": "http.response.start", "status": self.status, "headers": [(b"content-type", ctype)]})
        await send({"type": "http.response.body", "body": body, "more_body": False})


class Client:
    """One ASGI request: ``chunks`` as the body (``stall=True``: then wait forever), and the response it got."""

    def __init__(self, method="POST", path="/", headers=(), chunks=(), stall=False) -> None:
        self.scope = {"type": "http", "method": method, "path": path,
                      "headers": [(k.encode(), v.encode()) for k, v in headers]}  # fmt: skip
        self.chunks, self.stall, self.read = list(chunks), stall, 0
        self.sent: list[dict] = []

    async def receive(self):
        if self.chunks:
            chunk = self.chunks.pop(0)
            self.read += len(chunk)
            return {"type": "http.request", "body": chunk, "more_body": bool(self.chunks) or self.stall}
        if self.stall:
            await asyncio.Event().wait()  # never set: a client that stopped sending
        await asyncio.Event().wait()  # after the body: wait for a disconnect that does not come

    async def send(self, message):
        self.sent.append(message)

    @property
    def status(self) -> int:
        return self.sent[0]["status"]

    @property
    def headers(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.sent[0]["headers"]}

    @property
    def json(self) -> dict:
        return json.loads(b"".join(m.get("body", b"") for m in self.sent[1:]))


def _run(guard: BodyGuard, client: Client):
    asyncio.run(guard(client.scope, client.receive, client.send))
    return client


def test_guard_reads_the_body_first_and_passes_it_on():
    app = FakeApp()
    guard = BodyGuard(app, GuardLimits(max_bytes=1000, body_timeout_s=5.0))
    c = _run(guard, Client(headers=[("content-type", "image/jpeg")], chunks=[b"ab", b"cd", b"ef"]))
    assert app.bodies == [b"abcdef"] and c.status == 200 and c.headers["x-edge-mlla-guard"] == "1"


def test_stalled_body_gets_408_and_never_reaches_the_app():
    app = FakeApp()
    guard = BodyGuard(app, GuardLimits(max_bytes=1000, body_timeout_s=0.05))  # tiny deadline: proves it stops waiting
    c = _run(guard, Client(chunks=[b"abc"], stall=True))
    assert c.status == 408 and c.json["error"]["type"] == "body_timeout" and "3 bytes read" in c.json["error"]["message"]
    assert c.headers["connection"] == "close" and app.calls == 0 and guard.uploads == 0


def test_chunked_body_over_the_limit_is_cut_at_max_bytes():
    app = FakeApp()
    chunk = b"x" * 65536
    guard = BodyGuard(app, GuardLimits(max_bytes=1 << 20, body_timeout_s=5.0))
    c = _run(guard, Client(chunks=[chunk] * 1000))  # a 62.5 MiB upload with no Content-Length
    assert c.status == 413 and c.json["error"]["type"] == "body_too_large" and "max_bytes" in c.json["error"]["message"]
    assert c.read <= (1 << 20) + len(chunk)  # stopped reading one chunk past the limit, not at the end
    assert c.headers["connection"] == "close" and app.calls == 0


def test_declared_length_over_the_limit_is_refused_before_reading():
    guard = BodyGuard(FakeApp(), GuardLimits(max_bytes=1000))
    c = _run(guard, Client(headers=[("content-length", str(10**9))], chunks=[b"x" * 10]))
    assert c.status == 413 and c.read == 0 and "1000000000 bytes" in c.json["error"]["message"]


def test_upload_cap_evicts_the_slowest_upload_and_health_still_passes():
    """max_uploads=2, two clients that sent 64 KiB and stalled: while they are fast on average a new upload gets 503
    at once; once they average under min_rate (the clock is injected: no sleeping) a new upload evicts the slowest.
    A GET always passes."""
    app, now = FakeApp(), [0.0]
    guard = BodyGuard(app, GuardLimits(max_bytes=1 << 20, body_timeout_s=30.0, max_uploads=2), grace_s=0.25,
                      min_rate=16384, clock=lambda: now[0])  # fmt: skip

    async def main():
        stalled = [Client(chunks=[b"a" * 65536], stall=True) for _ in range(2)]
        tasks = []
        for c in stalled:
            tasks.append(asyncio.create_task(guard(c.scope, c.receive, c.send)))
            for _ in range(5):  # it starts reading, gets its 64 KiB, then waits
                await asyncio.sleep(0)
            now[0] += 0.5
        assert guard.uploads == 2
        busy = Client(chunks=[b"abc"])  # both average >= 64 KiB/s: no room
        await guard(busy.scope, busy.receive, busy.send)
        now[0] = 10.0  # both now average under 16 KiB/s; the first started earlier: the slowest
        good = Client(chunks=[b"abc"])
        await guard(good.scope, good.receive, good.send)
        health = Client(method="GET", path="/health")
        await guard(health.scope, health.receive, health.send)
        for _ in range(5):
            await asyncio.sleep(0)
        done = [t for t in tasks if t.done()]
        for t in tasks:
            t.cancel()
        return stalled, busy, good, health, len(done)

    stalled, busy, good, health, done = asyncio.run(main())
    assert busy.status == 503 and busy.json["error"]["type"] == "too_many_uploads" and busy.headers["retry-after"] == "1"
    assert good.status == 200 and app.bodies == [b"abc"] and health.status == 200
    assert done == 1 and stalled[0].status == 408 and stalled[0].json["error"]["type"] == "upload_evicted"
    assert "65536 bytes in 10.0 s" in stalled[0].json["error"]["message"]
    assert stalled[1].sent == []  # the second, a little faster on average, is still being read


def test_token_on_every_route_but_health():
    app = FakeApp()
    guard = BodyGuard(app, GuardLimits(token=TOKEN))
    missing = _run(guard, Client(method="GET", path="/info"))
    wrong = _run(guard, Client(method="GET", path="/info", headers=[("authorization", "Bearer nope")]))
    health = _run(guard, Client(method="GET", path="/ort/health"))
    ok = _run(guard, Client(path="/", headers=[("authorization", f"Bearer {TOKEN}")], chunks=[b"x"]))
    assert missing.status == wrong.status == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert missing.json["error"]["type"] == "unauthorized" and TOKEN not in json.dumps(missing.json)
    assert health.status == 200 and ok.status == 200 and app.calls == 2


def test_every_error_the_client_sees_is_json():
    timeout = _run(BodyGuard(FakeApp("plain", 408), GuardLimits()), Client(method="GET", path="/"))
    assert timeout.status == 408 and timeout.json["error"] == {"status": 408, "type": "request_timeout",
                                                               "message": "Request timed out after 5s."}  # fmt: skip
    lost = _run(BodyGuard(FakeApp("none"), GuardLimits()), Client(chunks=[b"x"]))
    assert lost.status == 503 and lost.json["error"]["type"] == "replica_unavailable" and "retry" in lost.json["error"]["message"]
    assert lost.headers["content-type"] == "application/json"


def test_limits_reach_the_proxy_through_its_environment(monkeypatch):
    limits = GuardLimits(max_bytes=123, body_timeout_s=4.0, max_uploads=7, token=TOKEN)
    monkeypatch.setenv("EDGE_MLLA_SERVE_GUARD", limits.to_env())
    (mw,) = proxy_middlewares()
    assert mw.cls is BodyGuard and mw.kwargs["limits"] == limits and TOKEN not in repr(limits)


def test_read_body_deadline_and_disconnect():
    async def gone():
        return {"type": "http.disconnect"}

    with pytest.raises(HTTPError) as e:
        asyncio.run(read_body(gone, {}, max_bytes=10, timeout_s=1.0))
    assert e.value.status == 400 and e.value.kind == "client_disconnected"
    now = [0.0]

    async def slow():  # each chunk takes 1 s of the injected clock
        now[0] += 1.0
        return {"type": "http.request", "body": b"x", "more_body": True}

    with pytest.raises(HTTPError) as e:
        asyncio.run(read_body(slow, {}, max_bytes=100, timeout_s=3.5, clock=lambda: now[0]))
    assert e.value.status == 408 and "(3 bytes read)" in e.value.message


def test_config_checks_values_and_hides_the_token():
    cfg = ServeConfig.make("m.onnx", token=TOKEN, replicas=2, threads=1, foo=3)
    assert cfg.detector_options == {"foo": 3} and TOKEN not in repr(cfg)
    v = cfg.validated()
    assert v.limits()["token_required"] is True and TOKEN not in json.dumps(v.limits())
    for bad, match in (({"body_timeout_s": 0}, "body_timeout_s"), ({"max_uploads": 0}, "max_uploads"),
                       ({"token": "short"}, "token"), ({"batcher": "x"}, "batcher")):  # fmt: skip
        with pytest.raises(ConfigError, match=match):
            ServeConfig.make("m.onnx", **bad).validated()


# ------------------------------------------------------------------ the retrying client, on a loopback server
class _Flaky(http.server.BaseHTTPRequestHandler):
    plan: list[tuple[int, bytes]] = []
    seen: list[str] = []

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("content-length", 0)))
        type(self).seen.append(self.headers.get("authorization", ""))
        status, body = type(self).plan.pop(0) if type(self).plan else (200, b'{"ok": 1}')
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if body.startswith(b"{") else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture()
def flaky():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    _Flaky.plan, _Flaky.seen = [], []
    yield f"http://127.0.0.1:{srv.server_address[1]}/"
    srv.shutdown()
    srv.server_close()


def test_http_client_retries_a_lost_replica_bounded_with_backoff(flaky):
    lost = b'{"error": {"status": 503, "type": "replica_unavailable", "message": "retry"}}'
    _Flaky.plan = [(503, lost), (500, b"Internal Server Error"), (200, b'{"boxes": []}')]
    slept: list[float] = []
    c = HTTPClient(flaky, retry=Retry(tries=3, base_s=0.25, max_s=2.0), token=TOKEN, sleep=slept.append)
    assert c.post_bytes(b"img") == {"boxes": []}
    assert slept == [0.25, 0.5] and c.retries == 2 and _Flaky.seen == [f"Bearer {TOKEN}"] * 3

    _Flaky.plan = [(503, lost)] * 10  # the server stays down: 1 try + 3 retries, then the error
    slept.clear()
    with pytest.raises(RemoteError) as e:
        c.post_bytes(b"img")
    assert e.value.status == 503 and e.value.kind == "replica_unavailable" and slept == [0.25, 0.5, 1.0]

    for status, body in ((400, b'{"error": {"status": 400, "type": "bad_image", "message": "x"}}'),
                         (500, b'{"error": {"status": 500, "type": "internal_error", "message": "bug"}}')):  # fmt: skip
        _Flaky.plan = [(status, body)]
        slept.clear()
        with pytest.raises(RemoteError) as e:
            c.post_bytes(b"img")
        assert e.value.status == status and slept == []  # a wrong request or our own bug is not retried


def test_http_client_retries_a_refused_connection_then_says_so():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket is closed
    slept: list[float] = []
    c = HTTPClient(f"http://127.0.0.1:{port}/", retry=Retry(tries=2), sleep=slept.append)
    with pytest.raises(ConnectionError):
        c.post_bytes(b"img")
    assert slept == [0.25, 0.5]


# ------------------------------------------------------------------ processes and exposure
def test_reaper_ends_the_processes_that_appeared_and_only_those():
    from edge_mlla.serve.processes import RayProcesses

    before = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        procs = RayProcesses(poll_s=0.05).start()
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        assert procs.snapshot() == 1
        assert procs.reap(timeout_s=10) == 1
        assert child.wait(timeout=10) is not None and before.poll() is None  # the older child is not ours to stop
    finally:
        before.kill()
        before.wait()


def test_a_bind_beyond_loopback_warns_and_prints_a_reachable_url(caplog):
    from edge_mlla.serve.lifecycle import _warn_if_exposed, reachable_host
    from edge_mlla.serve.raystart import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("::ffff:127.0.0.5")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.7")
    with caplog.at_level(logging.WARNING, logger="edge_mlla.serve"):
        _warn_if_exposed("127.0.0.1", 8000, ServeConfig("m.onnx"))
        assert caplog.records == []
        _warn_if_exposed("0.0.0.0", 8000, ServeConfig("m.onnx"))
        _warn_if_exposed("0.0.0.0", 8000, ServeConfig("m.onnx", token=TOKEN))
    first, second = (r.getMessage() for r in caplog.records)
    assert "reachable from other machines" in first and "no token" in first and "--token" in first
    assert "needs the token" in second and TOKEN not in second
    shown = reachable_host("0.0.0.0")
    assert shown not in ("0.0.0.0", "") and reachable_host("10.1.2.3") == "10.1.2.3"
