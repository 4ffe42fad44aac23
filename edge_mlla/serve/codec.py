"""The HTTP codec: what a request may be and what an answer looks like, shared by the replicas and the
HTTP proxy guard (:mod:`edge_mlla.serve.guard`). Light: numpy and OpenCV, no Ray.

* images: :func:`image_header` reads a PNG/JPEG size from its header, :func:`decode_image` checks it
  against ``max_pixels`` before decoding;
* detections as JSON: :func:`detections_to_json` / :func:`detections_from_json`;
* errors: :class:`HTTPError` and :func:`error_body` (``{"error": {"status", "type", "message"}}``);
* request checks: :func:`check_token` (bearer token) and :func:`read_body`, which reads an ASGI body with a
  deadline and stops at ``max_bytes`` (chunked uploads included) instead of reading it whole first.

Example:
    >>> error_body(413, "body_too_large", "too big")
    {'error': {'status': 413, 'type': 'body_too_large', 'message': 'too big'}}
"""

from __future__ import annotations

import asyncio
import hmac
import json
import struct
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import cv2
import numpy as np

from edge_mlla.errors import ImageReadError, ShapeError
from edge_mlla.results import Detections
from edge_mlla.serve.config import DEFAULT_MAX_PIXELS

CONTENT_TYPES = ("image/jpeg", "image/jpg", "image/png", "application/octet-stream")
PREDICT_ROUTES = ("/", "/predict", "/detect")
HEALTH_ROUTES = ("/health", "/healthz")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
Receive = Callable[[], Awaitable[dict[str, Any]]]


# ============================================================================== images
def image_header(data: bytes) -> tuple[str, int, int]:
    """``(format, width, height)`` of a PNG or JPEG from its header, without decoding the pixels.

    Raises :class:`ImageReadError` for anything that is not a PNG or a JPEG with a frame header.

    Example:
        >>> import cv2, numpy as np
        >>> ok, buf = cv2.imencode(".png", np.zeros((48, 64, 3), np.uint8))
        >>> image_header(buf.tobytes())
        ('png', 64, 48)
        >>> image_header(b"GIF89a....")
        Traceback (most recent call last):
        ...
        edge_mlla.errors.ImageReadError: not a JPEG or PNG image (starts with b'GIF89a..'); send a JPEG (FF D8 FF) or PNG (89 50 4E 47) file
    """
    if data[:8] == _PNG_MAGIC:
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise ImageReadError("truncated PNG: no IHDR header in the first 24 bytes")
        w, h = struct.unpack(">II", data[16:24])
        return "png", int(w), int(h)
    if data[:3] == b"\xff\xd8\xff":
        return _jpeg_header(data)
    raise ImageReadError(
        f"not a JPEG or PNG image (starts with {bytes(data[:8])!r}); send a JPEG (FF D8 FF) or PNG (89 50 4E 47) file"
    )


