"""Building the Serve application: :func:`build_app` validates a :class:`~edge_mlla.serve.ServeConfig`, loads
the model once here, and binds :class:`~edge_mlla.serve.DetectorDeployment` with the replica options.

Imports inside functions: ray is optional or slow to import; our module serve.deployment pulls in more than
importing this module needs, so they load when the function that uses them runs.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

from edge_mlla.errors import MissingDependencyError, MissingFileError
from edge_mlla.modelfile import model_files
from edge_mlla.serve.config import DEPLOYMENT_NAME, PIP, ServeConfig, probe, replica_target

LOGGER = logging.getLogger("edge_mlla.serve")


def import_ray() -> tuple[Any, Any]:
    """``(ray, ray.serve)``, with Ray's usage stats off unless the user chose otherwise; a missing Ray is a
    :class:`MissingDependencyError` naming the pip command."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
        from ray import serve
    except ImportError as e:
        raise MissingDependencyError(f"Ray Serve is not installed ({e}); {PIP}") from e
    return ray, serve


def resolve_config(model: str | os.PathLike | ServeConfig, check: bool = True, **options: Any) -> ServeConfig:
    """The validated config the replicas get: values checked, backend and device decided for CPUs, the model
    path resolved and (``check``) loaded once here so a bad file fails now with one clear error."""
    cfg = ServeConfig.make(model, **options).validated()
    path = Path(cfg.model).expanduser()
    backend, device = replica_target(path, cfg.backend, cfg.device)
    if check or cfg.ship_model:
        if not path.exists():
            raise MissingFileError(f"model file not found: {path} (expected .xml, .onnx or .pt)")
        path = path.resolve()
        if cfg.ship_model and not path.is_file():
            path = model_files(path)[0]
    cfg = dataclasses.replace(cfg, model=str(path), backend=backend, device=device)
    if check:
        ran = probe(cfg)  # replicas report their own: a cluster's nodes may differ from this one
        LOGGER.info("model check: %s runs %s on this machine", path.name, ran)
    return cfg


def build_app(model: str | os.PathLike | ServeConfig, *, check: bool = True, name: str = DEPLOYMENT_NAME,
              **options: Any) -> Any:  # fmt: skip
    """The Serve application (``Deployment.bind(...)``) for ``model``; pass it to ``serve.run``.

    Args:
        model: ``.xml`` (or its folder), ``.onnx`` or ``.pt``, or a :class:`ServeConfig`.
        check: load the model once here first, so a bad file fails now with a clear error.
        name: the deployment's name.
        **options: :class:`ServeConfig` fields (``replicas``, ``max_batch``, ``batch_wait_ms``, ``batcher``,
            ``threads``, ``num_cpus``, ``backend``, ``precision``, ``max_bytes``, ...); any other keyword goes
            to ``Detector``. Batches pay off with dynamic-batch models (``export(..., dynamic=True)``); a fixed
            batch-1 model runs a batch image by image.

    Example:
        >>> from ray import serve                                           # doctest: +SKIP
        >>> app = build_app("best.xml", replicas=2, max_batch=4, threads=1, precision="f32")  # doctest: +SKIP
        >>> serve.run(app, name="edge_mlla")                               # doctest: +SKIP
    """
    _, serve = import_ray()
    cfg = resolve_config(model, check=check, **options)
    files = {p.name: p.read_bytes() for p in model_files(Path(cfg.model))} if cfg.ship_model else None
    dep = serve.deployment(
        _deployment_class(),
        name=name,
        num_replicas=cfg.replicas,
        ray_actor_options={"num_cpus": float(cfg.num_cpus or 0)},
        max_ongoing_requests=cfg.ongoing_requests,
    )
    LOGGER.info("app: %s x%d replicas, %s threads / %s CPUs each, max_batch %d, wait %.1f ms (%s batcher), precision %s",
                Path(cfg.model).name, cfg.replicas, cfg.threads, cfg.num_cpus, cfg.max_batch, cfg.batch_wait_ms,
                cfg.batcher, cfg.precision or "native")  # fmt: skip
    return dep.bind(cfg, files)


def _deployment_class() -> type:
    from edge_mlla.serve.deployment import DetectorDeployment

    return DetectorDeployment


__all__ = ["build_app", "import_ray", "resolve_config"]
