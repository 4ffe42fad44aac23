"""``python -m edge_mlla.quantize MODEL --calib SRC ...``: the same command as ``edge-mlla quantize``."""

from __future__ import annotations

import sys

from edge_mlla.quantize.cli import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
