"""Small file-system helpers shared by export and quantize (torch-free)."""

from __future__ import annotations

import uuid
from pathlib import Path

from edge_mlla.errors import OutputNotWritableError


def ensure_writable_dir(folder: Path) -> Path:
    """Create ``folder`` if needed and prove it is writable (a probe file), else OutputNotWritableError."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputNotWritableError(f"output {folder} exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".edge_mlla_probe_{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise OutputNotWritableError(f"output folder {folder} is not writable: {e}") from e
    return folder
