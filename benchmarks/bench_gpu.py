"""The bundled model on an NVIDIA GPU: ONNX Runtime's CUDA provider (f32 and an fp16 export), PyTorch on CUDA
(f32, f16), and ONNX Runtime on the same machine's CPU cores as the baseline, timed side by side in one run.
The CUDA provider runs fixed-shape models as a CUDA graph by default; one cell turns that off for comparison.

Per cell (backend, precision, size): model-only latency (``backend.infer`` on one preprocessed image, host
arrays in and out, so the copies are counted), the whole ``Detector`` call on a BCCD image (letterbox,
inference, decode and NMS on the CPU), batch-8 images/s (a fixed batch-8 export for ONNX; any batch for
torch), and ``StreamRunner`` FPS over every frame of the bundled clip (no drawing). TensorRT cells are run
when TensorRT's libraries load, else reported as skipped with the reason.
Not a test: run it on a GPU machine; it writes ``bench_gpu.md`` and ``bench_gpu.json`` to ``--out``.

    python benchmarks/bench_gpu.py --out runs/bench_gpu      # ~3 min on an H100/H200
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WEIGHTS = ROOT / "edge_mlla" / "weights" / "yolo11n-mlla-bccd.pt"
CLIP = ROOT / "edge_mlla" / "data" / "clips" / "bccd_pan.mp4"


def machine() -> dict:
    """``edge_mlla.bench.describe_machine()`` (CPU, cores, ISA flags, versions) plus the GPU, ONNX Runtime's
    providers, TensorRT and torch's CUDA."""
    from edge_mlla.bench import describe_machine

    info = describe_machine()
    try:
        q = "name,driver_version,memory.total,clocks.max.sm"
        info["gpu"] = subprocess.run(["nvidia-smi", f"--query-gpu={q}", "--format=csv,noheader"], capture_output=True,
                                     text=True, timeout=30).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError) as e:
        info["gpu"] = f"nvidia-smi failed: {e}"
    import onnxruntime as ort
    from edge_mlla.runtimes.cuda import tensorrt_missing

    info["onnxruntime"] = f"{ort.__version__} ({', '.join(ort.get_available_providers())})"
    info["tensorrt"] = tensorrt_missing() or "loads"
    try:
        import torch

        info["torch"] = f"{torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"
    except ImportError:
        info["torch"] = "not installed"
    return info


def timed(fn, runs: int, warmup: int) -> tuple[float, float]:
    from edge_mlla.runtimes.base import call_times_ms

    ms = sorted(call_times_ms(fn, runs, warmup))
    return statistics.median(ms), ms[int(0.9 * (len(ms) - 1))]


def stream_fps(det) -> float:
    from edge_mlla.stream import StreamRunner

    n = 0
    t = time.perf_counter()
    with StreamRunner(det, str(CLIP)) as run:
        for _ in run:
            n += 1
    return n / (time.perf_counter() - t)


