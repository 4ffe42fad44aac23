"""Serve a ``Detector`` on Ray Serve: N replicas, dynamic batching, HTTP + Python handle, many cameras, and
model repositories for Triton / OpenVINO Model Server.

``import edge_mlla.serve`` is light (numpy, OpenCV): Ray is imported inside the functions that need
it, and a missing Ray raises :class:`~edge_mlla.errors.MissingDependencyError` with the pip command
(``pip install "edge-mlla[serve]"``). Torch is never imported here (only a ``.pt`` model's own
backend imports it, inside the replica).

The package, one job per module:

* :mod:`~edge_mlla.serve.config`: :class:`ServeConfig`, one options object for :func:`build_app` and
  :func:`run` (model, replicas, batching, threads, precision, HTTP limits, token), and the replica budget.
* :mod:`~edge_mlla.serve.codec`: the HTTP codec (image headers, decoding, JSON detections, JSON errors,
  the deadline- and size-bounded body reader, the token check).
* :mod:`~edge_mlla.serve.guard`: the ASGI guard :func:`run` installs in Serve's HTTP proxy: bodies are read
  there, within ``body_timeout_s`` and ``max_bytes``, before a replica sees the request; errors become JSON.
* :mod:`~edge_mlla.serve.batching`: :class:`GreedyBatcher` (``batcher="greedy"``).
* :mod:`~edge_mlla.serve.deployment`: :class:`DetectorDeployment`, the replica (handle API and HTTP routes).
* :mod:`~edge_mlla.serve.app`: :func:`build_app`. :mod:`~edge_mlla.serve.raystart`: starting Ray on loopback
  only, or joining a cluster. :mod:`~edge_mlla.serve.lifecycle`: :func:`run` and :class:`Server`, stopping cleanly
  at any moment with :mod:`~edge_mlla.serve.processes`. :mod:`~edge_mlla.serve.client`: :class:`HTTPClient` and
  :class:`RemoteDetector`, both retrying what a lost replica failed. :mod:`~edge_mlla.serve.streams`:
  :func:`serve_streams`. :mod:`~edge_mlla.serve.repository`: :func:`export_repo`. :mod:`~edge_mlla.serve.cli`:
  the ``serve``, ``serve-streams`` and ``export-repo`` commands.

HTTP routes: ``POST /`` (or ``/predict``) with a JPEG/PNG body -> JSON detections with the model's backend and
the precision that ran; ``GET /health``; ``GET /info``. Every failure answers JSON
``{"error": {"status", "type", "message"}}``.

Example:
    >>> from edge_mlla.serve import run, RemoteDetector           # doctest: +SKIP
    >>> server = run("best.xml", replicas=2, port=8000, max_batch=4, precision="f32", blocking=False)  # doctest: +SKIP
    >>> import urllib.request                                     # doctest: +SKIP
    >>> req = urllib.request.Request(server.url, data=open("img.jpg", "rb").read(),
    ...                              headers={"Content-Type": "image/jpeg"})       # doctest: +SKIP
    >>> json.load(urllib.request.urlopen(req))["model"]["precision"]    # doctest: +SKIP
    'f32'
    >>> RemoteDetector()(frame).xyxy.shape                       # doctest: +SKIP
    (13, 4)
    >>> server.shutdown()                                          # doctest: +SKIP
"""

from __future__ import annotations

from edge_mlla.serve.app import build_app
from edge_mlla.serve.batching import BATCHERS, GreedyBatcher
from edge_mlla.serve.client import HTTPClient, RemoteDetector, RemoteError, Retry
from edge_mlla.serve.codec import decode_image, detections_from_json, detections_to_json, image_header
from edge_mlla.serve.config import APP_NAME, ServeConfig, replica_budget, replica_target
from edge_mlla.serve.deployment import DetectorDeployment
from edge_mlla.serve.lifecycle import Server, check_port, run, sigterm_as_interrupt
from edge_mlla.serve.repository import export_repo
from edge_mlla.serve.streams import FrameResult, SourceStats, StreamsReport, open_capture, serve_streams

__all__ = [
    "APP_NAME",
    "BATCHERS",
    "DetectorDeployment",
    "FrameResult",
    "GreedyBatcher",
    "HTTPClient",
    "RemoteDetector",
    "RemoteError",
    "Retry",
    "ServeConfig",
    "Server",
    "SourceStats",
    "StreamsReport",
    "build_app",
    "check_port",
    "decode_image",
    "detections_from_json",
    "detections_to_json",
    "export_repo",
    "image_header",
    "open_capture",
    "replica_budget",
    "replica_target",
    "run",
    "serve_streams",
    "sigterm_as_interrupt",
]