def _jpeg_header(data: bytes) -> tuple[str, int, int]:
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise ImageReadError(f"corrupt JPEG: expected a marker at byte {i}")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            break
        seglen = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in _JPEG_SOF and i + 9 <= n:
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return "jpeg", int(w), int(h)
        i += 2 + seglen
    raise ImageReadError("corrupt or truncated JPEG: no frame header (SOF) found")


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Check the header (format, ``max_pixels``), then decode a JPEG/PNG to BGR uint8.

    Example:
        >>> import cv2, numpy as np
        >>> ok, buf = cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))
        >>> decode_image(buf.tobytes()).shape
        (48, 64, 3)
        >>> decode_image(buf.tobytes(), max_pixels=1000)
        Traceback (most recent call last):
        ...
        edge_mlla.errors.ShapeError: image is 64x48 (3072 pixels); this server accepts at most 1000 pixels (max_pixels)
    """
    if not data:
        raise ImageReadError("empty image: the body has 0 bytes; send a JPEG or PNG file")
    fmt, w, h = image_header(data)
    if w <= 0 or h <= 0:
        raise ImageReadError(f"{fmt} header says {w}x{h}; expected positive width and height")
    if w * h > max_pixels:
        raise ShapeError(f"image is {w}x{h} ({w * h} pixels); this server accepts at most {max_pixels} pixels (max_pixels)")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ImageReadError(f"{fmt} image ({w}x{h}) could not be decoded: corrupt or truncated data")
    return img


# ============================================================================== JSON form
def detections_to_json(d: Detections) -> dict[str, Any]:
    """Column form of one image's detections: ``boxes`` (xyxy, original pixels), ``scores``,
    ``class_ids``, ``class_names``.

    Example:
        >>> d = Detections(np.array([[1, 2, 3, 4]], np.float32), np.array([0.5], np.float32), np.array([1]), names={1: "WBC"})
        >>> detections_to_json(d)
        {'boxes': [[1.0, 2.0, 3.0, 4.0]], 'scores': [0.5], 'class_ids': [1], 'class_names': ['WBC']}
    """
    return {
        "boxes": d.xyxy.astype(float).tolist(),
        "scores": d.confidence.astype(float).tolist(),
        "class_ids": d.class_id.astype(int).tolist(),
        "class_names": [str(n) for n in d.class_name],
    }


def detections_from_json(payload: dict[str, Any], names: dict[int, str] | None = None) -> Detections:
    """Rebuild :class:`Detections` from a server answer (``names`` from ``class_names`` when not given).

    Example:
        >>> d = detections_from_json({"boxes": [[1, 2, 3, 4]], "scores": [0.5], "class_ids": [1], "class_names": ["WBC"]})
        >>> d.class_name.tolist(), d.xyxy.dtype.name
        (['WBC'], 'float32')
    """
    ids = [int(c) for c in payload.get("class_ids", [])]
    if names is None:
        names = {c: str(n) for c, n in zip(ids, payload.get("class_names", []))}
    boxes = np.asarray(payload.get("boxes", []), np.float32).reshape(-1, 4)
    return Detections(boxes, np.asarray(payload.get("scores", []), np.float32), np.asarray(ids, np.int64), names=names)


# ============================================================================== errors
class HTTPError(Exception):
    """An answer other than 200: ``status``, a machine-readable ``kind`` and a message for people.

    Example:
        >>> HTTPError(415, "unsupported_media_type", "send image/jpeg").body()["error"]["status"]
        415
    """

    def __init__(self, status: int, kind: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = int(status), kind, message
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.kind, self.message)


def error_body(status: int, kind: str, message: str) -> dict[str, Any]:
    """The JSON every failure answers with."""
    return {"error": {"status": int(status), "type": kind, "message": message}}


def json_bytes(payload: Any) -> bytes:
    """Compact UTF-8 JSON, as the responses send it."""
    return json.dumps(payload, separators=(",", ":")).encode()


# ============================================================================== request checks
def route(path: str, root_path: str = "") -> str:
    """The route of a request path under an app's ``root_path``: ``"/"``, ``"/health"``, ...

    Example:
        >>> route("/ort/predict/", "/ort"), route("/", "")
        ('/predict', '/')
    """
    if root_path and path.startswith(root_path):
        path = path[len(root_path) :]
    return "/" + path.strip("/")


def check_token(headers: Mapping[str, str], token: str | None) -> None:
    """Raise 401 unless ``Authorization: Bearer <token>`` matches (nothing to check when ``token`` is None).

    Example:
        >>> check_token({"authorization": "Bearer s3cret-token"}, "s3cret-token")
        >>> check_token({}, "s3cret-token")
        Traceback (most recent call last):
        ...
        edge_mlla.serve.codec.HTTPError: this server needs a token: send the header 'Authorization: Bearer <token>'
    """
    if token is None:
        return
    got = headers.get("authorization") or ""
    scheme, _, value = got.partition(" ")
    if not got:
        raise HTTPError(401, "unauthorized", "this server needs a token: send the header 'Authorization: Bearer <token>'",
                        {"WWW-Authenticate": "Bearer"})  # fmt: skip
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
        raise HTTPError(401, "unauthorized", "wrong token in the Authorization header", {"WWW-Authenticate": "Bearer"})


def check_content_type(headers: Mapping[str, str]) -> str:
    """The request's image Content-Type, or 415."""
    ctype = (headers.get("content-type") or "").split(";")[0].strip().lower()
    if not ctype:
        raise HTTPError(415, "unsupported_media_type", "Content-Type is missing; send image/jpeg or image/png")
    if ctype not in CONTENT_TYPES:
        raise HTTPError(415, "unsupported_media_type",
                        f"Content-Type {ctype!r} is not accepted; send image/jpeg, image/png or application/octet-stream")  # fmt: skip
    return ctype


def too_large(size: int, limit: int, declared: bool = False) -> HTTPError:
    what = f"body is {size} bytes" if declared else f"body is over {limit} bytes (stopped reading at {size})"
    return HTTPError(413, "body_too_large", f"{what}; this server accepts at most {limit} (max_bytes)")


async def read_body(receive: Receive, headers: Mapping[str, str], max_bytes: int, timeout_s: float,
                    clock: Callable[[], float] = time.monotonic) -> bytes:  # fmt: skip
    """Read an ASGI request body within ``timeout_s`` seconds and ``max_bytes`` bytes.

    A declared ``Content-Length`` over the limit is refused before reading; otherwise reading stops as soon as
    the running total passes ``max_bytes`` (413: chunked uploads too), the deadline passes (408) or the client
    goes away (400). At most ``max_bytes`` plus one received chunk is ever held.

    Example:
        >>> async def receive(): return {"type": "http.request", "body": b"abc", "more_body": False}
        >>> asyncio.run(read_body(receive, {}, max_bytes=10, timeout_s=1.0))
        b'abc'
        >>> asyncio.run(read_body(receive, {}, max_bytes=2, timeout_s=1.0))
        Traceback (most recent call last):
        ...
        edge_mlla.serve.codec.HTTPError: body is over 2 bytes (stopped reading at 3); this server accepts at most 2 (max_bytes)
    """
    length = headers.get("content-length")
    if length is not None and length.strip().isdigit() and int(length) > max_bytes:
        raise too_large(int(length), max_bytes, declared=True)
    deadline = clock() + timeout_s
    chunks: list[bytes] = []
    total = 0
    while True:
        remaining = deadline - clock()
        try:
            if remaining <= 0:
                raise asyncio.TimeoutError
            message = await asyncio.wait_for(receive(), remaining)
            if clock() > deadline:  # arrived, but after the deadline
                raise asyncio.TimeoutError
        except asyncio.TimeoutError:
            raise HTTPError(408, "body_timeout", f"the request body did not arrive within {timeout_s:g} s "
                                                 f"({total} bytes read); send the whole body at once (body_timeout_s)") from None  # fmt: skip
        if message.get("type") == "http.disconnect":
            raise HTTPError(400, "client_disconnected", f"the client went away after {total} bytes of the body")
        chunk = message.get("body", b"")
        if chunk:
            total += len(chunk)
            if total > max_bytes:
                raise too_large(total, max_bytes)
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
