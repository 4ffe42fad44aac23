"""Training-form MLLA modules and their registration with Ultralytics (imports torch and Ultralytics).

Example:
    >>> import edge_mlla.nn  # registers C2MLLA and our yamls with Ultralytics
    >>> from ultralytics import YOLO
    >>> model = YOLO("yolo11n-mlla.yaml")  # doctest: +SKIP
"""

from __future__ import annotations

from edge_mlla._env import setup_offline

setup_offline()  # before anything imports Ultralytics

from edge_mlla.nn.modules import (
    C2MLLA,
    LayerNorm2d,
    LinearAttention,
    MLLABlock,
    MLLABlockDeploy,
    convert_official_state_dict,
)
from edge_mlla.nn.rope import apply_rope, rope_angles
from edge_mlla.nn.register import CFG_DIR, model_config, model_yamls, resolve_model_yaml

__all__ = [
    "C2MLLA",
    "CFG_DIR",
    "LayerNorm2d",
    "LinearAttention",
    "MLLABlock",
    "MLLABlockDeploy",
    "apply_rope",
    "convert_official_state_dict",
    "model_config",
    "model_yamls",
    "resolve_model_yaml",
    "rope_angles",
]
