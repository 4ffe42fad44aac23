"""INT8 quantization benchmark (a script, not a test). Two studies:

``--study modes`` (default; writes ``bench_quantize.{json,md,png}``): what ``edge-mlla quantize`` costs and gives
in its two modes next to Ultralytics' own INT8 export of the same checkpoint, in one run: wall time of each (and
of each part), mAP50-95 drop, ``benchmark_app`` throughput of the three INT8 IRs (throughput hint, interleaved
rounds), and a calibration-size sweep (fast mode's drop at 32 / 64 / 128 / all train images).

``--study ablation`` (writes ``bench_quantize_ablation.{json,md,png}``): accuracy drop, latency and the
ignored-scope ablation. For a YOLO11n-MLLA checkpoint (default: the bundled BCCD model) at one input size:

1. export FP32 ONNX and OpenVINO IR (edge_mlla.export);
2. OpenVINO INT8 (NNCF, preset MIXED, full bias correction) for each ignored-scope variant of the ablation
   (head only; head + each MLLA group (head + z is our default); head + kv_matmul + z; head + all), and ONNX
   Runtime QDQ INT8 with the default scope;
3. mAP50-95 / mAP50 of every model on BCCD val through edge_mlla.eval (Detector; OpenVINO at f32);
4. latency (model only, batch 1, median of --runs after warm-up, fixed --threads) for OpenVINO f32 / bf16
   (where the CPU has bf16) / INT8 and ONNX Runtime FP32 / INT8, with a stock YOLO11n (random weights, same
   size, same number of classes) measured in the same run for reference.

Usage:
    .venv/bin/python benchmarks/bench_quantize.py [--study modes] [--imgsz 416] [--out benchmarks/results]
    .venv/bin/python benchmarks/bench_quantize.py --study ablation [--model edge_mlla/weights/yolo11n-mlla-bccd.pt]
        [--imgsz 640] [--threads 2] [--runs 50] [--subset-size 200] [--ablation full|short]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOGGER = logging.getLogger("bench_quantize")

ABLATION_FULL = {
    "head": "head",
    "head+kv_matmul": "head,kv_matmul",
    "head+rope": "head,rope",
    "head+residual": "head,residual",
    "head+z (default)": "head,z",
    "head+kv_matmul+z": "head,kv_matmul,z",
    "head+all MLLA": "head,kv_matmul,z,rope,residual",
}
ABLATION_SHORT = {k: ABLATION_FULL[k] for k in ("head", "head+z (default)", "head+all MLLA")}


def _cpu() -> dict:
    import openvino as ov

    from edge_mlla.quantize.onnxruntime_int8 import cpu_has_vnni

    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), platform.processor())  # fmt: skip
    caps = list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    return {"cpu": model, "vnni": cpu_has_vnni(), "openvino_caps": caps, "bf16": "BF16" in caps,
            "cores_visible": os.cpu_count()}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--study", choices=["modes", "ablation"], default="modes")
    ap.add_argument("--rounds", type=int, default=3, help="modes: benchmark_app rounds")
    ap.add_argument("--model", default=str(ROOT / "edge_mlla" / "weights" / "yolo11n-mlla-bccd.pt"))
    ap.add_argument("--data", default="bccd")
    ap.add_argument("--split", default="val")
    ap.add_argument("--imgsz", type=int, default=None, help="default: ablation 640, modes the training size")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--subset-size", type=int, default=200)
    ap.add_argument("--ablation", choices=["full", "short"], default="full")
    ap.add_argument("--val-limit", type=int, default=None, help="evaluate on the first N images only")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if a.study == "modes":
        from bench_quantize_modes import run_modes

        return run_modes(a)
    a.imgsz = a.imgsz or 640
    return _ablation(a)


def _ablation(a: argparse.Namespace) -> int:
    from edge_mlla._env import setup_offline

    setup_offline()
    import numpy as np

    from edge_mlla.eval import evaluate
    from edge_mlla.export import export
    from edge_mlla.quantize import measure_latency, quantize

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench_quantize_"))
    cpu = _cpu()
    LOGGER.info("CPU: %s", cpu)
    t_start = time.time()
    x = np.random.default_rng(0).random((1, 3, a.imgsz, a.imgsz), dtype=np.float32)
    ev = dict(data=a.data, split=a.split, limit=a.val_limit, progress=False)
    ov_cfg = {"config": {"INFERENCE_NUM_THREADS": a.threads}}
    res: dict = {"conditions": {**cpu, "imgsz": a.imgsz, "threads": a.threads, "runs": a.runs, "batch": 1,
                                "data": a.data, "split": a.split, "calibration": f"{a.data} train, <= {a.subset_size} images",
                                "model": a.model}, "accuracy": {}, "latency_ms": {}, "ablation": {}}  # fmt: skip

    def lat(path: Path, backend: str, precision: str | None = None) -> float:
        return round(measure_latency(path, backend, x, a.runs, a.threads, precision=precision), 2)

    # ---- FP32 exports of the MLLA model and of stock YOLO11n (random weights, 3 classes)
    mlla_onnx = export(a.model, format="onnx", imgsz=a.imgsz, output=work / "mlla")
    mlla_xml = export(a.model, format="openvino", imgsz=a.imgsz, output=work / "mlla")
    stock = _stock_model()
    stock_onnx = export(stock, format="onnx", imgsz=a.imgsz, output=work / "stock")
    stock_xml = export(stock, format="openvino", imgsz=a.imgsz, output=work / "stock")

    # ---- FP32 accuracy
    acc = res["accuracy"]
    r = evaluate(mlla_xml, backend="openvino", precision="f32", **ev, **ov_cfg)
    acc["openvino fp32 (f32)"] = {"mAP50-95": r["mAP50-95"], "mAP50": r["mAP50"]}
    r = evaluate(mlla_onnx, backend="onnxruntime", **ev, threads=a.threads)
    acc["onnxruntime fp32"] = {"mAP50-95": r["mAP50-95"], "mAP50": r["mAP50"]}

    # ---- OpenVINO INT8: ablation of the ignored scope
    calib_kw = dict(calib=a.data, subset_size=a.subset_size, latency_runs=0, bias_correction="full")
    ablation = ABLATION_FULL if a.ablation == "full" else ABLATION_SHORT
    base = acc["openvino fp32 (f32)"]["mAP50-95"]
    default_xml = None
    for label, scope in ablation.items():
        t0 = time.time()
        rep = quantize(mlla_xml, backend="openvino", scope=scope, output=work / f"ov_{scope.replace(',', '_')}",
                       **calib_kw)  # fmt: skip
        q = Path(rep.output)
        r = evaluate(q, backend="openvino", precision="f32", **ev, **ov_cfg)
        res["ablation"][label] = {
            "scope": scope, "mAP50-95": r["mAP50-95"], "mAP50": r["mAP50"],
            "drop_x100": round((base - r["mAP50-95"]) * 100, 2), "latency_ms": lat(q, "openvino"),
            "float_nodes": rep.details.get("ignored_nodes"), "fake_quantize": rep.details.get("fake_quantize_nodes"),
            "quantize_s": round(time.time() - t0, 1), "calibration_used": rep.calibration["used"],
            "calibration_skipped": rep.calibration["skipped"],
        }  # fmt: skip
        LOGGER.info("ablation %s: %s", label, res["ablation"][label])
        if "default" in label:
            default_xml = q
            acc["openvino int8 (default scope)"] = {"mAP50-95": r["mAP50-95"], "mAP50": r["mAP50"]}

    # ---- ORT QDQ INT8 (default scope)
    rep = quantize(mlla_onnx, backend="onnxruntime", output=work / "ort", **calib_kw)
    ort_q = Path(rep.output)
    r = evaluate(ort_q, backend="onnxruntime", **ev, threads=a.threads)
    acc["onnxruntime int8 QDQ (default scope)"] = {"mAP50-95": r["mAP50-95"], "mAP50": r["mAP50"]}
    res["ort_details"] = {k: v for k, v in rep.details.items() if k not in ("ignored_node_names", "calibration")}

    _latency_and_goals(res, lat, cpu, mlla_xml, mlla_onnx, stock_xml, stock_onnx, default_xml, ort_q, calib_kw, work)
    res["seconds"] = round(time.time() - t_start)
    md = _markdown(res)
    print(md)
    (out / "bench_quantize_ablation.json").write_text(json.dumps(res, indent=2, default=str))
    (out / "bench_quantize_ablation.md").write_text(md + "\n")
    _plot(res, out / "bench_quantize_ablation.png")
    return 0


def _latency_and_goals(res, lat, cpu, mlla_xml, mlla_onnx, stock_xml, stock_onnx, default_xml, ort_q, calib_kw, work):  # noqa: ANN001
    """Latency of MLLA and stock in every runtime/precision (same threads, same input) and the goal ratios."""
    from edge_mlla.quantize import quantize

    acc = res["accuracy"]
    L = res["latency_ms"]
    stock_ov_q = Path(quantize(stock_xml, backend="openvino", scope="head", output=work / "stock_ov_int8", **calib_kw).output)
    stock_ort_q = Path(quantize(stock_onnx, backend="onnxruntime", scope="head", output=work / "stock_ort_int8", **calib_kw).output)
    for name, xml, onnx_p, ov_q, ort_qq in (("YOLO11n-MLLA", mlla_xml, mlla_onnx, default_xml, ort_q),
                                             ("YOLO11n (stock)", stock_xml, stock_onnx, stock_ov_q, stock_ort_q)):
        row = {"openvino f32": lat(xml, "openvino", "f32")}
        if cpu["bf16"]:
            row["openvino bf16"] = lat(xml, "openvino", "bf16")
        row["openvino int8"] = lat(ov_q, "openvino", "f32") if ov_q else None
        row["onnxruntime fp32"] = lat(onnx_p, "onnxruntime")
        row["onnxruntime int8"] = lat(ort_qq, "onnxruntime")
        L[name] = row
    m = L["YOLO11n-MLLA"]
    ratios = {
        "openvino int8 / f32 (goal <= 0.70)": m["openvino int8"] / m["openvino f32"],
        "openvino int8 / bf16 (goal <= 0.85)": (m["openvino int8"] / m["openvino bf16"]) if "openvino bf16" in m else None,
        "onnxruntime int8 / fp32 (goal <= 0.70)": m["onnxruntime int8"] / m["onnxruntime fp32"],
        "openvino int8 mAP50-95 drop x100 (goal <= 1.0)": (acc["openvino fp32 (f32)"]["mAP50-95"]
                                                            - acc["openvino int8 (default scope)"]["mAP50-95"]) * 100,
        "onnxruntime int8 mAP50-95 drop x100": (acc["onnxruntime fp32"]["mAP50-95"]
                                                 - acc["onnxruntime int8 QDQ (default scope)"]["mAP50-95"]) * 100,
    }  # fmt: skip
    res["goals"] = {k: (None if v is None else round(v, 3)) for k, v in ratios.items()}


def _stock_model():
    """A stock YOLO11n DetectionModel with random weights and 3 classes (built from yaml, never downloaded)."""
    from ultralytics.nn.tasks import DetectionModel

    m = DetectionModel("yolo11n.yaml", nc=3, verbose=False)
    m.names = {0: "RBC", 1: "WBC", 2: "Platelets"}
    return m.eval()


def _markdown(res: dict) -> str:
    c = res["conditions"]
    lines = [
        f"Conditions: {c['cpu']} ({c['cores_visible']} visible cores, shared), VNNI {c['vnni']}, OpenVINO CPU caps "
        f"{c['openvino_caps']}; imgsz {c['imgsz']}, batch 1, {c['threads']} threads, median of {c['runs']} runs "
        f"(model only); accuracy on {c['data']} {c['split']}, OpenVINO at f32; calibration {c['calibration']}.",
        "",
        "| model | mAP50-95 | mAP50 |",
        "|---|---:|---:|",
    ]
    for k, v in res["accuracy"].items():
        lines.append(f"| {k} | {v['mAP50-95']:.4f} | {v['mAP50']:.4f} |")
    lines += ["", "Ignored-scope ablation (OpenVINO INT8, NNCF MIXED, full bias correction):", "",
              "| kept in float | nodes | mAP50-95 | mAP50 | drop x100 | latency ms |", "|---|---:|---:|---:|---:|---:|"]
    for k, v in res["ablation"].items():
        lines.append(f"| {k} | {v['float_nodes']} | {v['mAP50-95']:.4f} | {v['mAP50']:.4f} | {v['drop_x100']:+.2f} | "
                     f"{v['latency_ms']:.2f} |")  # fmt: skip
    cols = sorted({k for row in res["latency_ms"].values() for k in row}, key=lambda s: (s.split()[0], s))
    lines += ["", "Latency (ms):", "", "| model | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for name, row in res["latency_ms"].items():
        lines.append(f"| {name} | " + " | ".join("-" if row.get(k) is None else f"{row[k]:.2f}" for k in cols) + " |")
    lines += ["", "Goals:", ""]
    for k, v in res["goals"].items():
        lines.append(f"- {k}: {'n/a (no bf16 on this CPU)' if v is None else v}")
    return "\n".join(lines)


def _plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 4))
    ab = res["ablation"]
    a1.barh(list(ab), [v["mAP50-95"] for v in ab.values()], color="#dd8452")
    fp = res["accuracy"]["openvino fp32 (f32)"]["mAP50-95"]
    a1.axvline(fp, color="#4c72b0", ls="--", label=f"FP32 {fp:.3f}")
    a1.axvline(fp - 0.01, color="grey", ls=":", label="FP32 - 1 point")
    a1.set_xlabel("mAP50-95 (OpenVINO INT8)")
    a1.legend(fontsize=8)
    a1.set_title("ignored-scope ablation", fontsize=10)
    names = list(res["latency_ms"])
    cols = sorted({k for row in res["latency_ms"].values() for k in row})
    w = 0.8 / max(len(cols), 1)
    for i, col in enumerate(cols):
        a2.bar([j + i * w for j in range(len(names))], [res["latency_ms"][n].get(col) or 0 for n in names], w, label=col)
    a2.set_xticks([j + 0.4 - w / 2 for j in range(len(names))], names)
    a2.set_ylabel("ms (batch 1)")
    a2.legend(fontsize=8)
    c = res["conditions"]
    a2.set_title(f"latency, imgsz {c['imgsz']}, {c['threads']} threads", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
