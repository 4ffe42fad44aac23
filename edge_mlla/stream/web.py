"""A live view of a :class:`~edge_mlla.stream.StreamRunner` in the browser: one page with each source's annotated
MJPEG stream and its numbers (FPS, latency, gated share, tracks, line counts, state), and JSON at ``/stats``.

The server listens on 127.0.0.1 unless told otherwise (another address logs a warning: the page has no TLS), can
require a token (``?token=...`` or ``Authorization: Bearer ...``, on every route but ``/health``), and cannot be
stalled by a slow client: each connection has its own thread, at most ``max_clients`` at once (more get a 503), a
request must arrive whole within ``timeout`` seconds, and every write has the same deadline. Frames are drawn and JPEG-encoded only when a client asks,
at most ``max_fps`` a second per source, once for all clients.

Example:
    >>> view = LiveView(["cam0"], port=0)            # doctest: +SKIP
    >>> view.start(); print(view.url)                 # doctest: +SKIP
    http://127.0.0.1:41234/
    >>> for r in run:                                 # doctest: +SKIP
    ...     view.publish(r, run.status[r.source], {"fps": 15.0})
    >>> view.stop()                                   # doctest: +SKIP
"""

from __future__ import annotations

import hmac
import html
import http.server
import json
import logging
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np

from edge_mlla.errors import ConfigError
from edge_mlla.stream.records import SourceStatus, StreamResult

LOGGER = logging.getLogger("edge_mlla")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class _Feed:
    """One source's newest result and its numbers; the JPEG of it is made on demand, once."""

    def __init__(self, index: int, name: str) -> None:
        self.index, self.name = index, name
        self.result: StreamResult | None = None
        self.seq = 0  # results published
        self.jpeg: bytes | None = None
        self.jpeg_seq = -1
        self.jpeg_t = 0.0
        self.info: dict[str, Any] = {"state": "connecting"}


