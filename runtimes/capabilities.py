"""The capability probe: what precisions a device computes natively, and the precision policy built on it.

The policy (DESIGN.md, "Precision"): a model runs by default in the fastest precision its device computes
natively — bf16 on CPUs with AMX or AVX-512 BF16, f32 on other CPUs, f16 on GPUs and NPUs — and what runs is
always reported. The probe asks OpenVINO for a device's ``OPTIMIZATION_CAPABILITIES``.

The probe can be told what to report, so that every branch of the policy runs on any machine: set
``EDGE_MLLA_CAPS`` to a comma-separated list of capability sets (:data:`CAPABILITY_SETS`), e.g.
``EDGE_MLLA_CAPS=avx512_bf16`` on an AVX2-only CPU makes the default precision bf16 there. The runtime may
still compute in f32 where the hardware has no bf16 (OpenVINO ignores a bf16 hint on such a CPU); backends
report the precision the compiled model really uses, so code and tests must hold either way. A set only
replaces the probe for its own device kind (``avx2`` says nothing about GPUs); a simulated GPU or NPU does not
make one appear: opening it still fails with "not present".

Example:
    >>> from edge_mlla.runtimes.capabilities import native_precision, simulated_capabilities
    >>> native_precision("CPU", CAPABILITY_SETS["avx512_bf16"][1]), native_precision("CPU", CAPABILITY_SETS["avx2"][1])
    ('bf16', 'f32')
    >>> simulated_capabilities("amx,gpu")["GPU"]
    ['FP32', 'FP16', 'INT8', 'BIN']

Imports inside functions: OpenVINO is asked only when no capabilities are given (simulated sets need none);
:mod:`edge_mlla.runtimes.openvino` imports this module, so importing it at the top would be a cycle.
"""

from __future__ import annotations

import os
from typing import Any

from edge_mlla.errors import ConfigError

CAPS_ENV = "EDGE_MLLA_CAPS"

# name -> (device kind, the OPTIMIZATION_CAPABILITIES OpenVINO reports for such a device; read off real machines:
# AVX2-only EPYC, AVX-512 BF16 EPYC (Zen 4), Sapphire Rapids (AMX); GPU/NPU from OpenVINO's device docs)
CAPABILITY_SETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "avx2": ("CPU", ("WINOGRAD", "FP32", "INT8", "BIN", "EXPORT_IMPORT")),
    "avx512_bf16": ("CPU", ("BF16", "WINOGRAD", "FP32", "INT8", "BIN", "EXPORT_IMPORT")),
    "amx": ("CPU", ("BF16", "FP16", "WINOGRAD", "FP32", "INT8", "BIN", "EXPORT_IMPORT")),
    "gpu": ("GPU", ("FP32", "FP16", "INT8", "BIN")),
    "npu": ("NPU", ()),
}


def _kind(device: str) -> str:
    return device.split(".")[0].split(":")[0].upper()


def native_precision(device: str, capabilities: list[str] | tuple[str, ...]) -> str:
    """The fastest precision ``device`` computes natively, from its ``OPTIMIZATION_CAPABILITIES``.

    Example:
        >>> native_precision("CPU", ["FP32", "INT8", "BF16"]), native_precision("CPU", ["FP32", "INT8"])
        ('bf16', 'f32')
        >>> native_precision("GPU.0", ["FP32", "FP16", "INT8"]), native_precision("NPU", [])
        ('f16', 'f16')
    """
    base = _kind(device)
    caps = {str(c).upper() for c in capabilities}
    if base == "CPU":
        return "bf16" if "BF16" in caps else "f32"
    if base in ("GPU", "NPU"):
        return "f16" if "FP16" in caps or base == "NPU" else "f32"
    return "f32"


def simulated_capabilities(value: str | None = None) -> dict[str, list[str]]:
    """The capabilities ``EDGE_MLLA_CAPS`` (or ``value``) tells the probe to report, by device kind; empty when unset.

    Example:
        >>> simulated_capabilities("avx2")
        {'CPU': ['WINOGRAD', 'FP32', 'INT8', 'BIN', 'EXPORT_IMPORT']}
        >>> simulated_capabilities("")
        {}
    """
    raw = os.environ.get(CAPS_ENV, "") if value is None else value
    out: dict[str, list[str]] = {}
    for name in (n.strip().lower() for n in raw.split(",")):
        if not name:
            continue
        if name not in CAPABILITY_SETS:
            raise ConfigError(f"{CAPS_ENV}={raw!r}: unknown capability set {name!r}; expected any of {', '.join(CAPABILITY_SETS)}")
        kind, caps = CAPABILITY_SETS[name]
        if kind in out:
            raise ConfigError(f"{CAPS_ENV}={raw!r} names two sets for {kind}; give one per device kind")
        out[kind] = list(caps)
    return out


def is_simulated(device: str) -> bool:
    """True when ``EDGE_MLLA_CAPS`` replaces the probe for ``device``'s kind."""
    return _kind(device) in simulated_capabilities()


def device_capabilities(core: Any, device: str) -> list[str]:
    """``OPTIMIZATION_CAPABILITIES`` of an OpenVINO device (``core`` is an ``openvino.Core``), or the simulated set."""
    sim = simulated_capabilities().get(_kind(device))
    if sim is not None:
        return sim
    return [str(c) for c in core.get_property(device, "OPTIMIZATION_CAPABILITIES")]


def default_precision(device: str = "CPU", core: Any = None) -> str:
    """The precision the policy picks for an OpenVINO ``device`` on this machine (probe or simulation).

    Example:
        >>> default_precision("CPU") in ("f32", "bf16")   # doctest: +SKIP
        True
    """
    if core is None and not is_simulated(device):
        from edge_mlla.runtimes.openvino import _import_ov

        core = _import_ov().Core()
    return native_precision(device, device_capabilities(core, device))


if __name__ == "__main__":  # `python -m edge_mlla.runtimes.capabilities --other`: the CPU set this host is not
    import sys

    if sys.argv[1:] == ["--other"]:
        print("avx2" if default_precision("CPU") == "bf16" else "avx512_bf16")
    elif not sys.argv[1:]:  # what the policy picks here, and whether it was simulated
        source = f"simulated by {CAPS_ENV}={os.environ[CAPS_ENV]}" if is_simulated("CPU") else "probed"
        print(f"CPU default precision: {default_precision('CPU')} ({source}; {CAPS_ENV} sets: {', '.join(CAPABILITY_SETS)})")
    else:
        print(f"usage: python -m edge_mlla.runtimes.capabilities [--other]   ({CAPS_ENV} sets: {', '.join(CAPABILITY_SETS)})")
        sys.exit(2)
