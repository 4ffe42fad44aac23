"""Shared test set-up: an isolated HOME/config per session, the bundled data and model, cached exports.

Exports are made once per session (they are the slow part) and shared by every test file through
the ``exported`` fixture.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))  # tests/ helpers (mlla_reference) importable

# Isolate everything the stack writes under HOME before anything imports it.
_SANDBOX = Path(tempfile.mkdtemp(prefix="edge_mlla_tests_"))
for var, sub in (("HOME", "home"), ("YOLO_CONFIG_DIR", "ultralytics"), ("MPLCONFIGDIR", "mpl")):
    (_SANDBOX / sub).mkdir(parents=True, exist_ok=True)
    os.environ[var] = str(_SANDBOX / sub)
os.environ.setdefault("OMP_NUM_THREADS", "2")

BCCD = ROOT / "edge_mlla" / "data" / "bccd"
WEIGHTS = ROOT / "edge_mlla" / "weights" / "yolo11n-mlla-bccd.pt"


@pytest.fixture(scope="session")
def sandbox() -> Path:
    """The per-session HOME/config sandbox."""
    return _SANDBOX


@pytest.fixture(scope="session")
def bccd() -> Path:
    return BCCD


@pytest.fixture(scope="session")
def val_images() -> list[Path]:
    return sorted((BCCD / "images" / "val").glob("*.jpg"))


@pytest.fixture(scope="session")
def trained_pt() -> Path:
    """The bundled YOLO11n-MLLA trained on BCCD (see edge_mlla/weights/README.md)."""
    if not WEIGHTS.is_file():
        pytest.fail(f"bundled weights missing: {WEIGHTS}")
    return WEIGHTS


def make_tiny_dataset(root: Path, n_train: int = 8, n_val: int = 4) -> Path:
    """A small copy of BCCD (first images of train/val) with its own data.yaml; returns the yaml path."""
    import shutil

    for split, n in (("train", n_train), ("val", n_val)):
        imgs = sorted((BCCD / "images" / split).glob("*.jpg"))[:n]
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for im in imgs:
            shutil.copy(im, root / "images" / split / im.name)
            shutil.copy(BCCD / "labels" / split / (im.stem + ".txt"), root / "labels" / split / (im.stem + ".txt"))
    yaml = root / "data.yaml"
    yaml.write_text("train: images/train\nval: images/val\nnc: 3\nnames: ['RBC', 'WBC', 'Platelets']\n")
    return yaml


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """data.yaml of 8 train / 4 val BCCD images in a temp folder (training never writes into the repo)."""
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny_bccd"))


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """``exported(fmt, imgsz=320, **kw) -> Path``: export the bundled model once per argument set."""
    cache: dict[tuple, Path] = {}
    base = tmp_path_factory.mktemp("exports")

    def get(fmt: str = "onnx", imgsz: int = 320, src: Path | None = None, **kw) -> Path:
        from edge_mlla.export import export

        if src is None:
            if not WEIGHTS.is_file():
                pytest.fail(f"bundled weights missing: {WEIGHTS}")
            src = WEIGHTS
        src = Path(src)
        key = (fmt, imgsz, str(src), tuple(sorted(kw.items())))
        if key not in cache:
            out = base / f"m{len(cache)}"
            cache[key] = export(src, format=fmt, imgsz=imgsz, output=out, **kw)
        return cache[key]

    return get