class LiveView:
    """The live view's server and its feeds (see the module docstring). ``draw(result, info) -> image`` makes the
    picture of a result (default: boxes, labels and a banner); ``title`` heads the page."""

    def __init__(self, names: Sequence[str], host: str = "127.0.0.1", port: int = 8080, token: str | None = None,
                 max_clients: int = 32, timeout: float = 10.0, max_fps: float = 10.0, jpeg_quality: int = 75,
                 draw: Callable[[StreamResult, dict], np.ndarray] | None = None, title: str = "edge-mlla watch") -> None:  # fmt: skip
        if not names:
            raise ConfigError("LiveView needs at least one source name")
        if not 0 <= int(port) < 65536 or int(max_clients) < 1 or not timeout > 0 or not max_fps > 0:
            raise ConfigError(f"LiveView needs 0 <= port < 65536, max_clients >= 1, timeout > 0, max_fps > 0; got port={port}, "
                              f"max_clients={max_clients}, timeout={timeout}, max_fps={max_fps}")  # fmt: skip
        self.feeds = [_Feed(i, n) for i, n in enumerate(names)]
        self.host, self.port, self.token = host, int(port), token or None
        self.max_clients, self.timeout, self.max_fps = int(max_clients), float(timeout), float(max_fps)
        self.quality, self.title = int(jpeg_quality), title
        self.draw = draw or default_draw
        self.extra: dict[str, Any] = {}  # page-wide facts for /stats (detector, precision, ...)
        self.cond = threading.Condition()
        self.stopping = threading.Event()
        self.t0 = time.monotonic()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        if host not in LOOPBACK:
            LOGGER.warning("live view on %s: reachable from the network, without TLS%s", host,
                           "" if self.token else " and without a token (pass token=... / --token)")  # fmt: skip

    # ---------------------------------------------------------------------------------------- feeding
    def publish(self, result: StreamResult, status: SourceStatus | None = None, info: dict[str, Any] | None = None) -> None:
        """The newest result of its source, with its status and numbers (cheap: nothing is drawn here)."""
        feed = self.feeds[result.source]
        with self.cond:
            feed.result, feed.seq = result, feed.seq + 1
            if status is not None:
                feed.info.update(_status_info(status))
            if info:
                feed.info.update(info)
            self.cond.notify_all()

    def set_status(self, status: SourceStatus) -> None:
        """A source's state changed (also when it sends no frames: lost, reconnecting, ended, stopped)."""
        with self.cond:
            self.feeds[status.source].info.update(_status_info(status))
            self.cond.notify_all()

    def stats(self) -> dict[str, Any]:
        """What ``/stats`` answers."""
        with self.cond:
            sources = [{"index": f.index, "name": f.name, "frames": f.seq, **{k: v for k, v in f.info.items() if k[0] != "_"}}
                       for f in self.feeds]  # fmt: skip
        return {"uptime_s": round(time.monotonic() - self.t0, 1), **self.extra, "sources": sources}

    def jpeg(self, index: int, after: int = -1, wait: float = 0.0) -> tuple[int, bytes | None]:
        """(sequence, JPEG) of source ``index``'s newest picture newer than ``after``, waiting up to ``wait`` seconds
        for one; (after, None) when none came (or the view is stopping). A picture is drawn and encoded at most
        ``max_fps`` times a second per source, by whichever client asks first; the others get the same bytes."""
        feed = self.feeds[index]
        deadline = time.monotonic() + wait
        with self.cond:
            while True:
                now = time.monotonic()
                if self.stopping.is_set():
                    return after, None
                if feed.jpeg is not None and feed.jpeg_seq > after:
                    return feed.jpeg_seq, feed.jpeg
                ready_at = feed.jpeg_t + 1.0 / self.max_fps
                if feed.result is not None and feed.seq > after and feed.seq > feed.jpeg_seq and now >= ready_at:
                    break
                left = deadline - now
                if left <= 0:
                    return after, None
                self.cond.wait(min(left, max(0.005, ready_at - now)) if feed.seq > feed.jpeg_seq else left)
            result, info, seq = feed.result, dict(feed.info), feed.seq
            feed.jpeg_t = now  # this client draws this picture; the others wait for it
        ok, buf = cv2.imencode(".jpg", self.draw(result, info), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        with self.cond:
            if ok and seq > feed.jpeg_seq:
                feed.jpeg, feed.jpeg_seq = buf.tobytes(), seq
                self.cond.notify_all()
            return (feed.jpeg_seq, feed.jpeg) if feed.jpeg is not None and feed.jpeg_seq > after else (after, None)

    # ---------------------------------------------------------------------------------------- serving
    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = self._server.server_address[1] if self._server else self.port
        return f"http://{host}:{port}/" + (f"?token={self.token}" if self.token else "")

    def start(self) -> LiveView:
        """Listen (``port=0``: any free port) and serve in a background thread."""
        self._server = _Server((self.host, self.port), _Handler, self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="edge_mlla-live-view", daemon=True)  # fmt: skip
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: streams end, connections close, threads are joined (each within ``timeout``)."""
        self.stopping.set()
        with self.cond:
            self.cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server.join_clients(self.timeout)
        if self._thread is not None:
            self._thread.join(self.timeout)

    def __enter__(self) -> LiveView:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def authorized(self, path: str, headers: Any) -> bool:
        if self.token is None:
            return True
        query = parse_qs(urlsplit(path).query).get("token", [""])[0]
        bearer = (headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        return any(hmac.compare_digest(x.encode(), self.token.encode()) for x in (query, bearer) if x)

    def page(self) -> str:
        q = f"?token={self.token}" if self.token else ""
        cards = "\n".join(
            f'<div class="card" id="card{f.index}"><img id="img{f.index}" src="/stream/{f.index}.mjpg{q}" alt="source {f.index}">'
            f'<div class="name">{html.escape(f.name)}</div><div class="nums" id="nums{f.index}">connecting</div></div>'
            for f in self.feeds
        )
        return _PAGE.replace("{title}", html.escape(self.title)).replace("{cards}", cards).replace("{q}", json.dumps(q))


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """One thread per connection, at most ``view.max_clients`` at once (a connection beyond gets a 503 and is closed)."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type, view: LiveView) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.view = view
        self.slots = threading.BoundedSemaphore(view.max_clients)
        self.clients: set[threading.Thread] = set()
        self.clients_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            try:
                request.settimeout(1.0)
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        t = threading.Thread(target=self._serve_one, args=(request, client_address), daemon=True,
                             name="edge_mlla-live-view-client")  # fmt: skip
        with self.clients_lock:
            self.clients.add(t)
        t.start()

    def _serve_one(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            self.slots.release()
            with self.clients_lock:
                self.clients.discard(threading.current_thread())

    def join_clients(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.clients_lock:
            clients = list(self.clients)
        for t in clients:
            t.join(max(0.0, deadline - time.monotonic()))


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        self.timeout = self.server.view.timeout  # every read and write on this connection has a deadline
        super().setup()
        # and the request as a whole too: a client dribbling a byte at a time does not keep its slot
        self._deadline = threading.Timer(self.timeout, self._abort)
        self._deadline.daemon = True
        self._deadline.start()

    def _abort(self) -> None:
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def finish(self) -> None:
        self._deadline.cancel()
        super().finish()

    def log_message(self, fmt: str, *args: Any) -> None:
        LOGGER.debug("live view: " + fmt, *args)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self._deadline.cancel()  # the request arrived in time (a stream's writes keep their own deadline)
        view = self.server.view
        path = urlsplit(self.path).path
        if path == "/health":
            return self._send(200, b"ok", "text/plain")
        if not view.authorized(self.path, self.headers):
            return self._send(401, b'{"error": "missing or wrong token (?token=... or Authorization: Bearer ...)"}',
                              "application/json")  # fmt: skip
        if path in ("/", "/index.html"):
            return self._send(200, view.page().encode(), "text/html; charset=utf-8")
        if path == "/stats":
            return self._send(200, json.dumps(view.stats()).encode(), "application/json")
        index = self._source(path)
        if index is None:
            return self._send(404, b'{"error": "no such page"}', "application/json")
        if path.endswith(".jpg"):
            _, jpg = view.jpeg(index, wait=view.timeout)
            return self._send(200, jpg, "image/jpeg") if jpg else self._send(503, b"no frame yet", "text/plain")
        self._stream(index)

    def _source(self, path: str) -> int | None:
        for prefix, suffix in (("/stream/", ".mjpg"), ("/frame/", ".jpg")):
            if path.startswith(prefix) and path.endswith(suffix):
                num = path[len(prefix) : -len(suffix)]
                if num.isdigit() and int(num) < len(self.server.view.feeds):
                    return int(num)
        return None

    def _stream(self, index: int) -> None:
        view = self.server.view
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        seq, first = -1, True
        try:
            self.wfile.write(b"--frame\r\n")
            while not view.stopping.is_set():
                seq, jpg = view.jpeg(index, after=seq, wait=1.0)
                if jpg is None:
                    continue
                part = b"Content-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg) + jpg + b"\r\n--frame\r\n"
                self.wfile.write(part + part if first else part)  # a browser shows a part once the next one starts:
                self.wfile.flush()  # the first picture goes twice, so a source that sends one frame is seen
                first = False
        except OSError:  # the client went away, or stopped reading past the deadline
            pass

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)


def _status_info(st: SourceStatus) -> dict[str, Any]:
    return {"state": st.state, "note": st.note, "error": st.error, "reconnects": st.reconnects}


def default_draw(result: StreamResult, info: dict[str, Any]) -> np.ndarray:
    """Boxes and labels (carried boxes thinner), the source's line if ``info["_line"]`` holds a LineCounter, and
    a banner: FPS, latency, how the boxes were made, objects, state."""
    d = result.detections
    img = d.draw(result.frame, thickness=2)
    pred = d.data.get("predicted")
    if pred is not None and pred.any():  # carried boxes: a thin inner outline says "not detected on this frame"
        for x1, y1, x2, y2 in d.xyxy[pred].astype(int):
            cv2.rectangle(img, (x1 + 3, y1 + 3), (x2 - 3, y2 - 3), (255, 255, 255), 1, cv2.LINE_AA)
    line = info.get("_line")
    if line is not None:
        line.draw(img)
    img[:24] = img[:24] // 3
    text = (f"{info.get('fps', 0.0):.1f} FPS  {1000 * result.latency:.0f} ms  {result.mode}  {len(d)} objects  "
            f"{info.get('state', '')}")  # fmt: skip
    cv2.putText(img, text, (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 255), 1, cv2.LINE_AA)
    if info.get("note"):
        cv2.putText(img, str(info["note"])[:70], (6, 42), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 255), 1, cv2.LINE_AA)
    return img


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body { font-family: system-ui, sans-serif; background: #111; color: #ddd; margin: 12px; }
h1 { font-size: 18px; margin: 0 0 10px; } #top { font-size: 13px; color: #999; margin-bottom: 10px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(360px, 1fr)); gap: 10px; }
.card { background: #1c1c1c; border-radius: 6px; padding: 8px; }
.card img { width: 100%; display: block; background: #000; min-height: 120px; }
.name { font-weight: 600; margin: 6px 0 2px; overflow-wrap: anywhere; }
.nums { font-size: 13px; font-family: ui-monospace, monospace; white-space: pre-wrap; }
.state-ended, .state-stopped, .state-gave_up, .state-lost, .state-reconnecting { color: #f66; }
</style></head>
<body><h1>{title}</h1><div id="top">connecting...</div><div class="grid">
{cards}
</div>
<script>
const q = {q};
function fmt(v, d) { return (v === null || v === undefined) ? "-" : Number(v).toFixed(d); }
async function tick() {
  try {
    const r = await fetch("/stats" + q, {cache: "no-store"});
    const s = await r.json();
    document.getElementById("top").textContent =
      (s.detector || "") + "  up " + fmt(s.uptime_s, 0) + " s  (stats every second)";
    for (const src of s.sources) {
      const el = document.getElementById("nums" + src.index);
      el.className = "nums state-" + src.state;
      let t = "state " + src.state + (src.note ? " [" + src.note + "]" : "") + (src.error ? " (" + src.error + ")" : "") +
        "\\nframes " + src.frames + "  fps " + fmt(src.fps, 1) + "  latency " + fmt(src.latency_ms, 0) + " ms" +
        "\\ngated " + fmt(100 * (src.gated_share || 0), 0) + "%  detected " + (src.detected ?? "-") +
        "  tracks " + (src.tracks ?? "-");
      if (src.line) t += "\\nline in " + src.line.in + "  out " + src.line.out;
      el.textContent = t;
      el.dataset.frames = src.frames;
    }
  } catch (e) { document.getElementById("top").textContent = "stats unavailable: " + e; }
}
tick(); setInterval(tick, 1000);
</script></body></html>
"""
