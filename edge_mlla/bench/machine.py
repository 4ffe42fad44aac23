"""The machine a measurement ran on: CPU model, cores, the ISA flags that matter for inference, OpenVINO's CPU
capabilities, library versions, load and date. Every table the bench writes names it.

Example:
    >>> from edge_mlla.bench.machine import describe_machine, machine_line
    >>> m = describe_machine()
    >>> sorted(m["isa"]) == sorted(ISA_FLAGS) and m["cores"]["os_cpu_count"] >= 1
    True

Imports inside functions: OpenVINO and OpenCV are optional here (a missing one leaves its field empty), so they load
only when the machine is described.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import platform
from pathlib import Path
from typing import Any

from edge_mlla._version import __version__

ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8", "avx_vnni")


def describe_machine() -> dict[str, Any]:
    """CPU model, core counts, the ISA flags that matter for inference, OpenVINO's CPU capabilities, library
    versions and the date.

    Example:
        >>> m = describe_machine()
        >>> sorted(m["isa"]) == sorted(ISA_FLAGS) and m["cores"]["os_cpu_count"] >= 1
        True
    """
    cpu, flags = _cpuinfo()
    try:
        affinity: int | None = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        affinity = None
    caps: list[str] | None = None
    with contextlib.suppress(Exception):  # OpenVINO missing or no CPU plugin: capabilities unknown
        from edge_mlla.runtimes.openvino import _import_ov

        caps = [str(c) for c in _import_ov().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")]
    return {
        "cpu": cpu,
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "cores": {"os_cpu_count": os.cpu_count(), "affinity": affinity},
        "isa": {f: f in flags for f in ISA_FLAGS},
        "openvino_cpu_capabilities": caps,
        "versions": _versions(),
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "loadavg": loadavg(),
    }


def machine_line(m: dict[str, Any]) -> str:
    """One line for a table's caption: ``AMD EPYC, 2 CPUs; avx2, avx512f, ... (no amx_tile, ...)``.

    Example:
        >>> machine_line({"cpu": "X", "cores": {"os_cpu_count": 2}, "isa": {"avx2": True, "amx_tile": False}})
        'X, 2 CPUs; ISA: avx2 (no amx_tile)'
    """
    isa = m.get("isa") or {}
    have = [f for f, v in isa.items() if v]
    lack = [f for f, v in isa.items() if not v]
    cores = (m.get("cores") or {}).get("os_cpu_count", "?")
    return f"{m.get('cpu')}, {cores} CPUs; ISA: {', '.join(have) or 'none of the listed'}" + (
        f" (no {', '.join(lack)})" if lack else "")


def _cpuinfo() -> tuple[str, set[str]]:
    name, flags = "", set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, val = line.partition(":")
        key = key.strip().lower()
        if not name and key in ("model name", "hardware", "cpu model"):
            name = val.strip()
        elif not flags and key in ("flags", "features"):
            flags = set(val.split())
    return name or platform.processor() or platform.machine() or "unknown", flags


def _versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {"edge_mlla": __version__}
    for dist in ("openvino", "onnxruntime", "torch", "ultralytics", "numpy", "nncf", "onnx"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    try:
        import cv2

        out["opencv"] = cv2.__version__
    except ImportError:  # pragma: no cover - a hard dependency
        out["opencv"] = None
    return out


def loadavg() -> list[float] | None:
    """The 1/5/15-minute load averages (None where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None
