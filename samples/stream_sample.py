"""Detect objects in a camera, video file or RTSP stream and write an annotated .mp4 (mp4v).

    python samples/stream_sample.py --model yolo11n-mlla-bccd.xml --source 0            # webcam
    python samples/stream_sample.py --model model.onnx --source clip.mp4 --out out.mp4  # file, every frame
    python samples/stream_sample.py --model model.xml --source rtsp://cam/stream --seconds 30

Live sources drop stale frames when inference is slower than the camera (the output video then has
fewer frames than were captured, each one annotated with its own detections); files are processed
frame by frame. The writer uses the mp4v codec: H.264 (avc1) needs an OpenCV build with it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2

from edge_mlla import Detector
from edge_mlla.stream import StreamRunner


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help=".xml, .onnx or .pt")
    ap.add_argument("--source", default="0", help="camera index, video file, or rtsp/http URL")
    ap.add_argument("--out", type=Path, default=Path("annotated.mp4"))
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--device", default=None)
    ap.add_argument("--precision", default=None, help="f32 (default), bf16, f16 where the backend offers it")
    ap.add_argument("--conf", type=float, default=0.25)
    ap.add_argument("--realtime", action="store_true", help="replay a file at its frame rate, dropping stale frames")
    ap.add_argument("--seconds", type=float, default=None, help="stop a live stream after this long")
    args = ap.parse_args()

    det = Detector(args.model, backend=args.backend, device=args.device, precision=args.precision, conf=args.conf)
    print(det)
    writer = None
    t_end = None if args.seconds is None else time.monotonic() + args.seconds
    with StreamRunner(det, args.source, realtime=args.realtime) as run:
        for r in run:
            if writer is None:
                h, w = r.frame.shape[:2]
                fps = run.source_fps if not run.drop_stale else max(1.0, min(run.source_fps, run.stats.fps or 10.0))
                writer = cv2.VideoWriter(str(args.out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                if not writer.isOpened():
                    raise SystemExit(f"cannot write {args.out} with the mp4v codec")
            frame = r.detections.draw(r.frame)
            cv2.putText(frame, f"#{r.index} {len(r.detections)} objects {1000 * r.latency:.0f} ms", (8, 24),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 255, 255), 2, cv2.LINE_AA)
            writer.write(frame)
            if t_end is not None and time.monotonic() > t_end:
                run.stop()
    if writer is not None:
        writer.release()
    s = run.stats
    print(f"read {s.read} frames, processed {s.processed}, dropped {s.dropped} stale, {s.fps:.1f} fps -> {args.out}")


if __name__ == "__main__":
    main()
