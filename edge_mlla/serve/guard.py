"""The guard :func:`~edge_mlla.serve.run` puts in front of Ray Serve's HTTP proxy (an ASGI middleware).

Serve's proxy hands a request to a replica as soon as its headers arrive and streams the body after it, so a
client that sends headers and then stalls holds one of the replica's few request slots, and a chunked upload
is buffered whole before anyone can refuse it (issue 18: 33 stalled uploads took a 2-replica server down; a 60
MB chunked body grew a replica by 109 MB). The guard reads every request body in the proxy first:

* within ``body_timeout_s`` (408 beyond) and ``max_bytes`` (413 as soon as the running total passes it, chunked
  uploads too: at most ``max_bytes`` plus one network read is held); a declared Content-Length over the limit
  is refused before reading;
* at most ``max_uploads`` bodies at once: a new upload evicts the slowest (a client that stalled or trickles: under
  16 KiB/s after 0.25 s), or gets 503 with ``Retry-After`` when every upload is making progress; a stalled upload
  costs an idle coroutine in the proxy, not a replica slot, so ``/health`` and good requests keep answering however
  many clients stall;
* a bearer token, when set, on every route but ``/health``;
* every error the client sees is JSON: Serve's own plain-text answers (a 408 request timeout, a 503) are
  rewritten, and a request whose replica died before answering gets a 503 ``replica_unavailable`` instead of
  Serve's plain 500.

Serve loads proxy middlewares from the import path in ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH``
(https://github.com/ray-project/ray/pull/35619), read by the proxy process when it starts; its limits come from
``EDGE_MLLA_SERVE_GUARD`` (JSON). :func:`~edge_mlla.serve.run` sets both for the Ray it starts. Responses that
passed the guard carry the header ``x-edge-mlla-guard: 1``.

Example:
    >>> limits = GuardLimits(max_bytes=1024, body_timeout_s=5.0, max_uploads=8)
    >>> GuardLimits.from_env({"EDGE_MLLA_SERVE_GUARD": limits.to_env()}) == limits
    True

Imports inside functions: Starlette (shipped with Ray Serve) loads only when the guard is installed, so that
importing :mod:`edge_mlla.serve` loads no web stack.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from edge_mlla.serve.codec import HEALTH_ROUTES, HTTPError, check_token, json_bytes, read_body
from edge_mlla.serve.config import DEFAULT_BODY_TIMEOUT_S, DEFAULT_MAX_BYTES, DEFAULT_MAX_UPLOADS, ServeConfig

LOGGER = logging.getLogger("edge_mlla.serve")
CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
LIMITS_ENV = "EDGE_MLLA_SERVE_GUARD"
CALLBACK = "edge_mlla.serve.guard.proxy_middlewares"
MARK = (b"x-edge-mlla-guard", b"1")
_BODY_METHODS = ("POST", "PUT", "PATCH")
_KINDS = {400: "bad_request", 404: "not_found", 408: "request_timeout", 413: "body_too_large", 429: "too_many_requests",
          500: "internal_error", 502: "bad_gateway", 503: "unavailable", 504: "gateway_timeout"}  # fmt: skip
Scope = dict[str, Any]
Message = dict[str, Any]
Send = Callable[[Message], Awaitable[None]]


@dataclass(frozen=True)
class GuardLimits:
    """The limits the proxy guard enforces (the Serve instance's: one proxy serves every app on it)."""

    max_bytes: int = DEFAULT_MAX_BYTES
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    max_uploads: int = DEFAULT_MAX_UPLOADS
    token: str | None = field(default=None, repr=False)

    @classmethod
    def of(cls, cfg: ServeConfig) -> GuardLimits:
        return cls(cfg.max_bytes, cfg.body_timeout_s, cfg.max_uploads, cfg.token)

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> GuardLimits:
        raw = (os.environ if environ is None else environ).get(LIMITS_ENV)
        return cls(**json.loads(raw)) if raw else cls()


def proxy_middlewares() -> list[Any]:
    """What Serve's HTTP proxy calls (through ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH``) for its middlewares."""
    from starlette.middleware import Middleware

    limits = GuardLimits.from_env()
    LOGGER.info("edge_mlla guard in the HTTP proxy: %s", limits)
    return [Middleware(BodyGuard, limits=limits)]


class _Upload:
    """One body being read: when it started, how many bytes came, and the event that evicts it."""

    def __init__(self, now: float) -> None:
        self.start, self.received = now, 0
        self.evicted = asyncio.Event()

    def rate(self, now: float) -> float:
        return self.received / max(now - self.start, 1e-9)


class BodyGuard:
    """ASGI middleware: read and check each request body before the app (Serve's proxy) sees the request, and
    answer JSON for every failure. One instance per proxy process, used from its event loop only.

    With ``max_uploads`` bodies being read, a new upload evicts the slowest one older than ``grace_s`` whose
    average rate is under ``min_rate`` bytes/s (408 ``upload_evicted``); if there is none (every upload is young or
    making progress), the new one gets 503. So clients that stall or trickle cannot hold the uploads back, however
    many they are. ``clock`` is injected for tests."""

    def __init__(self, app: Callable[..., Awaitable[None]], limits: GuardLimits, grace_s: float = 0.25,
                 min_rate: float = 16384.0, clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.app, self.limits, self.grace_s, self.min_rate, self.clock = app, limits, grace_s, min_rate, clock
        self.reading: dict[int, _Upload] = {}  # bodies being read now

    @property
    def uploads(self) -> int:
        return len(self.reading)

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]], send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        try:
            if not str(scope.get("path", "")).rstrip("/").endswith(HEALTH_ROUTES):
                check_token(headers, self.limits.token)
            if scope.get("method") in _BODY_METHODS:
                receive = _replay(await self._read(receive, headers), receive)
        except HTTPError as e:
            await send_error(send, e.status, e.kind, e.message, e.headers, close=True)
            return
        out = _JSONErrors(send)
        try:
            await self.app(scope, receive, out)
        except Exception as e:  # the proxy failed: say so in JSON if nothing was sent yet
            LOGGER.warning("request failed in the proxy: %s: %s", type(e).__name__, e)
        await out.finish()

    def _make_room(self) -> None:
        if len(self.reading) < self.limits.max_uploads:
            return
        now = self.clock()
        old = [u for u in self.reading.values() if now - u.start >= self.grace_s]
        slowest = min(old, key=lambda u: u.rate(now)) if old else None
        if slowest is None or slowest.rate(now) >= self.min_rate:
            raise HTTPError(503, "too_many_uploads", f"{len(self.reading)} uploads are being received (max_uploads); "
                                                     "retry shortly", {"Retry-After": "1"})  # fmt: skip
        slowest.evicted.set()
        del self.reading[id(slowest)]

    async def _read(self, receive: Callable[[], Awaitable[Message]], headers: Mapping[str, str]) -> bytes:
        self._make_room()
        upload = _Upload(self.clock())
        self.reading[id(upload)] = upload

        async def tracked() -> Message:
            get = asyncio.ensure_future(receive())
            evicted = asyncio.ensure_future(upload.evicted.wait())
            try:
                await asyncio.wait({get, evicted}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                evicted.cancel()
                if not get.done():
                    get.cancel()
            if not get.done() or get.cancelled():
                raise HTTPError(408, "upload_evicted", f"this upload sent {upload.received} bytes in "
                                                       f"{self.clock() - upload.start:.1f} s, the slowest while others "
                                                       "waited (max_uploads); send the body at once")  # fmt: skip
            message = get.result()
            upload.received += len(message.get("body", b""))
            return message

        try:
            return await read_body(tracked, headers, self.limits.max_bytes, self.limits.body_timeout_s)
        finally:
            self.reading.pop(id(upload), None)


def _replay(body: bytes, receive: Callable[[], Awaitable[Message]]) -> Callable[[], Awaitable[Message]]:
    """An ASGI ``receive`` that gives the body read by the guard once, then waits on the client (disconnect)."""
    pending = [body]

    async def replay() -> Message:
        if pending:
            return {"type": "http.request", "body": pending.pop(), "more_body": False}
        return await receive()

    return replay


async def send_error(send: Send, status: int, kind: str, message: str, headers: Mapping[str, str] | None = None,
                     close: bool = False) -> None:  # fmt: skip
    """Send a complete JSON error response; ``close`` ends the connection after it (a body left unread)."""
    body = json_bytes({"error": {"status": status, "type": kind, "message": message}})
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), MARK]
    raw += [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in (headers or {}).items()]
    if close:
        raw.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class _JSONErrors:
    """Wraps ``send``: marks every response, turns a non-JSON error answer into the JSON form, and
    :meth:`finish` answers 503 JSON when the app returned without answering (Serve's replica-lost 500)."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False
        self.held: Message | None = None  # a non-JSON error's start message, until its body is in
        self.text = b""

    async def __call__(self, message: Message) -> None:
        kind = message.get("type")
        if kind == "http.response.start":
            self.started = True
            headers = list(message.get("headers", []))
            ctype = next((v for k, v in headers if k.lower() == b"content-type"), b"")
            if int(message.get("status", 200)) >= 400 and not ctype.startswith(b"application/json"):
                self.held = message
                return
            message = {**message, "headers": headers + [MARK]}
        elif kind == "http.response.body" and self.held is not None:
            self.text += message.get("body", b"")[:2000]
            if message.get("more_body", False):
                return
            status = int(self.held["status"])
            text = self.text.decode("utf-8", "replace").strip() or f"HTTP {status}"
            extra = {k.decode("latin-1"): v.decode("latin-1") for k, v in self.held.get("headers", [])
                     if k.lower() == b"retry-after"}  # fmt: skip
            self.held = None
            await send_error(self.send, status, _KINDS.get(status, f"http_{status}"), text, extra)
            return
        await self.send(message)

    async def finish(self) -> None:
        if self.held is not None:  # an error whose body never completed
            self.text += b" (answer cut short)"
            await self({"type": "http.response.body", "body": b"", "more_body": False})
        elif not self.started:
            await send_error(self.send, 503, "replica_unavailable", "the server lost this request before answering "
                             "(its replica stopped or restarted); it is safe to retry", {"Retry-After": "1"})  # fmt: skip


__all__ = ["CALLBACK", "CALLBACK_ENV", "LIMITS_ENV", "BodyGuard", "GuardLimits", "proxy_middlewares", "send_error"]
