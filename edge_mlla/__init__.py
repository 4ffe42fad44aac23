"""edge_mlla: YOLO11 with Mamba-Like Linear Attention, from training to the edge.

``import edge_mlla`` is light: it pulls in numpy and OpenCV only. The training side
(``edge_mlla.nn``, ``edge_mlla.reparam``, ``edge_mlla.export``) imports torch and
Ultralytics when you import it; runtimes import their own library lazily.
"""

from __future__ import annotations

from edge_mlla._version import __version__
from edge_mlla.errors import EdgeMLLAError

__all__ = ["Detections", "Detector", "EdgeMLLAError", "__version__", "study"]


def __getattr__(name: str) -> object:  # PEP 562: Detector/Detections load on first use (numpy + OpenCV only)
    if name == "Detector":
        from edge_mlla.detector import Detector

        return Detector
    if name == "Detections":
        from edge_mlla.results import Detections

        return Detections
    if name == "study":  # the package, callable: edge_mlla.study(models, data, seeds, ...) (torch loads per run)
        import edge_mlla.study

        return edge_mlla.study
    raise AttributeError(f"module 'edge_mlla' has no attribute {name!r}")
