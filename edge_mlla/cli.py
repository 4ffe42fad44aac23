"""``edge-mlla`` command line: argument parsing, progress and printing only; the work is in the library."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from edge_mlla import __version__
from edge_mlla.errors import EdgeMLLAError


def _imgsz(text: str) -> int | tuple[int, int]:
    parts = text.replace("x", ",").split(",")
    try:
        vals = [int(p) for p in parts if p]
    except ValueError:
        raise argparse.ArgumentTypeError(f"imgsz must be N or H,W (ints), got {text!r}") from None
    if len(vals) == 1:
        return vals[0]
    if len(vals) == 2:
        return (vals[0], vals[1])
    raise argparse.ArgumentTypeError(f"imgsz must be N or H,W, got {text!r}")


def _cmd_train(a: argparse.Namespace) -> int:
    from edge_mlla.train import train

    best = train(a.model, data=a.data, imgsz=a.imgsz, epochs=a.epochs, batch=a.batch, device=a.device,
                 project=a.project, name=a.name)
    print(f"best weights: {best}")
    return 0


def _cmd_export(a: argparse.Namespace) -> int:
    from edge_mlla.export import export

    out = export(a.checkpoint, format=a.format, imgsz=a.imgsz, batch=a.batch, dynamic=a.dynamic, half=a.half,
                 output=a.output)
    print(f"exported: {out}")
    return 0


def _cmd_quantize(a: argparse.Namespace) -> int:
    from edge_mlla.quantize import quantize

    report = quantize(a.model, calib=a.calib, backend=a.backend, subset_size=a.subset_size, preset=a.preset,
                      max_drop=a.max_drop, val=a.val, output=a.output, imgsz=a.imgsz, scope=a.scope,
                      method=a.method, every=a.every, threads=a.threads, val_split=a.val_split)
    print(report.table() if hasattr(report, "table") else report)
    return 0


def _cmd_predict(a: argparse.Namespace) -> int:
    import cv2

    from edge_mlla import Detector

    det = Detector(a.model, backend=a.backend, device=a.device, precision=a.precision, conf=a.conf, iou=a.iou)
    sources = [Path(s) for s in a.source]
    files = [p for s in sources for p in (sorted(s.glob("*.jpg")) + sorted(s.glob("*.png")) if s.is_dir() else [s])]
    if a.save:
        Path(a.save).mkdir(parents=True, exist_ok=True)
    for f in files:
        dets = det(f)
        counts: dict[str, int] = {}
        for name in dets.class_name:
            counts[str(name)] = counts.get(str(name), 0) + 1
        print(f"{f}: {len(dets)} detections " + json.dumps(counts))
        if a.save:
            img = cv2.imread(str(f))
            cv2.imwrite(str(Path(a.save) / f.name), dets.draw(img))
    return 0


def _cmd_eval(a: argparse.Namespace) -> int:
    from edge_mlla.eval import evaluate

    res = evaluate(a.model, data=a.data, split=a.split, backend=a.backend, precision=a.precision, imgsz=a.imgsz)
    print(json.dumps(res if isinstance(res, dict) else res.__dict__, indent=2, default=str))
    return 0


def _cmd_backends(a: argparse.Namespace) -> int:
    from edge_mlla.runtimes import available

    for name, status in available().items():
        print(f"{name:12s} {'available' if status else 'unavailable: ' + status.reason}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="edge-mlla", description="YOLO11-MLLA: train, export, quantize, run.")
    ap.add_argument("--version", action="version", version=f"edge-mlla {__version__}")
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("train", help="train a detector with Ultralytics (offline, bundled data by default)")
    p.add_argument("--model", default="yolo11n-mlla.yaml", help="model yaml (ours or Ultralytics') or checkpoint")
    p.add_argument("--data", default="bccd", help="bundled dataset name or data.yaml path")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--project", default="runs/train")
    p.add_argument("--name", default="exp")
    p.set_defaults(fn=_cmd_train)

    p = sub.add_parser("export", help="re-parameterize and export a checkpoint to ONNX or OpenVINO IR")
    p.add_argument("checkpoint")
    p.add_argument("--format", choices=["onnx", "openvino"], default="onnx")
    p.add_argument("--imgsz", type=_imgsz, default=640, help="N or H,W; each a multiple of the model stride (32)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--dynamic", action="store_true", help="dynamic batch and image size")
    p.add_argument("--half", action="store_true", help="fp16 weights")
    p.add_argument("-o", "--output", default=None, help="output folder")
    p.set_defaults(fn=_cmd_export)

    p = sub.add_parser("quantize", help="INT8 post-training quantization with calibration data")
    p.add_argument("model", help="exported .onnx or .xml")
    p.add_argument("--calib", required=True, help="image folder, video file, or data.yaml (train split)")
    p.add_argument("--backend", choices=["openvino", "onnxruntime"], default="openvino")
    p.add_argument("--subset-size", type=int, default=300)
    p.add_argument("--preset", choices=["mixed", "performance"], default="mixed")
    p.add_argument("--max-drop", type=float, default=None, help="accuracy control: max mAP50-95 drop (needs --val)")
    p.add_argument("--val", default=None, help="data.yaml or bundled name for accuracy report/control")
    p.add_argument("--val-split", default="val", help="split of --val to score")
    p.add_argument("--scope", default=None,
                   help="groups kept in float, comma-separated (e.g. 'head,z'; 'all' or 'none'); default: head,z")
    p.add_argument("--method", choices=["minmax", "entropy", "percentile"], default="minmax",
                   help="ONNX Runtime calibration method")
    p.add_argument("--every", type=int, default=None, help="video calibration: take every k-th frame")
    p.add_argument("--threads", type=int, default=None, help="threads for the latency measurement")
    p.add_argument("--imgsz", type=int, default=None)
    p.add_argument("-o", "--output", default=None)
    p.set_defaults(fn=_cmd_quantize)

    p = sub.add_parser("predict", help="run a model on images through Detector")
    p.add_argument("model")
    p.add_argument("source", nargs="+", help="image files or folders")
    p.add_argument("--backend", default="auto")
    p.add_argument("--device", default=None)
    p.add_argument("--precision", default=None)
    p.add_argument("--conf", type=float, default=0.25)
    p.add_argument("--iou", type=float, default=0.45)
    p.add_argument("--save", default=None, help="folder for annotated images")
    p.set_defaults(fn=_cmd_predict)

    p = sub.add_parser("eval", help="COCO-style mAP of a model file on a YOLO dataset")
    p.add_argument("model")
    p.add_argument("--data", default="bccd")
    p.add_argument("--split", default="val")
    p.add_argument("--backend", default="auto")
    p.add_argument("--precision", default=None)
    p.add_argument("--imgsz", type=int, default=None)
    p.set_defaults(fn=_cmd_eval)

    p = sub.add_parser("backends", help="which runtime backends work on this machine, and why not")
    p.set_defaults(fn=_cmd_backends)
    _add_scale_out_commands(sub)
    return ap


# ---- scale-out commands (serve, serve-streams, export-repo): the work is in edge_mlla.serve / edge_mlla.repo
def _cmd_serve(a: argparse.Namespace) -> int:
    import time

    from edge_mlla.serve import run

    server = run(a.model, replicas=a.replicas, port=a.port, host=a.host, max_batch=a.max_batch,
                 batch_wait_ms=a.batch_wait_ms, threads=a.threads, num_cpus=a.num_cpus, address=a.address,
                 name=a.name, route_prefix=a.route_prefix, backend=a.backend, device=a.device,
                 precision=a.precision, conf=a.conf, iou=a.iou, ship_model=a.ship_model, blocking=False)  # fmt: skip
    print(f"serving {a.model} on {server.url} ({a.replicas} replicas); Ctrl+C to stop")
    print(f"  curl -s -H 'Content-Type: image/jpeg' --data-binary @image.jpg {server.url}")
    print(f"  curl -s {server.url}health")
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        print("shutting down")
    finally:
        server.shutdown()
    return 0


def _cmd_serve_streams(a: argparse.Namespace) -> int:
    from edge_mlla.errors import ConfigError
    from edge_mlla.serve import run, serve_streams

    if sum(x is not None for x in (a.url, a.address, a.model)) != 1:
        raise ConfigError("give exactly one of --url (HTTP server), --address (Ray cluster, handle) or --model (start one here)")
    server = None
    url, address = a.url, a.address
    if a.model:
        server = run(a.model, replicas=a.replicas, port=a.port, max_batch=a.max_batch, batch_wait_ms=a.batch_wait_ms,
                     threads=a.threads, name=a.app, blocking=False)  # fmt: skip
        url = server.url if a.http else None
    try:
        report = serve_streams(a.sources, url=url, app=a.app, address=address, duration_s=a.duration,
                               max_frames=a.max_frames, encoding=a.encoding)  # fmt: skip
    finally:
        if server is not None:
            server.shutdown()
    print(report.table())
    if a.json:
        Path(a.json).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        print(f"report: {a.json}")
    return 0


def _cmd_export_repo(a: argparse.Namespace) -> int:
    from edge_mlla.repo import export_repo

    out = export_repo(a.model, format=a.format, output=a.output, name=a.name, max_batch=a.max_batch,
                      instances=a.instances, kind=a.kind, threads=a.threads, overwrite=not a.no_overwrite)  # fmt: skip
    print(f"{a.format} repository entry: {out}")
    for f in sorted(p for p in out.parent.rglob("*") if p.is_file() and (p.is_relative_to(out) or p.name == "config.json")):
        print(f"  {f}")
    return 0


def _add_scale_out_commands(sub: argparse._SubParsersAction) -> None:
    def detector_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--replicas", type=int, default=1, help="Serve replicas (each its own Detector)")
        p.add_argument("--max-batch", type=int, default=8, help="dynamic batching: most requests per batch")
        p.add_argument("--batch-wait-ms", type=float, default=5.0, help="dynamic batching: longest wait for a batch")
        p.add_argument("--threads", type=int, default=None, help="runtime threads per replica (default: cores / replicas)")
        p.add_argument("--port", type=int, default=8000)

    p = sub.add_parser("serve", help="serve a model over HTTP with Ray Serve (replicas, dynamic batching)")
    p.add_argument("model", help=".xml, .onnx or .pt")
    detector_args(p)
    p.add_argument("--host", default="127.0.0.1", help="listen address (0.0.0.0: reachable from other machines)")
    p.add_argument("--num-cpus", type=float, default=None, help="CPUs Ray reserves per replica (default: --threads)")
    p.add_argument("--address", default=None, help="join a running Ray cluster (HEAD:6379 or 'auto') instead of starting one")
    p.add_argument("--name", default="edge_mlla", help="Serve application name")
    p.add_argument("--route-prefix", default="/")
    p.add_argument("--ship-model", action="store_true", help="send the model file to the replicas (no shared storage)")
    p.add_argument("--backend", default="auto")
    p.add_argument("--device", default=None)
    p.add_argument("--precision", default=None)
    p.add_argument("--conf", type=float, default=0.25)
    p.add_argument("--iou", type=float, default=0.45)
    p.set_defaults(fn=_cmd_serve)

    p = sub.add_parser("serve-streams", help="send K video sources (files, cameras, URLs) to a served model; FPS per source")
    p.add_argument("sources", nargs="+", help="video files, camera indexes (0, 1) or stream URLs (rtsp://...)")
    p.add_argument("--url", default=None, help="HTTP endpoint of a running `edge-mlla serve` (http://HOST:8000/)")
    p.add_argument("--address", default=None, help="Ray cluster address: reach the app through its handle")
    p.add_argument("--model", default=None, help="start a local server for this model first, stop it at the end")
    p.add_argument("--http", action="store_true", help="with --model: send over HTTP instead of the handle")
    p.add_argument("--app", default="edge_mlla", help="Serve application name")
    detector_args(p)
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--max-frames", type=int, default=None, help="stop each source after this many frames")
    p.add_argument("--encoding", choices=["jpeg", "png"], default="jpeg", help="HTTP frame encoding")
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


# ---- end scale-out commands


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        return args.fn(args)
    except EdgeMLLAError as e:
        print(f"edge-mlla {args.cmd}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
