"""Detect, track and count objects live in cameras, video files, RTSP/HTTP streams and image folders.

    python samples/camera.py --model yolo11n-mlla-bccd.xml --source 0 --show                  # webcam, in a window
    python samples/camera.py --model model.xml --source edge_mlla/data/clips/bccd_pan.mp4 --save out.mp4
    python samples/camera.py --model model.xml --source rtsp://user:pw@cam/live --track --line 320,0,320,480
    python samples/camera.py --model model.onnx --source 0 --source http://cam2:8080/video.mjpg --save out.mp4
    python samples/camera.py --model model.xml --source edge_mlla/data/bccd/images/test --save folder.mp4
    python samples/camera.py --model model.xml --source rtsp://cam1/live --source rtsp://cam2/live --motion --web 8080

Every frame gets its boxes and labels (``#id`` with --track), an FPS / latency line and, with --line, the
line and its in/out counts (supervision's LineZone; --line implies --track). Without --show the annotated
video is written (--save, default annotated.mp4; with several sources one file each, name_0.mp4, ...; mp4v).
Live sources that fail or stall are reopened with backoff and their state is printed. --motion gates detection on
motion and tracks in between (many cameras on a small CPU); --web serves a live view on http://127.0.0.1:PORT/. Ctrl-C, or SIGTERM
(``docker stop``), stops cleanly: videos are finalized and a summary table of frames and per-stage
milliseconds is printed. Exit status: 0 done or interrupted, 1 a source gave up or failed mid-run, 2 bad
arguments, or a model or source that does not open.
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFMPEG's own connection noise; our messages say it better

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from edge_mlla import Detector, EdgeMLLAError  # noqa: E402
from edge_mlla.errors import OutputNotWritableError  # noqa: E402
from edge_mlla.stream import LineCounter, Reconnect, SourceStatus, StreamResult, StreamRunner  # noqa: E402
from edge_mlla.stream.watch import Watch  # noqa: E402
from edge_mlla.stream.web import LiveView  # noqa: E402

WRITER_FPS_PROBE = 15  # live sources: frames buffered to measure the rate the output video should play at


def gui_problem() -> str | None:
    """Why ``cv2.imshow`` cannot work here (no GUI in this OpenCV build, no display), or None."""
    info = cv2.getBuildInformation()
    gui = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.strip().startswith("GUI:")), "")
    if gui.upper() in ("", "NONE"):
        return (
            "--show needs OpenCV with a GUI, and this one has none (opencv-python-headless, as edge-mlla ships). "
            "Drop --show to write the video with --save, or install the GUI build: "
            "pip uninstall -y opencv-python-headless && pip install opencv-python"
        )
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "--show needs a display, and DISPLAY / WAYLAND_DISPLAY are not set (ssh -X, or drop --show and use --save)"
    return None


class Sink:
    """The annotated video of one source: opened at the first frame; a live source's first frames are buffered to
    measure the rate it is processed at, so the video plays in real time even when stale frames were dropped."""

    def __init__(self, path: Path, fps: float, live: bool) -> None:
        self.path, self.fps, self.live = path, fps, live
        self.writer: cv2.VideoWriter | None = None
        self.size: tuple[int, int] | None = None
        self.buffer: list[tuple[np.ndarray, float]] = []
        self.frames = 0

    def write(self, frame: np.ndarray, t_read: float) -> None:
        if self.writer is not None:
            self._put(frame)
            return
        self.buffer.append((frame, t_read))
        if not self.live or len(self.buffer) >= WRITER_FPS_PROBE:
            self._open()

    def _open(self) -> None:
        fps = self.fps
        if self.live and len(self.buffer) > 1:
            span = self.buffer[-1][1] - self.buffer[0][1]
            if span > 0:
                fps = min(fps, (len(self.buffer) - 1) / span)
        h, w = self.buffer[0][0].shape[:2]
        self.size = (w, h)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), max(1.0, fps), self.size)
        if not self.writer.isOpened():
            raise OutputNotWritableError(f"cannot write {self.path} with the mp4v codec (is the folder writable?)")
        for f, _ in self.buffer:
            self._put(f)
        self.buffer.clear()

    def _put(self, frame: np.ndarray) -> None:
        if (frame.shape[1], frame.shape[0]) != self.size:  # image folders may mix sizes; a video has one
            frame = cv2.resize(frame, self.size)
        self.writer.write(frame)
        self.frames += 1

    def close(self) -> None:
        if self.writer is None and self.buffer:
            self._open()
        if self.writer is not None:
            self.writer.release()


class Interrupts:
    """Ctrl-C and SIGTERM (docker stop) raise KeyboardInterrupt, but never inside :meth:`shielded` (a frame's write
    and its count): there the signal is held and raised when the block ends, so the summary's count of written
    frames is exactly what the video holds."""

    def __init__(self) -> None:
        self.depth = 0
        self.pending = False

    def handler(self, signum: int, frame: Any) -> None:
        if self.depth:
            self.pending = True
        else:
            raise KeyboardInterrupt

    def install(self) -> None:
        signal.signal(signal.SIGINT, self.handler)
        signal.signal(signal.SIGTERM, self.handler)

    def restore(self) -> None:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def __enter__(self) -> Interrupts:
        self.depth += 1
        return self

    def __exit__(self, *exc: Any) -> None:
        self.depth -= 1
        if not self.depth and self.pending and exc[0] is None:
            self.pending = False
            raise KeyboardInterrupt


def put_text(img: np.ndarray, text: str, org: tuple[int, int], color=(255, 255, 255), scale: float = 0.55) -> None:
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)


def annotate(r: StreamResult, fps: float, status: SourceStatus, line: LineCounter | None) -> np.ndarray:
    img = r.detections.draw(r.frame)
    if line is not None:
        line.draw(img)
    t = r.timing.as_ms()
    img[:28] = img[:28] // 3  # a dark banner keeps the text readable on any scene
    text = f"{fps:.1f} FPS  latency {t['latency']:.0f} ms  infer {t['infer']:.0f} ms  {len(r.detections)} objects"
    put_text(img, text, (8, 19), (0, 255, 255))
    if status.state in ("lost", "reconnecting", "connecting", "gave_up"):  # a live source in trouble (files just end)
        put_text(img, str(status).split(": ", 1)[-1][:80], (8, 48), (0, 0, 255))
    return img


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def summary(run: StreamRunner, stages: dict[str, list[float]], lines: list[LineCounter | None], sinks: list[Sink | None]) -> str:
    s = run.stats
    out = ["", "| source | state | read | processed | dropped | reconnects | FPS |", "|---|---|---:|---:|---:|---:|---:|"]
    for st, ps in zip(run.status, s.sources):
        out.append(f"| {st.source}: {st.name} | {st.state} | {ps.read} | {ps.processed} | {ps.dropped} | {ps.reconnects} | {ps.fps:.1f} |")
    out += ["", "| stage (per frame) | mean ms | p50 ms | p95 ms |", "|---|---:|---:|---:|"]
    names = {"latency": "latency (read -> annotated)", "wait": "wait (queued before inference)"}
    for k, v in stages.items():
        if v:
            out.append(f"| {names.get(k, k)} | {1000 * np.mean(v):.1f} | {1000 * percentile(v, 50):.1f} | {1000 * percentile(v, 95):.1f} |")
    out.append("")
    out.append(f"{s.processed} frames processed in {s.elapsed:.1f} s: {s.fps:.1f} FPS over all sources")
    if run.motion is not None:
        out.append(f"motion gating: {s.detected} detected, {s.gated} gated, {s.carried} carried by the tracker")
    for i, line in enumerate(lines):
        if line is not None:
            out.append(f"line on source {i}: in {line.in_count}, out {line.out_count}")
    for i, sink in enumerate(sinks):
        if sink is not None and sink.frames:
            out.append(f"source {i}: {sink.frames} frames written to {sink.path}")
    return "\n".join(out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.split("\n")[2:8]))  # fmt: skip
    ap.add_argument("--model", required=True, help=".xml (OpenVINO), .onnx or .pt")
    ap.add_argument("--source", action="append", required=True,
                    help="camera index, video file, image folder, rtsp:// or http:// URL; repeat for several sources")
    ap.add_argument("--backend", default="auto", help="auto, openvino, onnxruntime, cuda, torch")
    ap.add_argument("--device", default=None, help="backend device (CPU, GPU, NPU, AUTO for OpenVINO; cuda:0)")
    ap.add_argument("--precision", default=None, help="f32, bf16, f16 where the backend offers them (default: the device's native: bf16 on CPUs with BF16, else f32)")
    ap.add_argument("--hint", choices=("latency", "throughput"), default=None, help="OpenVINO performance hint")
    ap.add_argument("--conf", type=float, default=0.25, help="detection confidence threshold")
    ap.add_argument("--show", action="store_true", help="show a window per source (needs a GUI OpenCV and a display)")
    ap.add_argument("--save", type=Path, default=None, help="annotated video (.mp4, mp4v); default annotated.mp4 without --show")
    ap.add_argument("--track", action="store_true", help="ByteTrack ids (supervision: pip install 'edge-mlla[track]')")
    ap.add_argument("--line", default=None, help="count crossings of the line x1,y1,x2,y2 (pixels; implies --track)")
    ap.add_argument("--inflight", type=int, default=None, help="inference calls in flight (default: the backend's requests + 1)")
    ap.add_argument("--realtime", action="store_true", help="replay files at their frame rate, dropping stale frames")
    ap.add_argument("--loop", action="store_true", help="restart files and folders at their end")
    ap.add_argument("--max-frames", type=int, default=None, help="stop each source after this many frames")
    ap.add_argument("--seconds", type=float, default=None, help="stop after this many seconds (frames or not)")
    ap.add_argument("--retries", type=int, default=10, help="reconnect tries before a live source gives up (0: forever)")
    ap.add_argument("--motion", action="store_true", help="detect only where and when something moves, track in between")
    ap.add_argument("--web", type=int, nargs="?", const=8080, default=None, metavar="PORT",
                    help="live view in the browser on http://127.0.0.1:PORT/ (default 8080)")
    ap.add_argument("-v", "--verbose", action="store_true", help="log what edge_mlla does")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    if why := _bad_args(args):
        print(f"error: {why}", file=sys.stderr)
        return 2
    watch = Watch(args.source, [None] * len(args.source))
    try:
        det, run, view = _open(args, watch)
    except (EdgeMLLAError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    _announce(det, run, view, watch)
    sinks = _sinks(args, run, view)
    stages: dict[str, list[float]] = {k: [] for k in ("capture", "wait", "preprocess", "infer", "postprocess", "track",
                                                       "draw", "write", "latency")}  # fmt: skip
    timer = None
    if args.seconds is not None:  # a timer, not a check per frame: a live source may send nothing at all
        timer = threading.Timer(args.seconds, run.stop, kwargs={"timeout": 1.0})
        timer.daemon = True
        timer.start()
    code = 0
    shield = Interrupts()
    shield.install()  # docker stop (SIGTERM) -> the same clean exit as Ctrl-C
    try:
        _process(args, run, watch, view, sinks, shield, stages)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping", file=sys.stderr)
    except (EdgeMLLAError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        code = 1
    finally:
        shield.restore()
        if timer is not None:
            timer.cancel()
        code = _close(args, run, det, view, sinks) or code
    print(summary(run, stages, watch.lines, sinks))
    return 1 if any(st.state == "gave_up" for st in run.status) else code


def _bad_args(args: argparse.Namespace) -> str | None:
    if args.show and (why := gui_problem()):
        return why
    if args.max_frames is not None and args.max_frames < 1 or (args.inflight is not None and args.inflight < 1) or args.retries < 0:
        return "--max-frames and --inflight must be >= 1, --retries >= 0"
    return None


def _open(args: argparse.Namespace, watch: Watch) -> tuple[Detector, StreamRunner, LiveView | None]:
    """The detector, the runner over every source (status lines to stderr), and the live view with --web."""

    def on_status(st: SourceStatus) -> None:
        watch.status(st)
        if st.state not in ("connecting",) or st.attempts:
            print(f"[{time.strftime('%H:%M:%S')}] {st}", file=sys.stderr, flush=True)

    opts: dict[str, Any] = {"hint": args.hint} if args.hint else {}
    det = Detector(args.model, backend=args.backend, device=args.device, precision=args.precision, conf=args.conf, **opts)
    if args.line:
        watch.lines = [LineCounter.parse(args.line) for _ in args.source]
    run = StreamRunner(
        det, args.source, realtime=args.realtime, max_inflight=args.inflight, max_frames=args.max_frames,
        reconnect=Reconnect(max_tries=args.retries or None), on_status=on_status,
        track=args.track or bool(args.line), loop=args.loop, motion=args.motion,
    )  # fmt: skip
    view = LiveView([i.name for i in run.sources], port=args.web).start() if args.web is not None else None
    return det, run, view


def _announce(det: Detector, run: StreamRunner, view: LiveView | None, watch: Watch) -> None:
    print(det)
    if view is not None:
        watch.view = view
        print(f"live view: {view.url}", flush=True)
    for info in run.sources:
        kind = "live" if info.live else "file"
        print(f"source {info.index}: {info.name} ({kind}, {info.fps:.0f} fps{', drops stale frames' if info.drop_stale else ''})")


def _sinks(args: argparse.Namespace, run: StreamRunner, view: LiveView | None) -> list[Sink | None]:
    """One annotated video per source (``--save``; by default annotated.mp4 unless the frames are shown)."""
    save = args.save if args.save is not None or args.show or view is not None else Path("annotated.mp4")
    sinks: list[Sink | None] = [None] * len(args.source)
    if save is not None:
        for info in run.sources:
            path = save if len(args.source) == 1 else save.with_name(f"{save.stem}_{info.index}{save.suffix or '.mp4'}")
            sinks[info.index] = Sink(path, info.fps, info.drop_stale)
    return sinks


def _process(args: argparse.Namespace, run: StreamRunner, watch: Watch, view: LiveView | None,
             sinks: list[Sink | None], shield: Interrupts, stages: dict[str, list[float]]) -> None:  # fmt: skip
    """Every result: count, publish, draw, write or show; stage times into ``stages``; a progress line every 5 s."""
    recent = [collections.deque(maxlen=30) for _ in args.source]
    t_log = time.monotonic() + 5
    for r in run:
        t0 = time.perf_counter()
        i = r.source
        line = watch.lines[i]
        if line is not None:
            line.update(r.detections)
        if view is not None:
            view.publish(r, run.status[i], watch.info(run, r))
        recent[i].append(time.monotonic())
        fps = (len(recent[i]) - 1) / max(recent[i][-1] - recent[i][0], 1e-9) if len(recent[i]) > 1 else 0.0
        img = annotate(r, fps, run.status[i], line)
        t1 = time.perf_counter()
        if sinks[i] is not None:
            with shield:
                sinks[i].write(img, r.timestamp)
        if args.show:
            cv2.imshow(f"camera.py: source {i}", img)
            if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                run.stop()
        t2 = time.perf_counter()
        for k, v in r.timing.as_ms().items():
            if k in stages:
                stages[k].append(v / 1000 if k != "latency" else (v / 1000 + t2 - t0))
        stages["draw"].append(t1 - t0)
        stages["write"].append(t2 - t1)
        if time.monotonic() > t_log:
            s = run.stats
            print(f"{s.processed} frames, {s.fps:.1f} FPS, latency {s.stages_ms.get('latency', 0):.0f} ms",
                  file=sys.stderr, flush=True)  # fmt: skip
            t_log = time.monotonic() + 5


def _close(args: argparse.Namespace, run: StreamRunner, det: Detector, view: LiveView | None,
           sinks: list[Sink | None]) -> int:  # fmt: skip
    """Stop and close everything; 1 when a video could not be finished."""
    code = 0
    run.stop(timeout=1.0)  # a reader stuck in a live source's read() is left behind (a daemon), not waited for
    for sink in sinks:
        if sink is not None:
            try:
                sink.close()
            except OutputNotWritableError as e:
                print(f"error: {e}", file=sys.stderr)
                code = 1
    det.close()
    if view is not None:
        view.stop()
    if args.show:
        cv2.destroyAllWindows()
    return code


if __name__ == "__main__":
    sys.exit(main())
