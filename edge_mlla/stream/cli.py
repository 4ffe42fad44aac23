"""``edge-mlla watch``: the live view of one or many sources in the browser (parsing and printing only; the work is
in :mod:`edge_mlla.stream`). Registered by :func:`add_commands`.

Each command imports what it runs inside its handler, so that `--help` and every other command start without loading
torch, OpenVINO, NNCF or Ray."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from edge_mlla._env import TOKEN_ENV, env_token
from edge_mlla.cliargs import add_detector_args, detector_kwargs


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``watch`` to the ``edge-mlla`` sub-commands."""
    p = sub.add_parser("watch", help="live view in the browser: annotated streams, FPS, latency, gated share, counts")
    p.add_argument("sources", nargs="+", help="camera indexes (0), video files, image folders or stream URLs (rtsp://...)")
    p.add_argument("--model", required=True, help=".xml, .onnx or .pt")
    p.add_argument("--port", type=int, default=8080, help="HTTP port (0: any free port)")
    p.add_argument("--host", default="127.0.0.1", help="listen address (default loopback only; another one prints a "
                   "warning: the page has no TLS; use --token)")  # fmt: skip
    p.add_argument("--token", default=None, help=f"token the page requires (?token=...; or set {TOKEN_ENV})")
    p.add_argument("--no-motion", action="store_true", help="send every frame to the detector (no motion gating)")
    p.add_argument("--regions", action="store_true", help="detect on motion regions of large frames")
    p.add_argument("--min-rate", type=float, default=0.5, help="detections a second per source at least (default 0.5)")
    p.add_argument("--track", action="store_true", help="ByteTrack ids (supervision: pip install 'edge-mlla[track]')")
    p.add_argument("--line", default=None, help="count crossings of the line x1,y1,x2,y2 on every source (implies --track)")
    add_detector_args(p)
    p.add_argument("--loop", action="store_true", help="restart files and folders at their end")
    p.add_argument("--realtime", action="store_true", help="play files at their frame rate (as cameras)")
    p.add_argument("--seconds", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--exit-at-end", action="store_true", help="quit when every source has ended (default: keep the page up)")
    p.set_defaults(fn=_cmd_watch)


def _cmd_watch(a: argparse.Namespace) -> int:
    from edge_mlla import Detector
    from edge_mlla.errors import ConfigError
    from edge_mlla.stream import LineCounter, Motion, Schedule, StreamRunner
    from edge_mlla.stream.watch import Watch, run_names
    from edge_mlla.stream.web import LOOPBACK, LiveView

    if a.seconds is not None and not a.seconds > 0:
        raise ConfigError(f"--seconds must be > 0, got {a.seconds}")
    token = env_token(a.token)
    lines = [LineCounter.parse(a.line) for _ in a.sources] if a.line else None
    watch = Watch(a.sources, lines)
    with Detector(a.model, **detector_kwargs(a)) as det:
        run = StreamRunner(det, a.sources, realtime=a.realtime, loop=a.loop, on_status=watch.status,
                           track=a.track or bool(a.line), motion=False if a.no_motion else Motion(regions=a.regions),
                           schedule=None if a.no_motion else Schedule(min_rate=a.min_rate))  # fmt: skip
        view = LiveView(run_names(run), host=a.host, port=a.port, token=token, title="edge-mlla watch")
        view.extra = {"detector": repr(det), "precision": det.precision, "motion": not a.no_motion}
        view.start()
        if a.host not in LOOPBACK:
            print(f"warning: the live view listens on {a.host}: reachable from the network, without TLS"
                  + ("" if token else f" and without a token (--token or {TOKEN_ENV})"), file=sys.stderr)  # fmt: skip
        print(f"live view: {view.url}  ({len(a.sources)} source(s), {det.precision}; Ctrl+C to stop)", flush=True)
        return _serve(a, run, view, watch)


def _serve(a: argparse.Namespace, run: Any, view: Any, watch: Any) -> int:
    done = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: (run.stop(timeout=1.0), done.set()))
    timer = threading.Timer(a.seconds, lambda: (run.stop(timeout=1.0), done.set())) if a.seconds else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        watch.feed(run, view)
        if not a.exit_at_end and not done.is_set():
            print("every source has ended; the page stays up (Ctrl+C to stop)", flush=True)
            done.wait()
    except KeyboardInterrupt:
        print("\ninterrupted: stopping", file=sys.stderr)
    finally:
        if timer is not None:
            timer.cancel()
        signal.signal(signal.SIGTERM, previous)
        run.stop(timeout=1.0)
        view.stop()
    s = run.stats
    print(f"{s.processed} frames in {s.elapsed:.1f} s: {s.detected} detected, {s.gated} gated, {s.carried} carried")
    for st, ps in zip(run.status, s.sources):
        print(f"  {st.source}: {st.name}: {st.state}, {ps.processed} frames ({ps.detected} detected, {ps.gated} gated)"
              + (f" [{st.note}]" if st.note else ""))  # fmt: skip
    return 1 if any(st.state == "gave_up" for st in run.status) else 0
