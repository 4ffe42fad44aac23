"""Does a change to a detector pay on your data? Seed-controlled A/B training with a statistical verdict.

``edge_mlla.study(models, data, seeds, ...)`` trains every model (an *arm*) with every seed under one recipe, scores
each run with Ultralytics' validator, keeps per-image match statistics, and says for each pair of arms whether one is
better, worse, or not measurably different at this number of seeds, and how many seeds would settle it.

* :mod:`~edge_mlla.study.plan`: recipe, runs and their state on disk; :mod:`~edge_mlla.study.runner`: the queue;
  :mod:`~edge_mlla.study.worker`: one run (the only modules that import torch and Ultralytics, inside functions).
* :mod:`~edge_mlla.study.records`, :mod:`~edge_mlla.study.stats`, :mod:`~edge_mlla.study.verdict`,
  :mod:`~edge_mlla.study.report`: records, numbers, verdict and report, torch-free: a report rebuilds anywhere.

``edge_mlla.study`` is this package, and calling it runs :func:`~edge_mlla.study.runner.study`, so both
``edge_mlla.study(...)`` and ``from edge_mlla.study import study`` work.

Example:
    >>> import edge_mlla
    >>> rep = edge_mlla.study(["yolo11n.yaml", "yolo11n-mlla.yaml"], seeds="0-3", epochs=50)  # doctest: +SKIP
    >>> print(rep.summary())  # doctest: +SKIP
    >>> print(edge_mlla.study.report("runs/study").summary())  # doctest: +SKIP
"""

from __future__ import annotations

import sys
import types
from typing import Any

from edge_mlla.study.records import import_legacy
from edge_mlla.study.report import StudyReport, build_report, report
from edge_mlla.study.runner import study
from edge_mlla.study.verdict import Verdict

__all__ = ["StudyReport", "Verdict", "build_report", "import_legacy", "report", "study"]


class _CallableModule(types.ModuleType):
    """``edge_mlla.study(...)`` is :func:`study`: the package and the function share the name, and whichever one
    ``edge_mlla.study`` resolves to (the package, once imported) must do what the README says."""

    def __call__(self, *args: Any, **kwargs: Any) -> StudyReport:
        return study(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
