"""The hardware limit: GFLOP/s this machine reaches on one large 3x3 convolution in a runtime and precision, the
denominator of the bench's "% of peak" column.

Example:
    >>> from edge_mlla.bench.peak import measure_peak
    >>> measure_peak("openvino", "f32")["gflops_per_s"]  # doctest: +SKIP
    61.2

Imports inside functions: onnx and the runtimes load only when a peak is measured; :mod:`edge_mlla.bench.measure` is
imported there too, to avoid an import cycle.
"""

from __future__ import annotations

import logging
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edge_mlla.bench.options import PEAK_CONV, bar
from edge_mlla.bench.result import Cell
from edge_mlla.errors import ConfigError

LOGGER = logging.getLogger("edge_mlla")


def _peak_onnx(path: Path, channels: int, side: int, int8: bool) -> None:
    """A one-conv ONNX model (3x3, channels -> channels, pad 1) built with the onnx helper API; ``int8``: QDQ
    around it (u8 activations, symmetric s8 weights), which both runtimes execute as an INT8 convolution."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = (rng.standard_normal((channels, channels, 3, 3)) * 0.05).astype(np.float32)
    inits, nodes = [], []
    conv_in, conv_w = "x", "w"
    if int8:
        ws = np.float32(np.abs(w).max() / 127.0)
        inits += [numpy_helper.from_array(np.clip(np.round(w / ws), -127, 127).astype(np.int8), "wq"),
                  numpy_helper.from_array(np.array(ws, np.float32), "ws"),
                  numpy_helper.from_array(np.array(0, np.int8), "wz"),
                  numpy_helper.from_array(np.array(1.0 / 255.0, np.float32), "xs"),
                  numpy_helper.from_array(np.array(0, np.uint8), "xz")]  # fmt: skip
        nodes += [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
                  helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
                  helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"])]  # fmt: skip
        conv_in, conv_w = "xd", "wd"
    else:
        inits.append(numpy_helper.from_array(w, "w"))
    nodes.append(helper.make_node("Conv", [conv_in, conv_w], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
    shape = [1, channels, side, side]
    graph = helper.make_graph(nodes, "peak_conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], inits)  # fmt: skip
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edge_mlla.bench")
    onnx.checker.check_model(m)
    onnx.save(m, str(path))


def measure_peak(backend: str, precision: str, runs: int = 10, warmup: int = 3, channels: int = PEAK_CONV[0],
                 side: int = PEAK_CONV[1], folder: str | os.PathLike | None = None) -> dict[str, Any]:  # fmt: skip
    """GFLOP/s this machine reaches on a large 3x3 convolution (``channels`` -> ``channels`` on
    1 x channels x side x side) in ``backend`` at ``precision`` (``f32``/``bf16``/``f16`` hint for OpenVINO;
    ``int8``: a QDQ conv), with the runtime's default threads, median of ``runs`` after ``warmup``.

    Example:
        >>> measure_peak("openvino", "f32")["gflops_per_s"]  # doctest: +SKIP
        61.2
    """
    from edge_mlla.bench.measure import call_times_ms
    from edge_mlla.runtimes import get_backend

    flop = 2.0 * channels * channels * 9 * side * side
    int8 = precision == "int8"
    with tempfile.TemporaryDirectory(prefix="edge_mlla_peak_", dir=folder) as tmp:
        path = Path(tmp) / f"conv_{'int8' if int8 else 'f32'}.onnx"
        _peak_onnx(path, channels, side, int8)
        ask = precision if backend == "openvino" and not int8 else None
        be = get_backend(backend)(path, precision=ask)
        try:
            if int8 and getattr(be, "int8", True) is False:
                raise ConfigError(f"{backend} did not run the QDQ convolution in INT8")
            x = np.random.default_rng(0).random((1, channels, side, side), dtype=np.float32)
            times = [ms / 1000.0 for ms in call_times_ms(lambda: be.infer(x), runs, warmup)]
            run_as = "int8" if int8 else getattr(be, "precision", precision)
        finally:
            be.close()
    med = statistics.median(times)
    return {"backend": backend, "precision": run_as, "gflop": round(flop / 1e9, 3), "ms": round(med * 1000, 3),
            "gflops_per_s": round(flop / med / 1e9, 2), "runs": runs,
            "conv": f"3x3 conv {channels}->{channels} on 1x{channels}x{side}x{side}" + (" (QDQ int8)" if int8 else "")}  # fmt: skip


def peak_combos(cells: list[Cell]) -> list[tuple[str, str]]:
    """The (backend, precision) pairs the measured cells ran in: one peak each (what actually ran, so the set
    follows the machine: OpenVINO bf16 only where the CPU computes bf16)."""
    combos: list[tuple[str, str]] = []
    for c in cells:
        if c.ok and c.backend in ("openvino", "onnxruntime", "cuda") and c.precision_run:
            prec = c.precision_run if c.precision_run in ("f32", "bf16", "f16", "int8") else "f32"
            if (c.backend, prec) not in combos:
                combos.append((c.backend, prec))
    return combos


def measure_peaks(cells: list[Cell], runs: int, progress: bool, side: int, work: Path) -> list[dict[str, Any]]:
    """One :func:`measure_peak` per pair of :func:`peak_combos`; one that fails records why instead."""
    combos = peak_combos(cells)
    out = []
    pbar = bar(len(combos), "bench: peak GFLOP/s", progress)
    try:
        for b, p in combos:
            pbar.set_postfix_str(f"{b} {p}")
            try:
                out.append(measure_peak(b, p, runs=max(3, min(runs, 20)), warmup=2, side=side, folder=work))
            except Exception as e:  # noqa: BLE001  the peak is context, not the benchmark: record why it is missing
                LOGGER.warning("bench: peak for %s %s not measured: %s", b, p, e)
                out.append({"backend": b, "precision": p, "gflops_per_s": None, "reason": f"{type(e).__name__}: {e}"})
            pbar.update(1)
    finally:
        pbar.close()
    return out


def fill_peak_share(cells: list[Cell], peaks: list[dict[str, Any]]) -> None:
    """Set each cell's ``pct_of_peak``: its GFLOP/s over the peak of its backend and precision."""
    peak = {(p["backend"], p["precision"]): p.get("gflops_per_s") for p in peaks}
    for c in cells:
        pk = peak.get((c.backend, c.precision_run or ""))
        if c.gflops_per_s and pk:
            c.pct_of_peak = round(100.0 * c.gflops_per_s / pk, 1)
