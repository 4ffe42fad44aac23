"""Many fixed cameras on one small CPU: motion gating + detect-and-track against every-frame detection.

Cameras: N paced readers of one synthetic fixed-camera clip (``edge_mlla.clips.FixedScene``: 640x480, 15 FPS,
idle ~70% of the time, cells crossing, parked cells, a lighting change, sensor noise), written once as mp4v and
decoded by every reader (as a camera's stream is), each starting at another point of the clip, in real time. The
model: the bundled checkpoint exported once to OpenVINO with the SDK (``edge-mlla export``, its training size), and
its INT8 copy (``edge-mlla quantize``); the precision that pays (higher throughput here) is chosen in the run.

Per camera count and mode (``off``: every frame to the detector, live sources keep their newest frame;
``motion``: ``StreamRunner(motion=True)``): recall of the boxes each camera frame shows (its own result, or the last
one before it when the frame was dropped) against every-frame detection of that frame by the same model and
precision (IoU >= 0.5, boxes of the same class), the worst camera's recall, p95 read-to-result latency (all results,
and the detected ones), and the detector's share of frames. Then fairness under overload (16 always-busy cameras),
and the cost of motion analysis per frame on one core (the synthetic clip at 640x480, and a real fixed camera:
OpenCV's sample ``vtest.avi``, given with ``--video``, kept out of the repository).

    python benchmarks/bench_cameras.py --model-f32 m.xml --model-int8 m_int8.xml --video vtest.avi
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from edge_mlla.bench.machine import describe_machine, machine_line

ROOT = Path(__file__).resolve().parents[1]
FPS = 15.0


class PacedFile:
    """A camera made of a video file: frames at ``fps`` in real time from frame ``offset`` on, looping; decoding
    included. ``frame_of(i)`` is the clip frame its i-th frame shows."""

    def __init__(self, path: Path, fps: float, offset: int, n: int, name: str) -> None:
        self.cap = cv2.VideoCapture(str(path))
        self.fps, self.n, self.offset, self.name = fps, n, offset % n, name
        self.cap.set(cv2.CAP_PROP_POS_FRAMES, self.offset)
        self.pos, self.i, self.t0 = self.offset, 0, None

    def frame_of(self, i: int) -> int:
        return (self.offset + i) % self.n

    def read(self):
        if self.t0 is None:
            self.t0 = time.monotonic()
        delay = self.t0 + self.i / self.fps - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if self.pos >= self.n:
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self.pos = 0
        ok, frame = self.cap.read()
        self.pos += 1
        self.i += 1
        return ok, frame

    def get(self, prop):
        return self.fps if prop == cv2.CAP_PROP_FPS else 0.0

    def release(self):
        self.cap.release()


def scene_clip(out: Path, idle: float, seed: int, seconds: float) -> tuple[Path, int]:
    from edge_mlla.clips import FixedScene, SceneOptions

    path = out / f"scene_idle{idle:g}_seed{seed}_{seconds:g}s.mp4"
    scene = FixedScene(SceneOptions(size=(640, 480), fps=FPS, seconds=seconds, idle=idle, burst=(2, 4), seed=seed))
    if not path.is_file():
        scene.write(path)
    return path, len(scene)


def decoded(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    return frames


def reference(det, path: Path) -> list:
    """Every-frame detection of every decoded frame (xyxy, class, stable) by the detector the cameras use; ``stable``
    marks boxes also found (IoU >= 0.5, same class) in at least 2 of the 4 frames around (not detector flicker)."""
    ref = [(d.xyxy.copy(), d.class_id.copy()) for d in (det(f) for f in decoded(path))]
    out = []
    for i, (xy, c) in enumerate(ref):
        seen = np.zeros(len(xy), int)
        for j in (i - 2, i - 1, i + 1, i + 2):
            if 0 <= j < len(ref) and len(xy) and len(ref[j][0]):
                seen += ((iou(xy, ref[j][0]) * (c[:, None] == ref[j][1][None, :])).max(1) >= 0.5)
        out.append((xy, c, seen >= 2))
    return out


def throughput(det, frame: np.ndarray, seconds: float) -> float:
    futs, n, t0 = [], 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        futs.append(det.submit(frame))
        if len(futs) >= 3:
            futs.pop(0).result()
            n += 1
    for f in futs:
        f.result()
        n += 1
    return n / (time.perf_counter() - t0)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(br - tl, 0, None), axis=2)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


def recall_of(ref: tuple, shown: tuple | None, stable: bool = False) -> tuple[int, int]:
    """(matched, total) reference boxes of one frame (only its stable ones with ``stable``): IoU >= 0.5 with a shown
    box of the same class."""
    rxy, rc = ref[0], ref[1]
    if stable:
        rxy, rc = rxy[ref[2]], rc[ref[2]]
    if not len(rxy):
        return 0, 0
    if shown is None or not len(shown[0]):
        return 0, len(rxy)
    m = iou(rxy, shown[0]) * (rc[:, None] == shown[1][None, :])
    return int((m.max(1) >= 0.5).sum()), len(rxy)


def run_cameras(det, clip: Path, n_frames: int, ref: list, cams: int, mode: str, warm: float, window: float) -> dict:
    from edge_mlla.stream import StreamRunner

    readers = [PacedFile(clip, FPS, k * n_frames // cams + 7 * k, n_frames, f"cam{k}") for k in range(cams)]
    run = StreamRunner(det, readers, motion=(mode == "motion"), reconnect=False)
    got: list[dict] = [dict() for _ in range(cams)]
    lat: list[list] = [[] for _ in range(cams)]
    lat_det: list[float] = []
    modes: dict[str, int] = {}
    timer = threading.Timer(warm + window, run.stop)
    timer.start()
    t_on = None
    try:
        for r in run:
            if t_on is None:
                t_on = time.monotonic() + warm
            if r.timestamp < t_on:
                continue
            got[r.source][r.index] = (r.detections.xyxy.copy(), r.detections.class_id.copy())
            lat[r.source].append(r.latency)
            modes[r.mode] = modes.get(r.mode, 0) + 1
            if r.mode in ("detected", "regions"):
                lat_det.append(r.latency)
    finally:
        timer.cancel()
        run.stop()
    per = [camera_recall(got[k], rd, ref) for k, rd in enumerate(readers)]
    all_lat = [x for v in lat for x in v]
    st = run.stats
    det_counts = [p.detected for p in st.sources]
    return {
        "cameras": cams, "mode": mode,
        **{f"recall_{k}_{name}": round(f([p[k] for p in per]), 4) for k in ("shown", "own", "stable")
           for name, f in (("mean", statistics.mean), ("min", min))},
        "own_result_share": round(sum(p["with_result"] for p in per) / max(1, sum(p["frames"] for p in per)), 3),
        "p95_ms": round(1000 * float(np.percentile(all_lat, 95)), 1) if all_lat else None,
        "p95_detected_ms": round(1000 * float(np.percentile(lat_det, 95)), 1) if lat_det else None,
        "detected_share": round(sum(det_counts) / max(1, st.processed), 3),
        "modes": modes, "dropped": st.dropped, "detections_per_camera": det_counts,
        "fps_in": round(sum(p["frames"] for p in per) / window, 1),
    }  # fmt: skip


def camera_recall(got: dict, rd: PacedFile, ref: list) -> dict:
    """One camera's recall over the frames it produced in the window: ``shown`` (a frame without its own result shows
    the last one before it), ``own`` (such a frame misses everything), ``stable`` (shown, stable reference boxes)."""
    if not got:
        return {"shown": 0.0, "own": 0.0, "stable": 0.0, "frames": 0, "with_result": 0}
    first, last = min(got), max(got)
    hits = {"shown": [0, 0], "own": [0, 0], "stable": [0, 0]}
    shown, with_result = None, 0
    for i in range(first, last + 1):
        r = ref[rd.frame_of(i)]
        if i in got:
            shown, with_result = got[i], with_result + 1
        for key, args in (("shown", (shown,)), ("own", (got.get(i),)), ("stable", (shown, True))):
            h, t = recall_of(r, *args)
            hits[key][0] += h
            hits[key][1] += t
    out = {k: (h / t if t else 1.0) for k, (h, t) in hits.items()}
    return {**out, "frames": last - first + 1, "with_result": with_result}


def soak(det, clip: Path, n_frames: int, cams: int, seconds: float) -> dict:
    """``cams`` cameras with motion gating for ``seconds``: RSS, threads and open files after the first fifth, near
    the end (still running) and after stop."""
    from edge_mlla.stream import StreamRunner

    readers = [PacedFile(clip, FPS, k * n_frames // cams, n_frames, f"cam{k}") for k in range(cams)]
    run = StreamRunner(det, readers, motion=True, reconnect=False)
    marks: dict[str, dict] = {}
    timer = threading.Timer(seconds, run.stop)
    timer.start()
    t0 = time.monotonic()
    n = 0
    try:
        for _ in run:
            n += 1
            t = time.monotonic() - t0
            if "early" not in marks and t >= seconds / 5:
                marks["early"] = _usage(t)
            if "end" not in marks and t >= seconds * 0.97:  # still running: what a long run holds
                marks["end"] = _usage(t)
    finally:
        timer.cancel()
        run.stop()
    marks["stopped"] = _usage(time.monotonic() - t0)  # after stop: what it gives back
    e, f = marks["early"], marks["end"]
    return {"cameras": cams, "seconds": seconds, "results": n, **marks,
            "rss_growth": round(f["rss_mb"] / e["rss_mb"] - 1, 4), "thread_growth": f["threads"] - e["threads"],
            "fd_growth": f["fds"] - e["fds"]}  # fmt: skip


def _usage(t: float) -> dict:
    with open("/proc/self/statm") as fh:
        rss = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return {"t_s": round(t, 1), "rss_mb": round(rss, 1), "threads": threading.active_count(), "fds": len(os.listdir("/proc/self/fd"))}


def motion_cost(frames: list[np.ndarray], size: tuple[int, int] | None = None, truth_idle: list[bool] | None = None) -> dict:
    from edge_mlla.stream import MotionDetector

    cv2.setNumThreads(1)
    md = MotionDetector()
    if size is not None:
        frames = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]
    for f in frames[:10]:
        md.update(f)  # warm-up (also of OpenCV's code paths)
    md = MotionDetector()
    times, states = [], []
    for f in frames:
        t0 = time.perf_counter()
        states.append(md.update(f))
        times.append(time.perf_counter() - t0)
    out = {"frames": len(frames), "size": f"{frames[0].shape[1]}x{frames[0].shape[0]}",
           "mean_ms": round(1000 * statistics.mean(times), 3), "p95_ms": round(1000 * float(np.percentile(times, 95)), 3),
           "moving_share": round(sum(s.moving for s in states[5:]) / max(1, len(states) - 5), 3),
           "blobs_per_moving_frame": round(statistics.mean([len(s.boxes) for s in states[5:] if s.moving] or [0]), 2)}  # fmt: skip
    if truth_idle is not None:
        idle = [s for s, t in zip(states[5:], truth_idle[5:]) if t]
        busy = [s for s, t in zip(states[5:], truth_idle[5:]) if not t]
        out["false_trigger_share"] = round(sum(s.moving for s in idle) / max(1, len(idle)), 3)
        out["missed_motion_share"] = round(sum(not s.moving for s in busy) / max(1, len(busy)), 3)
    cv2.setNumThreads(-1)
    return out


def pick_precision(args, frame: np.ndarray) -> tuple:
    from edge_mlla import Detector

    cands = {"native": Detector(args.model_f32)}
    if args.model_int8:
        cands["int8"] = Detector(args.model_int8)
    fps: dict[str, list[float]] = {k: [] for k in cands}
    for _ in range(2):  # interleaved rounds
        for k, d in cands.items():
            d(frame)
            fps[k].append(throughput(d, frame, 3.0))
    best = max(fps, key=lambda k: statistics.mean(fps[k]))
    table = {f"{k} ({cands[k].precision})": [round(v, 1) for v in fps[k]] for k in fps}  # before closing the others
    for k, d in cands.items():
        if k != best:
            d.close()
    return cands[best], {"throughput_fps": table, "chosen": best, "precision": cands[best].precision, "detector": repr(cands[best])}


def markdown(report: dict) -> str:
    m = report["machine"]
    out = [f"# Many cameras on {m['cores']['os_cpu_count']} cores", "",
           f"{m['date']}, {machine_line(m)}, load average at start {m['loadavg']}. Command: `{report['command']}`.", "",
           f"Model: {report['model']['detector']}; precision chosen by throughput here: {report['model']['throughput_fps']}.",
           f"Cameras: 640x480 at {FPS:g} FPS, synthetic fixed scene (idle {report['scene']['idle']:g}, decoded mp4v), "
           f"{report['window_s']:g} s measured after {report['warm_s']:g} s warm-up.", "",
           "Recall: every box of the every-frame reference (a dropped frame shows the last result before it / "
           "counts as missed) and its stable boxes (found in at least 2 of the 4 frames around: not detector flicker); "
           "mean over cameras and worst camera. Served: every frame gets its own result (>= 99%), worst camera's recall "
           "(own) >= 0.95 and p95 latency <= 300 ms.", "",
           "| cameras | mode | recall, shown (mean / worst) | recall, own (mean / worst) | recall, stable (mean / worst) | "
           "p95 latency ms (all / detected) | detector share | frames with own result | dropped | served |",
           "|---:|---|---|---|---|---|---:|---:|---:|---|"]  # fmt: skip
    if not report["cameras"]:  # only other parts ran: no cameras table
        out = out[:5]
    for r in report["cameras"]:
        served = r["own_result_share"] >= 0.99 and r["recall_own_min"] >= 0.95 and (r["p95_ms"] or 1e9) <= 300
        out.append(f"| {r['cameras']} | {r['mode']} | {r['recall_shown_mean']:.3f} / {r['recall_shown_min']:.3f} | "
                   f"{r['recall_own_mean']:.3f} / {r['recall_own_min']:.3f} | {r['recall_stable_mean']:.3f} / "
                   f"{r['recall_stable_min']:.3f} | {r['p95_ms']} / {r['p95_detected_ms']} | {r['detected_share']:.2f} | "
                   f"{r['own_result_share']:.2f} | {r['dropped']} | {'yes' if served else 'no'} |")  # fmt: skip
    if report.get("fairness"):
        f = report["fairness"]
        out += ["", f"Fairness under overload ({f['cameras']} cameras, always busy, motion on): detections per camera "
                f"{f['detections_per_camera']}, lowest / highest = {f['min_over_max']:.2f}."]  # fmt: skip
    if report.get("soak"):
        k = report["soak"]
        out += ["", f"Soak ({k['cameras']} cameras, motion on, {k['seconds']:g} s): RSS "
                f"{k['early']['rss_mb']} MB at {k['early']['t_s']} s -> {k['end']['rss_mb']} MB at the end "
                f"({100 * k['rss_growth']:+.1f}%), threads {k['early']['threads']} -> {k['end']['threads']}, "
                f"open files {k['early']['fds']} -> {k['end']['fds']}; after stop: threads {k['stopped']['threads']}, "
                f"open files {k['stopped']['fds']}, RSS {k['stopped']['rss_mb']} MB."]  # fmt: skip
    if report.get("motion_cost"):
        out += ["", "Motion analysis, one core (cv2.setNumThreads(1)):", "",
                "| clip | size | mean ms | p95 ms | frames flagged moving | false triggers (idle frames) | missed motion |",
                "|---|---|---:|---:|---:|---:|---:|"]  # fmt: skip
        for name, c in report["motion_cost"].items():
            out.append(f"| {name} | {c['size']} | {c['mean_ms']} | {c['p95_ms']} | {c['moving_share']} | "
                       f"{c.get('false_trigger_share', '-')} | {c.get('missed_motion_share', '-')} |")  # fmt: skip
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model-f32", type=Path, required=True, help="OpenVINO IR of the bundled model (runs at the native precision)")
    ap.add_argument("--model-int8", type=Path, default=None, help="its INT8 copy (edge-mlla quantize)")
    ap.add_argument("--video", type=Path, default=None, help="a real fixed-camera video (OpenCV's vtest.avi) for motion cost")
    ap.add_argument("--cams", default="1,2,4,8,12,16", help="camera counts")
    ap.add_argument("--modes", default="off,motion")
    ap.add_argument("--idle", type=float, default=0.7)
    ap.add_argument("--warm", type=float, default=3.0)
    ap.add_argument("--window", type=float, default=20.0)
    ap.add_argument("--parts", default="cameras,fairness,motion", help="what to run: cameras, fairness, motion, soak")
    ap.add_argument("--soak", type=float, default=300.0, help="seconds of the 8-camera soak (part 'soak')")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_cameras")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    args.work.mkdir(parents=True, exist_ok=True)
    parts = set(args.parts.split(","))
    report: dict = {"machine": describe_machine(), "command": "python " + " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                    "warm_s": args.warm, "window_s": args.window, "scene": {"idle": args.idle}, "cameras": []}  # fmt: skip
    print(f"machine: {report['machine']}", flush=True)
    clip, n = scene_clip(args.work, args.idle, 0, 60.0)
    first = decoded(clip)[0]
    det, report["model"] = pick_precision(args, first)
    print(f"model: {report['model']}", flush=True)
    if "cameras" in parts:
        ref = reference(det, clip)
        for cams in (int(c) for c in args.cams.split(",")):
            for mode in args.modes.split(","):
                r = run_cameras(det, clip, n, ref, cams, mode, args.warm, args.window)
                report["cameras"].append(r)
                print(json.dumps(r), flush=True)
    if "fairness" in parts:
        busy, nb = scene_clip(args.work, 0.0, 3, 30.0)
        r = run_cameras(det, busy, nb, reference(det, busy), 16, "motion", args.warm, args.window)
        d = r["detections_per_camera"]
        report["fairness"] = {"cameras": 16, "detections_per_camera": d, "min_over_max": round(min(d) / max(max(d), 1), 3),
                              "recall_own_min": r["recall_own_min"], "p95_ms": r["p95_ms"]}  # fmt: skip
        print(json.dumps(report["fairness"]), flush=True)
    if "soak" in parts:
        report["soak"] = soak(det, clip, n, 8, args.soak)
        print(json.dumps(report["soak"]), flush=True)
    if "motion" in parts:
        from edge_mlla.clips import FixedScene, SceneOptions

        scene = FixedScene(SceneOptions(size=(640, 480), fps=FPS, seconds=30, idle=args.idle, burst=(2, 4), seed=1))
        frames = [scene.frame(i) for i in range(len(scene))]
        report["motion_cost"] = {"synthetic scene": motion_cost(frames, truth_idle=[not scene.active(i) for i in range(len(scene))])}
        if args.video is not None:
            v = decoded(args.video)
            report["motion_cost"][f"{args.video.name} (native)"] = motion_cost(v)
            report["motion_cost"][f"{args.video.name} (resized)"] = motion_cost(v, size=(640, 480))
        print(json.dumps(report["motion_cost"]), flush=True)
    det.close()
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "bench_cameras.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.results / "bench_cameras.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
