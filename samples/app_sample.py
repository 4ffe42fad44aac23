"""The smallest useful app: count objects per class in images and save annotated copies.

    python samples/app_sample.py --model yolo11n-mlla-bccd.xml edge_mlla/data/bccd/images/val/*.jpg
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import cv2

from edge_mlla import Detector


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", type=Path, default=Path("annotated"))
    ap.add_argument("images", nargs="+", type=Path)
    args = ap.parse_args()

    det = Detector(args.model, conf=0.25)
    args.out.mkdir(parents=True, exist_ok=True)
    for path, dets in zip(args.images, det(args.images)):  # a list is one batched call
        counts = Counter(dets.class_name.tolist())
        print(f"{path.name}: " + (", ".join(f"{n} {name}" for name, n in sorted(counts.items())) or "nothing"))
        cv2.imwrite(str(args.out / path.name), dets.draw(cv2.imread(str(path))))


if __name__ == "__main__":
    main()
