"""``make demo``: the whole pipeline on bundled defaults, offline, in a few minutes on a laptop CPU.

1. build YOLO11n-MLLA from its yaml and train it briefly on the bundled BCCD (shows training works;
   a couple of epochs from scratch detect little),
2. take the bundled YOLO11n-MLLA trained on BCCD here (edge_mlla/weights) and re-parameterize +
   export it to ONNX and OpenVINO IR,
3. quantize the IR to INT8 with NNCF on BCCD training images,
4. run ``Detector`` over OpenVINO (f32, bf16 where the CPU has it, INT8) and ONNX Runtime on BCCD
   test images: print what it found, the latency, and save annotated images.

Usage: ``python -m edge_mlla.demo [--out runs/demo] [--train-epochs 2] [--imgsz 640]``
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from pathlib import Path

from edge_mlla.data import load_data_yaml

WEIGHTS = Path(__file__).parent / "weights" / "yolo11n-mlla-bccd.pt"


def _step(n: int, text: str) -> None:
    print(f"\n=== [{n}] {text}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="edge_mlla end-to-end demo on bundled data")
    ap.add_argument("--out", default="runs/demo")
    ap.add_argument("--train-epochs", type=int, default=2, help="0 skips the short training run")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--images", type=int, default=8, help="BCCD test images to run")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("nncf").setLevel(logging.WARNING)  # NNCF logs every skipped quantizer at INFO
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = load_data_yaml("bccd")
    test_imgs = sorted(data["test"].glob("*.jpg"))[: args.images]

    if args.train_epochs > 0:
        _step(1, f"train YOLO11n-MLLA from yaml on bundled BCCD ({args.train_epochs} epochs at 320 px)")
        from edge_mlla.train import train

        t0 = time.perf_counter()
        best = train("yolo11n-mlla.yaml", data="bccd", imgsz=320, epochs=args.train_epochs, batch=16,
                     project=out / "train", name="brief", verbose=False)
        print(f"trained in {time.perf_counter() - t0:.0f} s -> {best}")

    _step(2, f"re-parameterize and export the bundled BCCD model ({WEIGHTS.name}) at {args.imgsz} px")
    from edge_mlla.export import export

    onnx_path = export(WEIGHTS, format="onnx", imgsz=args.imgsz, output=out / "onnx")
    xml_path = export(WEIGHTS, format="openvino", imgsz=args.imgsz, output=out / "openvino")
    print(f"ONNX: {onnx_path}\nOpenVINO IR: {xml_path}")

    _step(3, "INT8 quantization with NNCF (calibration: 64 BCCD train images)")
    from edge_mlla.quantize import quantize

    report = quantize(xml_path, calib="bccd", backend="openvino", subset_size=64, output=out / "int8")
    int8_path = Path(report.output)
    print(f"INT8 IR: {int8_path}")

    _step(4, f"Detector on {len(test_imgs)} BCCD test images")
    import cv2

    from edge_mlla import Detector
    from edge_mlla.runtimes import available

    avail = available()
    runs = [("openvino", xml_path, "f32"), ("openvino", xml_path, "bf16"), ("openvino", int8_path, None),
            ("onnxruntime", onnx_path, None)]
    rows = []
    for backend, path, precision in runs:
        if not avail.get(backend):
            print(f"skip {backend}: {avail[backend].reason if backend in avail else 'unknown backend'}")
            continue
        try:
            det = Detector(path, backend=backend, precision=precision)
        except Exception as e:  # bf16 on CPUs without it, etc.: report and go on
            print(f"skip {backend} {precision}: {e}")
            continue
        imgs = [cv2.imread(str(p)) for p in test_imgs]
        for _ in range(3):  # warm-up: the first OpenVINO calls are slower
            det(imgs[0])
        times, counts = [], []
        for p, img in zip(test_imgs, imgs):
            for _ in range(3):  # three timed calls per image: this is a shared, noisy CPU
                t0 = time.perf_counter()
                d = det(img)
                times.append((time.perf_counter() - t0) * 1e3)
            counts.append(len(d))
            if backend == "openvino" and precision == "f32":
                cv2.imwrite(str(out / p.name), d.draw(img))
                per_class: dict[str, int] = {}
                for name in d.class_name:
                    per_class[str(name)] = per_class.get(str(name), 0) + 1
                print(f"{p.name}: {len(d)} cells {per_class}")
        label = f"{backend} {precision or ('int8' if path == int8_path else 'fp32')}"
        rows.append((label, statistics.median(times), sum(counts)))
    print("\n| backend / precision | median ms per image (end to end) | detections on test images |")
    print("|---|---|---|")
    for label, ms, n in rows:
        print(f"| {label} | {ms:.1f} | {n} |")
    print(f"\nannotated images in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
