"""CPU latency of three forms of the MLLA block, per block and in a whole YOLO11n-MLLA, torch and OpenVINO.

Forms:

* ``token``: the paper's layout ((B, N, C) tokens, nn.Linear, nn.LayerNorm, transposes into image
  layout around every depthwise conv): ``TokenMLLABlock`` from tests/mlla_reference.py.
* ``train``: our training form ``edge_mlla.nn.MLLABlock`` (NCHW, RoPE tables per size).
* ``deploy``: ``MLLABlock.reparameterize()`` (``MLLABlockDeploy``), bound to the feature size.

All three carry the same weights (checked equal before timing). Every OpenVINO number is from
a static ONNX graph (TorchScript exporter, opset 17) converted with ``ov.convert_model`` and
compiled with an explicit ``INFERENCE_PRECISION_HINT``; latency is the median of ``--reps``
synchronous runs after ``--warmup`` runs, all forms measured in the same process, interleaved
round-robin so that background load hits them alike.

Usage (prints a markdown table, writes a PNG)::

    taskset -c 1 .venv/bin/python benchmarks/bench_mlla_forms.py --threads 1
    .venv/bin/python benchmarks/bench_mlla_forms.py --quick            # 20x20 only, no whole model
    .venv/bin/python benchmarks/bench_mlla_forms.py --profile 40 128  # OpenVINO per-op time of each form
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import edge_mlla.nn  # noqa: E402,F401  (offline set-up, C2MLLA registration)
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from edge_mlla.nn import C2MLLA, MLLABlock  # noqa: E402
from edge_mlla.reparam import bind, reparameterize  # noqa: E402

LOGGER = logging.getLogger("bench")
FORMS = ("token", "train", "deploy")


# ------------------------------------------------------------------------------------------- model building
def _token_block_cls():
    try:
        from mlla_reference import TokenMLLABlock, copy_weights  # tests/mlla_reference.py

        return TokenMLLABlock, copy_weights
    except ImportError as e:  # pragma: no cover - the reference ships with the repo's tests
        raise SystemExit(f"tests/mlla_reference.py is needed for the token-layout form: {e}") from e


def _randomize(m: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return m


def make_forms(c: int, h: int, w: int) -> dict[str, nn.Module]:
    """The three forms of one MLLA block with identical weights, for an h x w map."""
    TokenMLLABlock, copy_weights = _token_block_cls()
    train = _randomize(MLLABlock(c)).eval()
    token = copy_weights(train, TokenMLLABlock(c, h, w, train.num_heads)).eval()
    deploy = train.reparameterize().bind(h, w).eval()
    x = torch.randn(1, c, h, w)
    with torch.no_grad():
        ref = train(x)
        tok = token(x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(1, c, h, w)
        for name, y in (("token", tok), ("deploy", deploy(x))):
            err = (y - ref).abs().max().item()
            if err > 1e-4:
                raise SystemExit(f"{name} form differs from the training form by {err:.2e} at C={c} {h}x{w}")
    return {"token": token, "train": train, "deploy": deploy}


def block_input(form: str, c: int, h: int, w: int) -> torch.Tensor:
    """Tokens (1, N, C) for the token form (its native layout), NCHW for ours."""
    return torch.randn(1, h * w, c) if form == "token" else torch.randn(1, c, h, w)


class _TokenInNCHW(nn.Module):
    """A token-layout block inside an NCHW network: layout conversion around it (as in ports of the paper)."""

    def __init__(self, blk: nn.Module) -> None:
        super().__init__()
        self.blk = blk

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        return self.blk(x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(b, c, h, w)


def whole_models(imgsz: int, ckpt: Path | None) -> dict[str, nn.Module]:
    """YOLO11n-MLLA in token/train/deploy form and stock YOLO11n (all nc=3, Conv+BN fused)."""
    from ultralytics import YOLO

    TokenMLLABlock, copy_weights = _token_block_cls()
    if ckpt is not None and ckpt.is_file():
        from edge_mlla.export import load_detector

        train = load_detector(ckpt)
    else:
        train = YOLO("yolo11n-mlla.yaml").model
    train = _randomize_bn(train.float().eval())
    stock = YOLO("yolo11n.yaml").model.float().eval()
    sizes: dict[str, tuple[int, int]] = {}
    hooks = [
        m.register_forward_pre_hook(lambda mod, a, _n=n: sizes.__setitem__(_n, tuple(a[0].shape[-2:])))
        for n, m in train.named_modules()
        if isinstance(m, MLLABlock)
    ]
    with torch.no_grad():
        train(torch.zeros(1, 3, imgsz, imgsz))
    for hk in hooks:
        hk.remove()
    token = copy.deepcopy(train)
    for name, mod in list(token.named_modules()):
        if isinstance(mod, C2MLLA):
            for i, blk in enumerate(mod.m):
                h, w = sizes[f"{name}.m.{i}"]
                mod.m[i] = _TokenInNCHW(copy_weights(blk, TokenMLLABlock(blk.dim, h, w, blk.num_heads)).eval())
    deploy = reparameterize(train)
    bind(deploy, imgsz)
    out = {
        "token": reparameterize(token),  # Conv+BN fused as well: only the MLLA form differs
        "train": _fuse_only(train),  # MLLA blocks kept in training form
        "deploy": deploy,
        "stock": reparameterize(stock),
    }
    return out


def _fuse_only(model: nn.Module) -> nn.Module:
    """Conv+BN fusion without swapping MLLA blocks (the training form, fused like the others)."""
    from edge_mlla.reparam import fuse_conv_bn

    m = copy.deepcopy(model).eval()
    with torch.no_grad():
        fuse_conv_bn(m)
    return m


def _randomize_bn(model: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model


# ----------------------------------------------------------------------------------------------- timing
def _median_ms(fn, warmup: int, reps: int) -> float:
    from edge_mlla.runtimes.base import call_times_ms

    return statistics.median(call_times_ms(fn, reps, warmup))


def torch_runner(model: nn.Module, x: torch.Tensor):
    def run():
        with torch.inference_mode():
            model(x)

    return run


def to_openvino(model: nn.Module, x: torch.Tensor, tmp: Path, name: str):
    """Export to a static ONNX graph (as edge_mlla.export does) and convert with OpenVINO."""
    import warnings

    import openvino as ov

    path = tmp / f"{name}.onnx"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, x, str(path), dynamo=False, opset_version=17, input_names=["x"], do_constant_folding=True)
    return ov.convert_model(str(path))


def ov_runner(core, ov_model, x: torch.Tensor, precision: str, threads: int):
    cfg = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}
    if threads:
        cfg["INFERENCE_NUM_THREADS"] = threads
    compiled = core.compile_model(ov_model, "CPU", cfg)
    req = compiled.create_infer_request()
    arr = x.numpy()

    def run():
        req.infer([arr])

    return run, compiled


def interleaved(runners: dict[str, object], warmup: int, reps: int) -> dict[str, list[float]]:
    """Per-run latencies (ms), runs interleaved one by one across forms so background load hits them alike."""
    for fn in runners.values():
        for _ in range(warmup):
            fn()
    acc: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(reps):
        for k, fn in runners.items():
            t0 = time.perf_counter()
            fn()
            acc[k].append((time.perf_counter() - t0) * 1e3)
    return acc


def med(samples: dict[str, list[float]]) -> dict[str, float]:
    return {k: statistics.median(v) for k, v in samples.items()}


def low(samples: dict[str, list[float]]) -> dict[str, float]:
    return {k: min(v) for k, v in samples.items()}


# ------------------------------------------------------------------------------------------------- main
def bench_blocks(sizes, channels, threads, warmup, reps, tmp: Path) -> list[dict]:
    import openvino as ov

    core = ov.Core()
    rows = []
    for c in channels:
        for s in sizes:
            forms = make_forms(c, s, s)
            xs = {f: block_input(f, c, s, s) for f in FORMS}
            tr = med(interleaved({f: torch_runner(forms[f], xs[f]) for f in FORMS}, warmup, reps))
            ovs = interleaved(
                {
                    f: ov_runner(core, to_openvino(forms[f], xs[f], tmp, f"{f}_{c}_{s}"), xs[f], "f32", threads)[0]
                    for f in FORMS
                },
                warmup,
                reps,
            )
            ovr, ovmin = med(ovs), low(ovs)
            rows.append(
                {
                    "C": c,
                    "hw": f"{s}x{s}",
                    **{f"torch_{f}": tr[f] for f in FORMS},
                    **{f"ov_{f}": ovr[f] for f in FORMS},
                    **{f"ovmin_{f}": ovmin[f] for f in FORMS},
                }
            )
            LOGGER.info("C=%d %dx%d torch %s | ov %s", c, s, s, _fmt(tr), _fmt(ovr))
    return rows


def bench_models(imgszs, threads, warmup, reps, tmp: Path, ckpt: Path | None) -> list[dict]:
    import openvino as ov

    core = ov.Core()
    rows = []
    for imgsz in imgszs:
        models = whole_models(imgsz, ckpt)
        x = torch.rand(1, 3, imgsz, imgsz)
        for m in models.values():
            for mod in m.modules():
                if type(mod).__name__ == "Detect":
                    mod.export, mod.format, mod.shape = True, "onnx", None
        tr = med(interleaved({k: torch_runner(m, x) for k, m in models.items()}, warmup, reps))
        ov_models = {k: to_openvino(m, x, tmp, f"model_{k}_{imgsz}") for k, m in models.items()}
        row = {"imgsz": imgsz, **{f"torch_{k}": v for k, v in tr.items()}}
        for prec in ("f32", "bf16"):
            samples = interleaved({k: ov_runner(core, om, x, prec, threads)[0] for k, om in ov_models.items()}, warmup, reps)
            row.update({f"ov_{prec}_{k}": v for k, v in med(samples).items()})
            row.update({f"ovmin_{prec}_{k}": v for k, v in low(samples).items()})
        rows.append(row)
        LOGGER.info("imgsz %d: %s", imgsz, {k: round(v, 2) for k, v in row.items() if k != "imgsz"})
    return rows


def profile(size: int, c: int, threads: int, tmp: Path, top: int = 12) -> str:
    """OpenVINO per-op-type time (perf counters) of each block form."""
    import openvino as ov

    core = ov.Core()
    forms = make_forms(c, size, size)
    out = []
    for f in FORMS:
        x = block_input(f, c, size, size)
        cfg = {"INFERENCE_PRECISION_HINT": "f32", "PERF_COUNT": True, "NUM_STREAMS": "1"}
        if threads:
            cfg["INFERENCE_NUM_THREADS"] = threads
        compiled = core.compile_model(to_openvino(forms[f], x, tmp, f"prof_{f}"), "CPU", cfg)
        req = compiled.create_infer_request()
        for _ in range(10):
            req.infer([x.numpy()])
        runs: list[dict[str, float]] = []
        for _ in range(31):
            req.infer([x.numpy()])
            one: dict[str, float] = {}
            nodes = 0
            for pi in req.profiling_info:
                if pi.status.name == "EXECUTED":
                    nodes += 1
                    one[pi.node_type] = one.get(pi.node_type, 0.0) + pi.real_time.total_seconds() * 1e6
            runs.append(one)
        acc = {k: statistics.median(r.get(k, 0.0) for r in runs) for k in runs[-1]}
        total = sum(acc.values())
        out.append(f"\n### {f}: {nodes} executed nodes, {total:.0f} us (per-op-type medians of 31 runs)\n")
        out.append("| node type | us | share |\n|---|---:|---:|")
        for k, v in sorted(acc.items(), key=lambda kv: -kv[1])[:top]:
            out.append(f"| {k} | {v:.0f} | {v / total:.0%} |")
    return "\n".join(out)


def _fmt(d: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.2f}ms" for k, v in d.items())


def block_table(rows: list[dict]) -> str:
    head = (
        "| C | HxW | torch token | torch train | torch deploy | OV f32 token | OV f32 train | OV f32 deploy "
        "| OV deploy vs train | OV deploy vs token | OV min: token / train / deploy |"
        "\n|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    )
    lines = [head]
    for r in rows:
        lines.append(
            f"| {r['C']} | {r['hw']} | {r['torch_token']:.2f} | {r['torch_train']:.2f} | {r['torch_deploy']:.2f} "
            f"| {r['ov_token']:.2f} | {r['ov_train']:.2f} | {r['ov_deploy']:.2f} "
            f"| {r['ov_train'] / r['ov_deploy']:.2f}x | {r['ov_token'] / r['ov_deploy']:.2f}x "
            f"| {r['ovmin_token']:.2f} / {r['ovmin_train']:.2f} / {r['ovmin_deploy']:.2f} |"
        )
    return "\n".join(lines)


def model_table(rows: list[dict]) -> str:
    keys = ("stock", "token", "train", "deploy")
    lines = [
        "| imgsz | runtime | stock YOLO11n | MLLA token | MLLA train | MLLA deploy | deploy / stock | min: stock / deploy |",
        "|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        for rt, pre in (("torch f32", "torch_"), ("OV f32", "ov_f32_"), ("OV bf16 hint", "ov_bf16_")):
            v = [r[pre + k] for k in keys]
            mins = f"{r['ovmin' + pre[2:] + 'stock']:.2f} / {r['ovmin' + pre[2:] + 'deploy']:.2f}" if pre != "torch_" else ""
            lines.append(
                f"| {r['imgsz']} | {rt} | " + " | ".join(f"{x:.2f}" for x in v) + f" | {v[3] / v[0]:.2f}x | {mins} |"
            )
    return "\n".join(lines)


def plot(rows: list[dict], mrows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = 2 if mrows else 1
    fig, axes = plt.subplots(1, n, figsize=(7 * n, 4.5))
    axes = np.atleast_1d(axes)
    labels = [f"C{r['C']}\n{r['hw']}" for r in rows]
    xs = np.arange(len(rows))
    for i, f in enumerate(FORMS):
        axes[0].bar(xs + (i - 1) * 0.27, [r[f"ov_{f}"] for r in rows], 0.27, label=f)
    axes[0].set_xticks(xs, labels)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("ms (median, log scale)")
    axes[0].set_title("MLLA block, OpenVINO CPU f32")
    axes[0].legend()
    if mrows:
        keys = ("stock", "token", "train", "deploy")
        labels = [f"{r['imgsz']} {p}" for r in mrows for p in ("f32", "bf16 hint")]
        xs = np.arange(len(labels))
        for i, k in enumerate(keys):
            vals = [r[f"ov_{p}_{k}"] for r in mrows for p in ("f32", "bf16")]
            axes[1].bar(xs + (i - 1.5) * 0.2, vals, 0.2, label=k if k == "stock" else f"MLLA {k}")
        axes[1].set_xticks(xs, labels)
        axes[1].set_ylabel("ms (median)")
        axes[1].set_title("YOLO11n whole model, OpenVINO CPU")
        axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def bf16_note() -> str:
    """Whether OpenVINO honours a bf16 hint here (it silently runs f32 on CPUs without bf16 support)."""
    import openvino as ov

    core = ov.Core()
    x = torch.randn(1, 8, 4, 4)
    with tempfile.TemporaryDirectory() as tmp:
        om = to_openvino(nn.Conv2d(8, 8, 1), x, Path(tmp), "probe")
        got = core.compile_model(om, "CPU", {"INFERENCE_PRECISION_HINT": "bf16"}).get_property("INFERENCE_PRECISION_HINT")
    caps = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    got = got.get_type_name() if hasattr(got, "get_type_name") else str(got)
    return f"bf16 hint -> compiled precision {got} (CPU capabilities: {', '.join(caps)})"


def conditions(threads: int) -> str:
    import openvino as ov

    caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    load = os.getloadavg()
    aff = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    return (
        f"CPU: {ov.Core().get_property('CPU', 'FULL_DEVICE_NAME')} ({os.cpu_count()} cores, affinity {aff}), "
        f"OpenVINO {ov.__version__} capabilities {list(caps)}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), OV threads {threads or 'auto'}, load avg at end {load[0]:.2f}, "
        f"Python {platform.python_version()}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[20, 40, 80])
    ap.add_argument("--channels", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--imgsz", type=int, nargs="*", default=[416, 640], help="whole-model sizes (none: skip)")
    ap.add_argument("--ckpt", type=Path, default=ROOT / "edge_mlla" / "weights" / "yolo11n-mlla-bccd.pt")
    ap.add_argument("--threads", type=int, default=1, help="torch and OpenVINO threads (0: library default)")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--reps", type=int, default=45)
    ap.add_argument("--quick", action="store_true", help="20x20 blocks only, no whole model")
    ap.add_argument("--profile", type=int, nargs=2, metavar=("SIZE", "C"), help="only print OV per-op profiles")
    ap.add_argument("--png", type=Path, default=ROOT / "benchmarks" / "mlla_forms.png")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("ultralytics").setLevel(logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.sizes, args.imgsz = [20], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.profile:
            print(profile(args.profile[0], args.profile[1], args.threads, tmp))
            return 0
        rows = bench_blocks(args.sizes, args.channels, args.threads, args.warmup, args.reps, tmp)
        mrows = bench_models(args.imgsz, args.threads, max(args.warmup // 2, 3), max(args.reps // 2, 9), tmp, args.ckpt)
    print("\n## MLLA block, batch 1, median ms\n")
    print(block_table(rows))
    if mrows:
        src = args.ckpt if args.ckpt.is_file() else "yolo11n-mlla.yaml (untrained, BN stats randomized)"
        print(f"\n## Whole model (batch 1, median ms; MLLA model: {src})\n")
        print(model_table(mrows))
    print(f"\nConditions: {conditions(args.threads)}. {bf16_note()}.")
    print(
        "Latency: median of interleaved single runs (forms alternate run by run) after warm-up; "
        f"{args.reps} runs per block form, {max(args.reps // 2, 9)} per whole model; 'min' = fastest run."
    )
    plot(rows, mrows, args.png)
    print(f"\nPlot: {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
