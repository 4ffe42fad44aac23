"""Teach an unmodified Ultralytics about C2MLLA and our model yamls.

Two small, idempotent patches, applied by ``import edge_mlla.nn``:

1. ``parse_model``: Ultralytics keeps the list of modules whose channels it width-scales and
   whose repeats it folds into an argument (``base_modules`` / ``repeat_modules``) as *locals* of
   ``parse_model``, so a new module cannot join them. We build C2MLLA rows as C2PSA rows (same
   signature ``(c1, c2, n, e)``, same scaling and repeat handling) and then swap each built C2PSA
   for a C2MLLA with the exact arguments Ultralytics computed.
2. ``yaml_model_load``: ``YOLO("yolo11n-mlla.yaml")`` finds our yamls in ``edge_mlla/nn/cfg``
   the same way Ultralytics finds its own (scale letter in the name).
"""

from __future__ import annotations

import copy
import logging
import re
from pathlib import Path

import yaml

from edge_mlla._env import setup_offline

setup_offline()

import ultralytics.engine.model as _engine_model  # noqa: E402
import ultralytics.nn.tasks as _tasks  # noqa: E402

from edge_mlla.errors import ConfigError  # noqa: E402
from edge_mlla.nn.modules import C2MLLA  # noqa: E402

LOGGER = logging.getLogger("edge_mlla")
CFG_DIR = Path(__file__).parent / "cfg"
OUR_MODULES = {"C2MLLA": C2MLLA}


def model_yamls() -> list[str]:
    """Names of the model yamls we ship (scale-free), e.g. ``yolo11-mlla.yaml``."""
    return sorted(p.name for p in CFG_DIR.glob("*.yaml"))


_SCALED = re.compile(r"^(?P<pre>.*?\d+)(?P<scale>[a-z])(?P<rest>-.+)$")


def resolve_model_yaml(name: str | Path) -> Path | None:
    """Our yaml for ``name`` (``yolo11n-mlla.yaml`` -> ``cfg/yolo11n-mlla.yaml``, scale kept in the name).

    Returns None for names that are not ours (Ultralytics then resolves them as usual).
    """
    p = Path(name)
    if p.suffix not in {".yaml", ".yml"} or p.exists():
        return None
    if (CFG_DIR / p.name).is_file():
        return CFG_DIR / p.name
    m = _SCALED.match(p.stem)
    if m and (CFG_DIR / f"{m['pre']}{m['rest']}{p.suffix}").is_file() and m["scale"] in "nslmx":
        return CFG_DIR / p.name  # does not exist itself: yaml_model_load unifies the scale letter away
    return None


def model_config(name: str | Path) -> dict:
    """The model dict Ultralytics builds from ``name`` (one of ours, with its scale letter), validated.

    Example:
        >>> model_config("yolo11n-mlla.yaml")["scale"]
        'n'
    """
    p = Path(name)
    m = _SCALED.match(p.stem)
    if m and (CFG_DIR / f"{m['pre']}{m['rest']}{p.suffix}").is_file():
        base = CFG_DIR / f"{m['pre']}{m['rest']}{p.suffix}"
        scales = (yaml.safe_load(base.read_text()) or {}).get("scales", {})
        if m["scale"] not in scales:
            raise ConfigError(
                f"unknown model scale {m['scale']!r} in {p.name!r}: expected one of {', '.join(scales)} "
                f"(e.g. {m['pre']}n{m['rest']}{p.suffix})"
            )
    ours = resolve_model_yaml(name)
    if ours is None and not p.is_file():
        raise ConfigError(f"{str(name)!r} is neither one of our model yamls {model_yamls()} nor an existing file")
    return _ORIG_YAML_LOAD(ours if ours is not None else p)


def _patched_parse_model(d, ch, verbose=True):
    d = copy.deepcopy(d)
    ours: dict[int, type] = {}
    for i, row in enumerate(d["backbone"] + d["head"]):
        if isinstance(row[2], str) and row[2] in OUR_MODULES:
            ours[i] = OUR_MODULES[row[2]]
            row[2] = "C2PSA"
    model, save = _ORIG_PARSE(d, ch, verbose=verbose and not ours)
    for i, cls in ours.items():
        psa = model[i]
        c1, c2 = psa.cv1.conv.in_channels, psa.cv2.conv.out_channels
        new = cls(c1, c2, n=len(psa.m), e=psa.c / c1)
        new.i, new.f = psa.i, psa.f
        new.type = f"{cls.__module__}.{cls.__name__}"
        new.np = sum(x.numel() for x in new.parameters())
        model[i] = new
    if ours and verbose:
        _log_layers(model)
    return model, save


def _log_layers(model) -> None:
    _tasks.LOGGER.info(f"\n{'':>3}{'from':>20}{'n':>3}{'params':>10}  {'module':<45}")
    for m in model:
        n = len(m.m) if isinstance(m, C2MLLA) else (len(m) if m.__class__.__name__ == "Sequential" else 1)
        _tasks.LOGGER.info(f"{m.i:>3}{str(m.f):>20}{n:>3}{m.np:10.0f}  {m.type:<45}")


def _patched_yaml_model_load(path):
    m = _SCALED.match(Path(path).stem)
    if m and (CFG_DIR / f"{m['pre']}{m['rest']}.yaml").is_file():
        return model_config(path)  # ours: validated scale letter
    return _ORIG_YAML_LOAD(path)


_ORIG_PARSE = getattr(_tasks.parse_model, "_edge_mlla_orig", _tasks.parse_model)
_ORIG_YAML_LOAD = getattr(_tasks.yaml_model_load, "_edge_mlla_orig", _tasks.yaml_model_load)
_patched_parse_model._edge_mlla_orig = _ORIG_PARSE
_patched_yaml_model_load._edge_mlla_orig = _ORIG_YAML_LOAD
_tasks.parse_model = _patched_parse_model
_tasks.yaml_model_load = _patched_yaml_model_load
_engine_model.yaml_model_load = _patched_yaml_model_load
_tasks.C2MLLA = C2MLLA  # so the name also resolves for code that looks it up in tasks' globals
