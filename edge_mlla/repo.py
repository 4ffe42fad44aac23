"""Deprecated alias of :mod:`edge_mlla.serve.repository` (model repositories for Triton and OpenVINO Model
Server), kept for one release: import from ``edge_mlla.serve.repository`` (or ``edge_mlla.serve``) instead."""

from __future__ import annotations

import warnings

from edge_mlla.serve.repository import *  # noqa: F403
from edge_mlla.serve.repository import __all__  # noqa: F401

warnings.warn("edge_mlla.repo moved to edge_mlla.serve.repository; this alias goes in the next release",
              DeprecationWarning, stacklevel=2)  # fmt: skip
