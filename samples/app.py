"""The smallest real app: count objects per class in images and save annotated copies.

    python samples/app.py --model yolo11n-mlla-bccd.xml edge_mlla/data/bccd/images/val/*.jpg
    python samples/app.py --model best.onnx --out annotated path/to/folder
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import cv2

from edge_mlla import Detector, EdgeMLLAError
from edge_mlla.ops import list_images


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help=".xml, .onnx or .pt")
    ap.add_argument("--out", type=Path, default=Path("annotated"), help="folder for the annotated copies")
    ap.add_argument("--conf", type=float, default=0.25)
    ap.add_argument("images", nargs="+", type=Path, help="image files or folders")
    args = ap.parse_args(argv)

    try:
        images = [p for arg in args.images for p in (list_images(arg) if arg.is_dir() else [arg])]
        det = Detector(args.model, conf=args.conf)
        results = det(images) if images else []  # a list is one batched call
        args.out.mkdir(parents=True, exist_ok=True)
    except (EdgeMLLAError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path, dets in zip(images, results):
        counts = Counter(dets.class_name.tolist())
        print(f"{path.name}: " + (", ".join(f"{n} {name}" for name, n in sorted(counts.items())) or "nothing"))
        cv2.imwrite(str(args.out / path.name), dets.draw(cv2.imread(str(path))))
    print(f"{len(results)} images -> {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
