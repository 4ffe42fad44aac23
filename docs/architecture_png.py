"""Draws docs/architecture.png, the picture of the layers in docs/architecture.md: `python docs/architecture_png.py`."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

EDGE, MODEL, TOOL = "#dbe9f6", "#fbe3d6", "#e6e6e6"
# (x, y, width, height, colour, title, modules)
BOXES = [
    (0.0, 0.0, 6.2, 1.0, EDGE, "foundation", "errors · modelfile (model files, metadata, precision names, INT8 test)\nops (images, letterbox, NMS) · results"),
    (0.0, 1.4, 6.2, 1.0, EDGE, "runtimes/", "base (Backend protocol) · capabilities (precision policy)\nopenvino · onnxruntime · cuda · torch*"),
    (0.0, 2.8, 6.2, 1.0, EDGE, "Detector", "detector · eval (mAP = Ultralytics' validator) · data · graph"),
    (0.0, 4.2, 3.0, 1.0, EDGE, "stream/", "sources · motion · regions\nschedule · runner · track · watch"),
    (3.2, 4.2, 3.0, 1.0, EDGE, "serve/ (Ray only here)", "guard · codec · batching\ndeployment · client · repository"),
    (6.8, 1.4, 3.6, 1.0, MODEL, "nn/", "MLLA block · C2MLLA\nreparam (deploy form) · load"),
    (6.8, 2.8, 3.6, 1.0, MODEL, "export/ · train · study/", "ONNX · OpenVINO IR · op audit\nseed-controlled A/B verdict"),
    (6.8, 4.2, 3.6, 1.0, MODEL, "quantize/", "calibration · scope · candidates\nNNCF · ONNX Runtime QDQ"),
    (0.0, 5.6, 10.4, 0.9, TOOL, "cli · bench/ · demo", "thin: parse, call the library, print"),
]
ARROWS = [((3.1, 1.4), (3.1, 1.0)), ((3.1, 2.8), (3.1, 2.4)), ((1.5, 4.2), (1.5, 3.8)), ((4.7, 4.2), (4.7, 3.8)),
          ((8.6, 2.8), (8.6, 2.4)), ((8.6, 4.2), (8.6, 3.8)), ((6.8, 4.7), (6.2, 2.0)), ((6.8, 1.9), (6.2, 0.5)),
          ((5.2, 5.6), (5.2, 5.2))]


def main(out: Path = Path(__file__).with_name("architecture.png")) -> Path:
    fig, ax = plt.subplots(figsize=(11, 6.6))
    for x, y, w, h, c, title, mods in BOXES:
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.08", fc=c, ec="#555"))
        ax.text(x + 0.12, y + h - 0.22, title, fontsize=11, weight="bold", va="center")
        ax.text(x + 0.12, y + 0.33, mods, fontsize=8, va="center", linespacing=1.3)
    for (x0, y0), (x1, y1) in ARROWS:
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=12, color="#333"))
    ax.text(0.0, 6.8, "edge side: torch-free (blue)", color="#1f5f99", fontsize=10, weight="bold")
    ax.text(6.8, 6.8, "model side: torch + Ultralytics (orange)", color="#a04a18", fontsize=10, weight="bold")
    ax.add_patch(FancyArrowPatch((6.2, 1.75), (6.8, 1.75), arrowstyle="-|>", mutation_scale=12, color="#a04a18", ls="--"))
    ax.text(0.0, -0.55, "arrows: 'imports'; nothing imports upward. quantize/ is imported only by cli, bench and demo.\n"
            "*runtimes/torch loads checkpoints through nn/ (dashed): the one arrow from the edge side to the model side.",
            fontsize=8.5, linespacing=1.3)
    ax.set_xlim(-0.2, 10.6)
    ax.set_ylim(-0.9, 7.1)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    return out


if __name__ == "__main__":
    print(main())
