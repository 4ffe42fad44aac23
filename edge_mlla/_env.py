"""The one place that makes the training/export stack run offline.

:func:`setup_offline` is idempotent and cheap; every module that is about to import
Ultralytics, OpenVINO's converter or NNCF calls it first. It

* sets ``YOLO_OFFLINE=1`` (stops Ultralytics' connectivity check, pip auto-installs
  and analytics),
* points ``YOLO_CONFIG_DIR`` and ``MPLCONFIGDIR`` at writable folders when they are
  unset or not writable,
* puts a local TTF at ``$YOLO_CONFIG_DIR/Ultralytics/Arial.ttf`` (and ``Arial.Unicode.ttf``):
  Ultralytics' settings dir is the ``Ultralytics`` sub-folder of ``YOLO_CONFIG_DIR``, and its
  ``check_font`` downloads a font there on every train/val when none is found, even offline
  (``YOLO_OFFLINE`` does not stop it: it calls ``is_url(check=True)``),
* opts out of OpenVINO / NNCF telemetry (the consent file ``~/intel/openvino_telemetry``
  and ``NNCF_CI``), unless ``EDGE_MLLA_ALLOW_TELEMETRY=1``.

User settings win: a variable that is already set to a usable value is left alone.

It also owns ``EDGE_MLLA_TOKEN`` (:data:`TOKEN_ENV`, :func:`env_token`): the bearer token that ``serve``, its
clients and the ``watch`` page fall back to when none is passed.

Imports inside functions: matplotlib (optional, slow to import) only to find its bundled font.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

LOGGER = logging.getLogger("edge_mlla")
_DONE: Path | None = None


def _writable_dir(candidate: Path) -> bool:
    try:
        candidate.mkdir(parents=True, exist_ok=True)
        probe = candidate / ".edge_mlla_write_test"
        probe.write_text("ok")
        probe.unlink()
        return True
    except OSError:
        return False


def _ensure_dir_var(name: str, default: Path) -> Path:
    current = os.environ.get(name)
    if current and _writable_dir(Path(current)):
        return Path(current)
    for cand in (default, Path(tempfile.gettempdir()) / "edge_mlla" / default.name):
        if _writable_dir(cand):
            os.environ[name] = str(cand)
            return cand
    raise OSError(f"no writable folder for {name}: tried {default} and the temp dir")


def _find_ttf() -> Path | None:
    try:  # matplotlib ships DejaVuSans with every wheel; Ultralytics depends on matplotlib
        import matplotlib

        p = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        if p.is_file():
            return p
    except Exception:  # pragma: no cover - matplotlib missing: fall through to system fonts
        pass
    for p in (Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),):
        if p.is_file():
            return p
    return None


def _opt_out_telemetry() -> None:
    if os.environ.get("EDGE_MLLA_ALLOW_TELEMETRY") == "1":
        return
    os.environ.setdefault("NNCF_CI", "1")  # NNCF swaps its telemetry for a stub when set
    # openvino_telemetry reads a consent file at ~/intel/openvino_telemetry: "0" means opted out.
    consent = Path.home() / "intel" / "openvino_telemetry"
    try:
        if not consent.is_file() or consent.read_text().strip() != "0":
            consent.parent.mkdir(parents=True, exist_ok=True)
            consent.write_text("0")
    except OSError:
        LOGGER.debug("could not write OpenVINO telemetry opt-out at %s", consent)


class _NewSettingsNotice(logging.Filter):
    """Drops Ultralytics' "Creating new Ultralytics Settings" notice (see :func:`setup_offline`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Creating new Ultralytics Settings")


def setup_offline() -> Path:
    """Make Ultralytics / OpenVINO / NNCF safe to use with no network; return Ultralytics' settings dir.

    Example:
        >>> from edge_mlla._env import setup_offline
        >>> cfg_dir = setup_offline()
        >>> (cfg_dir / "Arial.ttf").is_file()
        True
    """
    global _DONE
    if _DONE and (_DONE / "Arial.ttf").is_file():
        return _DONE
    os.environ["YOLO_OFFLINE"] = "1"
    base = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
    cfg = _ensure_dir_var("YOLO_CONFIG_DIR", base / "edge_mlla" / "ultralytics")
    _ensure_dir_var("MPLCONFIGDIR", base / "edge_mlla" / "matplotlib")
    ult_dirs = [cfg / "Ultralytics"]  # ultralytics.utils.get_user_config_dir(): $YOLO_CONFIG_DIR/Ultralytics
    ult = sys.modules.get("ultralytics.utils")
    if ult is not None and getattr(ult, "USER_CONFIG_DIR", None) is not None:  # imported before us: its own dir
        ult_dirs.insert(0, Path(ult.USER_CONFIG_DIR))
    ttf = _find_ttf()
    for d in ult_dirs:
        d.mkdir(parents=True, exist_ok=True)
        for name in ("Arial.ttf", "Arial.Unicode.ttf"):
            target = d / name
            if not target.is_file():
                if ttf is None:
                    LOGGER.warning("no local TTF font found; Ultralytics may try to download %s", name)
                    break
                shutil.copyfile(ttf, target)
    _opt_out_telemetry()
    # torch warns "No CUDA runtime is found, using CUDA_HOME=..." when NNCF imports its extension loader on a
    # CPU-only machine; we never build a CUDA extension, so it only misleads. A level the user set is kept.
    cpp = logging.getLogger("torch.utils.cpp_extension")
    if cpp.level == logging.NOTSET:
        cpp.setLevel(logging.ERROR)
    # Ultralytics announces the settings file it creates in our private config dir on first import ("Creating new
    # Ultralytics Settings ... yolo settings key=value"): advice about a file our users never edit. Only that
    # record is dropped; the logger and its other messages are left as they are.
    ul = logging.getLogger("ultralytics")
    if not any(isinstance(f, _NewSettingsNotice) for f in ul.filters):
        ul.addFilter(_NewSettingsNotice())
    _DONE = ult_dirs[0]
    return ult_dirs[0]


#: the environment variable holding the bearer token of ``serve`` and ``watch`` (and their clients)
TOKEN_ENV = "EDGE_MLLA_TOKEN"


def env_token(token: str | None = None) -> str | None:
    """``token`` when given (non-empty), else ``$EDGE_MLLA_TOKEN``, else None (an empty value counts as none)."""
    return token or os.environ.get(TOKEN_ENV) or None
