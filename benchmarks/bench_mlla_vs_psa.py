"""MLLABlock (linear attention) vs Ultralytics' PSABlock (softmax attention): CPU forward latency vs map size.

Prints a markdown table (median ms, batch 1) for torch eager and OpenVINO f32 and writes a PNG.
Usage: python benchmarks/bench_mlla_vs_psa.py [--sizes 20 40 80 160] [--channels 128 256] [--no-openvino]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import edge_mlla.nn  # noqa: F401  offline set-up before Ultralytics
from edge_mlla.nn import MLLABlock


def _median_ms(fn, budget_s: float = 3.0, max_iter: int = 30) -> float:
    fn()  # warm-up
    times: list[float] = []
    t_end = time.perf_counter() + budget_s
    while len(times) < max_iter and (len(times) < 3 or time.perf_counter() < t_end):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _ov_runner(module: torch.nn.Module, x: torch.Tensor):
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(ov.convert_model(module, example_input=x), "CPU",
                                  {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"})
    req = compiled.create_infer_request()
    arr = x.numpy()
    return lambda: req.infer([arr])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[20, 40, 80, 160])
    ap.add_argument("--channels", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--no-openvino", action="store_true")
    ap.add_argument("--png", default="benchmarks/mlla_vs_psa.png")
    ap.add_argument("--max-attn-gb", type=float, default=4.0,
                    help="skip PSA where its softmax attention matrix alone would exceed this many GB")
    args = ap.parse_args()
    from ultralytics.nn.modules.block import PSABlock

    torch.set_grad_enabled(False)
    rows = []
    for c in args.channels:
        blocks = {
            "MLLABlock": MLLABlock(c).eval(),
            "PSABlock": PSABlock(c, attn_ratio=0.5, num_heads=max(c // 64, 1)).eval(),
        }
        for s in args.sizes:
            x = torch.randn(1, c, s, s)
            row = {"C": c, "HxW": f"{s}x{s}", "pixels": s * s}
            for name, blk in blocks.items():
                heads = getattr(getattr(blk, "attn", None), "num_heads", 1)
                attn_gb = heads * (s * s) ** 2 * 4 / 1e9  # PSA's (heads, N, N) float32 attention matrix
                if name == "PSABlock" and attn_gb > args.max_attn_gb:
                    print(f"skip PSABlock C={c} {s}x{s}: its attention matrix needs {attn_gb:.1f} GB", flush=True)
                    row[f"{name} torch"] = row[f"{name} OV f32"] = float("nan")
                    continue
                row[f"{name} torch"] = _median_ms(lambda b=blk: b(x))
                if not args.no_openvino:
                    row[f"{name} OV f32"] = _median_ms(_ov_runner(blk, x))
            rows.append(row)
            print({k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)

    cols = [k for k in rows[0] if k not in ("C", "HxW", "pixels")]
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads, batch 1, median ms\n")
    print("| C | HxW | " + " | ".join(cols) + " | PSA/MLLA (torch) |")
    print("|---|---|" + "---|" * (len(cols) + 1))
    for r in rows:
        ratio = r["PSABlock torch"] / r["MLLABlock torch"]
        print(f"| {r['C']} | {r['HxW']} | " + " | ".join(f"{r[c]:.1f}" for c in cols) + f" | {ratio:.2f}x |")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(args.channels), figsize=(6 * len(args.channels), 4), squeeze=False)
    for ax, c in zip(axes[0], args.channels):
        sub = [r for r in rows if r["C"] == c]
        for col in cols:
            ax.loglog([r["pixels"] for r in sub], [r[col] for r in sub], marker="o", label=col)
        ax.set(title=f"C = {c}, batch 1", xlabel="pixels (H x W)", ylabel="median ms")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    Path(args.png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.png, dpi=100)
    print(f"\nplot: {args.png}")


if __name__ == "__main__":
    main()