def run_cell(label: dict, det, det8, img, imgsz: int, runs: int, warmup: int) -> dict:
    from edge_mlla.ops import preprocess

    x1, _ = preprocess([img], imgsz)
    row = dict(label)
    row["latency_ms"], row["p90_ms"] = timed(lambda: det.backend.infer(x1), runs, warmup)
    row["detector_ms"], _ = timed(lambda: det(img), max(runs // 2, 10), warmup)
    if det8 is not None:
        x8, _ = preprocess([img] * 8, imgsz)
        med, _ = timed(lambda: det8.backend.infer(x8), max(runs // 4, 10), max(warmup // 2, 3))
        row["batch8_img_s"] = 8e3 / med
    row["stream_fps"] = stream_fps(det)
    row["detections"] = len(det(img))
    return row


def markdown(rows: list[dict], info: dict, runs: int, warmup: int) -> str:
    lines = [
        "# The bundled model on a GPU",
        "",
        f"GPU: {info['gpu']}; CPU: {info['cpu']} ({info['cores']['os_cpu_count']} cores; ISA flags: "
        f"{', '.join(f for f, on in info['isa'].items() if on) or 'none of ' + ', '.join(info['isa'])});",
        f"onnxruntime {info['onnxruntime']};",
        f"torch {info['torch']}; TensorRT: {info['tensorrt']}. Median of {runs} calls after {warmup} warm-up.",
        "",
        "| backend | precision | imgsz | model ms (p90) | Detector ms | batch-8 img/s | stream FPS |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['backend']} | {r['precision']} | {r['imgsz']} | {r['error']} | | | |")
            continue
        b8 = f"{r['batch8_img_s']:.0f}" if "batch8_img_s" in r else "-"
        lines.append(f"| {r['backend']} | {r['precision']} | {r['imgsz']} | {r['latency_ms']:.2f} ({r['p90_ms']:.2f}) | "
                     f"{r['detector_ms']:.2f} | {b8} | {r['stream_fps']:.1f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_gpu")
    ap.add_argument("--sizes", type=int, nargs="+", default=[640, 320])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    import cv2
    from edge_mlla.runtimes.cuda import tensorrt_missing

    from edge_mlla import Detector
    from edge_mlla.export import export

    info = machine()
    print(json.dumps(info, indent=1), flush=True)
    img = cv2.imread(str(sorted((ROOT / "edge_mlla" / "data" / "bccd" / "images" / "test").glob("*.jpg"))[0]))
    rows: list[dict] = []
    trt = tensorrt_missing() is None
    for imgsz in args.sizes:
        models = args.out / f"models{imgsz}"
        f32 = export(WEIGHTS, format="onnx", imgsz=imgsz, output=models / "f32")
        f16 = export(WEIGHTS, format="onnx", imgsz=imgsz, output=models / "f16", half=True)
        f32b8 = export(WEIGHTS, format="onnx", imgsz=imgsz, output=models / "f32b8", batch=8)
        f16b8 = export(WEIGHTS, format="onnx", imgsz=imgsz, output=models / "f16b8", batch=8, half=True)
        cells = [
            ("onnxruntime (CPU)", "f32", dict(model=f32, backend="onnxruntime"), f32b8),
            ("cuda (CUDA EP, no graph)", "f32", dict(model=f32, backend="cuda", tensorrt=False, cuda_graph=False), f32b8),
            ("cuda (CUDA EP)", "f32", dict(model=f32, backend="cuda", tensorrt=False), f32b8),
            ("cuda (CUDA EP)", "f16", dict(model=f16, backend="cuda", tensorrt=False), f16b8),
            ("torch (CUDA)", "f32", dict(model=WEIGHTS, backend="torch", device="cuda", precision="f32", imgsz=imgsz), None),
            ("torch (CUDA)", "f16", dict(model=WEIGHTS, backend="torch", device="cuda", precision="f16", imgsz=imgsz), None),
        ]
        if trt:
            cells += [("cuda (TensorRT EP)", p, dict(model=f32, backend="cuda", tensorrt=True, precision=p), None)
                      for p in ("f32", "f16")]  # fmt: skip
        for name, prec, kw, b8 in cells:
            label = {"backend": name, "precision": prec, "imgsz": imgsz}
            print(f"--- {label}", flush=True)
            try:
                det = Detector(**kw)
                det8 = None
                if b8 is not None:
                    det8 = Detector(**{**kw, "model": b8})
                elif kw["backend"] == "torch":
                    det8 = det  # any batch
                rows.append(run_cell(label, det, det8, img, imgsz, args.runs, args.warmup))
                det.close()
                if det8 is not None and det8 is not det:
                    det8.close()
            except Exception as e:  # a cell that cannot run is reported, the others go on
                rows.append({**label, "error": f"{type(e).__name__}: {e}"})
            print(rows[-1], flush=True)
        if not trt:
            rows.append({"backend": "cuda (TensorRT EP)", "precision": "f32/f16/int8", "imgsz": imgsz,
                         "error": f"skipped: {tensorrt_missing()}"})  # fmt: skip

    text = markdown(rows, info, args.runs, args.warmup)
    (args.out / "bench_gpu.md").write_text(text)
    (args.out / "bench_gpu.json").write_text(json.dumps({"machine": info, "rows": rows}, indent=1, default=str))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
