"""Real reduced-precision runs against f32 (issue 17): where the CPU computes bf16 natively, the default
precision is bf16, and it costs less than 0.5 mAP points on BCCD val and agrees box for box within bf16's
tolerance (tests/tolerance.py says why each bound holds). Elsewhere these tests skip and say why; the policy's
branches themselves run on every machine (tests/test_runtimes.py, simulated capability sets)."""

from __future__ import annotations

import cv2
import pytest
from tolerance import assert_detections_agree

from edge_mlla import Detector

CONF = 0.25


def _real_bf16() -> str | None:
    """None when this CPU really computes bf16; else the reason to skip."""
    try:
        import openvino as ov
    except ImportError:
        return "openvino is not installed"
    from edge_mlla.runtimes.capabilities import CAPS_ENV, is_simulated

    if is_simulated("CPU"):
        return f"{CAPS_ENV} simulates the CPU's capabilities; real bf16 runs need the real probe"
    caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return None if "BF16" in caps else f"this CPU has no BF16 (OpenVINO capabilities: {', '.join(caps)}): bf16 would run as f32"


pytestmark = pytest.mark.skipif(_real_bf16() is not None, reason=str(_real_bf16()))


@pytest.fixture(scope="module")
def ir416(exported):
    return exported("openvino", imgsz=416)  # the bundled model's training size


def test_default_is_bf16_and_reported(ir416):
    det = Detector(ir416)
    assert det.precision == "bf16" and "precision='bf16'" in repr(det)
    assert Detector(ir416, precision="f32").precision == "f32"


def test_bf16_map_within_half_a_point_of_f32(ir416):
    from edge_mlla.eval import evaluate

    f32 = evaluate(ir416, data="bccd", split="val", precision="f32", progress=False)
    bf16 = evaluate(ir416, data="bccd", split="val", progress=False)
    assert f32["precision"] == "f32" and bf16["precision"] == "bf16"
    assert abs(bf16["mAP50-95"] - f32["mAP50-95"]) <= 0.005, (bf16["mAP50-95"], f32["mAP50-95"])


def test_bf16_boxes_agree_with_f32(ir416, val_images):
    bf16, f32 = Detector(ir416, conf=CONF), Detector(ir416, conf=CONF, precision="f32")
    runs = []
    for p in val_images[:30]:
        img = cv2.imread(str(p))
        runs.append((bf16(img), f32(img)))
    stats = assert_detections_agree(runs, bf16.precision, CONF)
    assert stats["pairs"] > 100  # BCCD images hold ~15-20 cells each: the comparison is not vacuous


def test_capabilities_command_says_what_the_policy_picks():
    """`python -m edge_mlla.runtimes.capabilities` prints the CPU default precision and whether it was simulated;
    `--other` names the CPU set this host is not (what `make test`'s second step uses)."""
    import os
    import subprocess
    import sys

    def run(*args: str, caps: str | None) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k != "EDGE_MLLA_CAPS"}
        if caps:
            env["EDGE_MLLA_CAPS"] = caps
        return subprocess.run([sys.executable, "-m", "edge_mlla.runtimes.capabilities", *args], capture_output=True,
                              text=True, timeout=120, env=env)  # fmt: skip

    f32, bf16 = run(caps="avx2"), run(caps="avx512_bf16")
    assert f32.returncode == 0 and f32.stdout.startswith("CPU default precision: f32 (simulated by EDGE_MLLA_CAPS=avx2")
    assert bf16.stdout.startswith("CPU default precision: bf16 (simulated")
    assert run("--other", caps="avx2").stdout.strip() == "avx512_bf16"
    assert run("--other", caps="avx512_bf16").stdout.strip() == "avx2"
    assert run("--bogus", caps=None).returncode == 2
