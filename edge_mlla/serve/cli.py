"""The scale-out commands of ``edge-mlla``: ``serve``, ``serve-streams`` and ``export-repo`` (parsing and
printing only; the work is in :mod:`edge_mlla.serve`). Registered by :func:`add_commands`.

Each command imports what it runs inside its handler, so that `--help` and every other command start without loading
torch, OpenVINO, NNCF or Ray."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from edge_mlla._env import TOKEN_ENV, env_token
from edge_mlla.cliargs import add_detector_args
from edge_mlla.serve.config import (
    APP_NAME,
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_UPLOADS,
    DEFAULT_PORT,
    DEFAULT_REQUEST_TIMEOUT_S,
)



def _serve_options(a: argparse.Namespace) -> dict[str, Any]:
    """The :class:`~edge_mlla.serve.ServeConfig` fields a command line gives."""
    opts = {k: getattr(a, k) for k in ("replicas", "max_batch", "batch_wait_ms", "batcher", "threads", "backend",
                                       "device", "precision", "conf", "iou", "max_bytes", "body_timeout_s",
                                       "request_timeout_s", "max_uploads")}  # fmt: skip
    return opts


def _cmd_serve(a: argparse.Namespace) -> int:
    from edge_mlla.serve import run

    token = env_token(a.token)
    server = run(a.model, port=a.port, host=a.host, address=a.address, name=a.name, route_prefix=a.route_prefix,
                 blocking=False, handle_sigterm=True, num_cpus=a.num_cpus, ship_model=a.ship_model, token=token,
                 **_serve_options(a))  # fmt: skip
    auth = f' -H "Authorization: Bearer ${TOKEN_ENV}"' if token else ""
    print(f"serving on {server.url} ({server.precision or 'native'} precision). Ctrl+C to stop. Try:\n"
          f"  curl -s{auth} -H 'Content-Type: image/jpeg' --data-binary @image.jpg {server.url}\n"
          f"  curl -s {server.url}health", flush=True)  # fmt: skip
    server.wait()  # until Ctrl+C / SIGTERM, then shuts the app (and the Ray it started) down
    return 0


def _cmd_serve_streams(a: argparse.Namespace) -> int:
    import logging

    from edge_mlla.errors import ConfigError
    from edge_mlla.serve import run, serve_streams

    if not getattr(a, "verbose", False):  # the table says it all; per-source state changes only with -v
        logging.getLogger("edge_mlla").setLevel(logging.WARNING)
    if sum(x is not None for x in (a.url, a.address, a.model)) != 1:
        raise ConfigError("give exactly one of --url (HTTP server), --address (Ray cluster, handle) or --model (start one here)")
    server = None
    url, address = a.url, a.address
    if a.model:
        server = run(a.model, port=a.port, name=a.app, blocking=False, handle_sigterm=True, **_serve_options(a))
        url = server.url if a.http else None
    try:
        report = serve_streams(a.sources, url=url, app=a.app, address=address, duration_s=a.duration,
                               max_frames=a.max_frames, encoding=a.encoding, give_up_s=a.give_up)  # fmt: skip
    finally:
        if server is not None:
            server.shutdown()
    print(report.table())
    if a.json:
        Path(a.json).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        print(f"report: {a.json}")
    if report.failed:
        why = " (gave up: the server stopped answering)" if report.gave_up else ""
        print(f"edge-mlla serve-streams: {report.failed} frame(s) failed{why}", file=sys.stderr)
    return 1 if report.failed else 0


def _cmd_export_repo(a: argparse.Namespace) -> int:
    from edge_mlla.serve.repository import export_repo

    out = export_repo(a.model, format=a.format, output=a.output, name=a.name, max_batch=a.max_batch,
                      instances=a.instances, kind=a.kind, threads=a.threads, overwrite=not a.no_overwrite)  # fmt: skip
    print(f"{a.format} repository entry: {out}")
    for f in sorted(p for p in out.parent.rglob("*") if p.is_file() and (p.is_relative_to(out) or p.name == "config.json")):
        print(f"  {f}")
    return 0


def _replica_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--replicas", type=int, default=1, help="Serve replicas (each its own Detector)")
    p.add_argument("--max-batch", type=int, default=8, help="dynamic batching: most requests per batch")
    p.add_argument("--batch-wait-ms", type=float, default=5.0, help="dynamic batching: longest wait for a batch")
    p.add_argument("--batcher", choices=["serve", "greedy"], default="serve",
                   help="serve: @serve.batch; greedy: a batch is formed when the replica is free (fuller batches under load)")
    p.add_argument("--threads", type=int, default=None, help="runtime threads per replica (default: cores / replicas)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    add_detector_args(p, skip=("max_det", "classes", "imgsz", "threads"))  # threads: per replica, above
    p.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES, help="largest upload in bytes (413 beyond, "
                   "checked while reading)")  # fmt: skip
    p.add_argument("--body-timeout", dest="body_timeout_s", type=float, default=DEFAULT_BODY_TIMEOUT_S, metavar="S",
                   help="seconds a client may take to send a request body (408 beyond)")
    p.add_argument("--request-timeout", dest="request_timeout_s", type=float, default=DEFAULT_REQUEST_TIMEOUT_S, metavar="S",
                   help="seconds a request may take end to end once its body is in (Serve's request_timeout_s)")
    p.add_argument("--max-uploads", type=int, default=DEFAULT_MAX_UPLOADS,
                   help="request bodies read at once; then a new upload evicts a stalled one (or gets 503 when all make "
                        "progress); /health keeps answering")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``serve``, ``serve-streams`` and ``export-repo`` to the ``edge-mlla`` sub-commands."""
    p = sub.add_parser("serve", help="serve a model over HTTP with Ray Serve (replicas, dynamic batching)")
    p.add_argument("model", help=".xml, .onnx or .pt")
    _replica_args(p)
    p.add_argument("--host", default="127.0.0.1", help="listen address (default loopback only; 0.0.0.0: reachable "
                   "from other machines, with a warning; use --token)")  # fmt: skip
    p.add_argument("--token", default=None, help=f"bearer token required on every route but /health (or set {TOKEN_ENV})")
    p.add_argument("--num-cpus", type=float, default=None, help="CPUs Ray reserves per replica (default: --threads)")
    p.add_argument("--address", default=None, help="join a running Ray cluster (HEAD:6379 or 'auto') instead of starting one")
    p.add_argument("--name", default=APP_NAME, help="Serve application name")
    p.add_argument("--route-prefix", default="/")
    p.add_argument("--ship-model", action="store_true", help="send the model file to the replicas (no shared storage)")
    p.set_defaults(fn=_cmd_serve)

    p = sub.add_parser("serve-streams", help="send K video sources (files, folders, cameras, URLs) to a served model; FPS per source")
    p.add_argument("sources", nargs="+", help="video files, image folders, camera indexes (0, 1) or stream URLs (rtsp://...)")
    p.add_argument("--url", default=None, help="HTTP endpoint of a running `edge-mlla serve` (http://HOST:8000/)")
    p.add_argument("--address", default=None, help="Ray cluster address: reach the app through its handle")
    p.add_argument("--model", default=None, help="start a local server for this model first, stop it at the end")
    p.add_argument("--http", action="store_true", help="with --model: send over HTTP instead of the handle")
    p.add_argument("--app", default=APP_NAME, help="Serve application name")
    _replica_args(p)
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--max-frames", type=int, default=None, help="stop each source after this many frames")
    p.add_argument("--encoding", choices=["jpeg", "png"], default="jpeg", help="HTTP frame encoding")
    p.add_argument("--give-up", type=float, default=30.0, help="stop when the server has not answered for this many "
                   "seconds (exit 1; frames that failed also make the exit status 1)")  # fmt: skip
    p.add_argument("--json", default=None, help="write the report as JSON here")
    p.set_defaults(fn=_cmd_serve_streams)

    p = sub.add_parser("export-repo", help="model repository for Triton or OpenVINO Model Server")
    p.add_argument("model", help="exported .onnx or OpenVINO .xml")
    p.add_argument("--format", choices=["triton", "ovms"], default="triton")
    p.add_argument("-o", "--output", default="model_repository", help="repository root (other models are kept)")
    p.add_argument("--name", default=None, help="model name in the server (default: file stem)")
    p.add_argument("--max-batch", type=int, default=8, help="Triton max_batch_size for dynamic-batch models")
    p.add_argument("--instances", type=int, default=1, help="Triton instance_group count / OVMS streams")
    p.add_argument("--kind", choices=["cpu", "gpu"], default="cpu", help="Triton instance kind")
    p.add_argument("--threads", type=int, default=None, help="runtime threads per instance")
    p.add_argument("--no-overwrite", action="store_true", help="fail if the model is already in the repository")
    p.set_defaults(fn=_cmd_export_repo)


__all__ = ["add_commands"]
