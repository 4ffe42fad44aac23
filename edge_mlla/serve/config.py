"""What a served app is made of: :class:`ServeConfig` (one options object for ``build_app`` and ``run``),
its validation, and the per-replica budget (threads, CPUs, backend). Light: no Ray, no torch.

Example:
    >>> cfg = ServeConfig("best.onnx", replicas=2, max_batch=4)
    >>> cfg.replicas, cfg.max_batch, cfg.precision is None
    (2, 4, True)

Imports inside functions: our modules detector, errors, runtimes pull in more than importing this module needs, so
they load when the function that uses them runs.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_mlla.errors import ConfigError

APP_NAME = "edge_mlla"
DEPLOYMENT_NAME = "Detector"
DEFAULT_PORT = 8000
DEFAULT_MAX_PIXELS = 36_000_000  # 8K UHD (7680x4320 = 33.2 MP) fits; a 50 MP upload does not
DEFAULT_MAX_BYTES = 32 * 1024 * 1024
DEFAULT_BODY_TIMEOUT_S = 30.0  # a 32 MiB upload at 10 Mbit/s takes ~27 s
DEFAULT_REQUEST_TIMEOUT_S = 120.0
DEFAULT_MAX_UPLOADS = 128  # bodies being read at once (per HTTP proxy, and per replica)
BATCHERS = ("serve", "greedy")
PIP = 'pip install "edge-mlla[serve]"'


@dataclass(frozen=True)
class ServeConfig:
    """Everything that defines a served Detector: the model, the replicas, batching and the HTTP limits.

    :func:`~edge_mlla.serve.build_app` and :func:`~edge_mlla.serve.run` take one (or its fields as keyword
    arguments); :meth:`validated` checks every value and fills the per-replica budget. Fields:

    * ``model``: ``.xml`` (or its folder), ``.onnx`` or ``.pt``; ``backend``, ``device``, ``precision``
      (``"f32"`` for exact parity with an f32 reference; default: the device's native precision), ``conf``,
      ``iou``, ``max_det`` and ``detector_options`` as for ``Detector``.
    * ``replicas``; ``threads`` (runtime threads per replica, default cores / replicas); ``num_cpus`` (what
      Ray reserves per replica, default ``threads``); ``max_ongoing_requests`` per replica.
    * ``max_batch``, ``batch_wait_ms``, ``batcher`` (``"serve"``: ``@serve.batch``; ``"greedy"``: a batch
      is formed when the replica is free).
    * HTTP limits: ``max_pixels`` and ``max_bytes`` per upload; ``body_timeout_s``: the deadline for
      reading a request body; ``request_timeout_s``: Serve's end-to-end timeout per request;
      ``max_uploads``: bodies read at once (then a new upload evicts a stalled or trickling one, or gets 503);
      ``token``: a bearer token required on every route but ``/health`` (never shown in ``repr`` or ``/info``).
    * ``ship_model``: send the model bytes to the replicas through Ray (clusters without shared storage).

    Example:
        >>> ServeConfig("m.onnx", threads=0).validated()
        Traceback (most recent call last):
        ...
        edge_mlla.errors.ConfigError: threads must be an integer >= 1, got 0
    """

    model: str
    backend: str = "auto"
    device: str | None = None
    precision: str | None = None
    conf: float = 0.25
    iou: float = 0.45
    max_det: int = 300
    replicas: int = 1
    max_batch: int = 8
    batch_wait_ms: float = 5.0
    batcher: str = "serve"
    threads: int | None = None
    num_cpus: float | None = None
    max_ongoing_requests: int | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = DEFAULT_MAX_BYTES
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    request_timeout_s: float | None = DEFAULT_REQUEST_TIMEOUT_S
    max_uploads: int = DEFAULT_MAX_UPLOADS
    token: str | None = field(default=None, repr=False)
    ship_model: bool = False
    detector_options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def make(cls, model: Any, **options: Any) -> ServeConfig:
        """A config from a model path (or a config to update) and keyword options; keywords that are not
        fields go to ``detector_options`` (passed to ``Detector``)."""
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in options.items() if k in names}
        extra = {k: v for k, v in options.items() if k not in names}
        if isinstance(model, ServeConfig):
            known["detector_options"] = {**model.detector_options, **known.get("detector_options", {}), **extra}
            return dataclasses.replace(model, **known)
        if not isinstance(model, (str, os.PathLike)):
            from edge_mlla.errors import InputTypeError

            raise InputTypeError(f"model must be a path to a .xml, .onnx or .pt file, got {type(model).__name__}")
        known["detector_options"] = {**known.get("detector_options", {}), **extra}
        return cls(model=str(model), **known)

    def validated(self) -> ServeConfig:
        """A copy with every value checked (:class:`ConfigError` naming the bad one) and ``threads`` /
        ``num_cpus`` filled in; ``backend`` and ``device`` are decided by :func:`replica_target`."""
        positive_int(self.replicas, "replicas")
        positive_int(self.max_batch, "max_batch")
        wait = self.batch_wait_ms
        if not isinstance(wait, (int, float)) or isinstance(wait, bool) or not (0 <= wait <= 10_000):
            raise ConfigError(f"batch_wait_ms must be a number of milliseconds in [0, 10000], got {wait!r}")
        if self.batcher not in BATCHERS:
            raise ConfigError(f"batcher must be one of {', '.join(BATCHERS)}, got {self.batcher!r}")
        for name in ("max_pixels", "max_bytes", "max_uploads"):
            positive_int(getattr(self, name), name)
        if self.max_ongoing_requests is not None:
            positive_int(self.max_ongoing_requests, "max_ongoing_requests")
        positive_seconds(self.body_timeout_s, "body_timeout_s")
        if self.request_timeout_s is not None:
            positive_seconds(self.request_timeout_s, "request_timeout_s")
        if self.token is not None and (not isinstance(self.token, str) or len(self.token) < 8 or not self.token.isprintable()):
            raise ConfigError("token must be a printable string of at least 8 characters")
        threads, num_cpus = replica_budget(self.replicas, self.threads, self.num_cpus)
        return dataclasses.replace(self, threads=threads, num_cpus=num_cpus, batch_wait_ms=float(wait),
                                   conf=float(self.conf), iou=float(self.iou), max_det=int(self.max_det))  # fmt: skip

    @property
    def ongoing_requests(self) -> int:
        """Requests a replica takes at once (Serve's ``max_ongoing_requests``)."""
        return self.max_ongoing_requests or max(16, 2 * self.max_batch)

    def limits(self) -> dict[str, Any]:
        """The serving settings ``/info`` shows (the token only as whether one is required)."""
        keys = ("max_batch", "batch_wait_ms", "batcher", "threads", "max_pixels", "max_bytes", "body_timeout_s",
                "request_timeout_s", "max_uploads")  # fmt: skip
        return {k: getattr(self, k) for k in keys} | {"token_required": self.token is not None}


def positive_int(value: Any, what: str, minimum: int = 1) -> int:
    """``value`` as an int, or :class:`ConfigError` naming ``what`` when it is not an integer >= ``minimum``.

    Example:
        >>> positive_int(3, "replicas")
        3
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def positive_seconds(value: Any, what: str) -> float:
    """``value`` as float seconds > 0, or :class:`ConfigError`.

    Example:
        >>> positive_seconds(2, "body_timeout_s")
        2.0
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{what} must be a positive number of seconds, got {value!r}")
    return float(value)


def thread_options(backend: str, threads: int | None, options: dict[str, Any]) -> dict[str, Any]:
    """Backend options that limit the runtime to ``threads`` threads (merged with the user's; every backend takes
    ``threads``).

    Example:
        >>> thread_options("openvino", 2, {})
        {'threads': 2}
    """
    opts = dict(options)
    if threads is not None:
        opts.setdefault("threads", int(threads))
    return opts


def replica_budget(replicas: int, threads: int | None = None, num_cpus: float | None = None) -> tuple[int, float]:
    """``(threads, num_cpus)`` per replica: threads default to this machine's cores / replicas (or
    ``num_cpus``), Ray CPUs default to the threads.

    Example:
        >>> replica_budget(2, threads=1)
        (1, 1.0)
        >>> replica_budget(1, threads=2, num_cpus=0.5)
        (2, 0.5)
    """
    replicas = positive_int(replicas, "replicas")
    if threads is None:
        threads = max(1, int(num_cpus) if num_cpus else (os.cpu_count() or 1) // replicas)
    threads = positive_int(threads, "threads")
    if num_cpus is None:
        num_cpus = float(threads)
    if isinstance(num_cpus, bool) or not isinstance(num_cpus, (int, float)) or num_cpus < 0:
        raise ConfigError(f"num_cpus must be a number >= 0, got {num_cpus!r}")
    return threads, float(num_cpus)


def replica_target(path: str | os.PathLike, backend: str = "auto", device: str | None = None) -> tuple[str, str | None]:
    """``(backend, device)`` the replicas run, decided once here: replicas reserve CPUs only (Ray gives them no
    GPU and hides the machine's), so ``auto`` takes the best CPU backend for the file and a ``.pt`` runs on the
    CPU, in the probe as in every replica. ``cuda`` is a :class:`ConfigError` (not supported by serve yet).

    Example:
        >>> replica_target("best.onnx", "onnxruntime")
        ('onnxruntime', None)
    """
    from edge_mlla.runtimes import select_backend

    if backend == "cuda" or str(device or "").lower().startswith(("cuda", "gpu")):
        raise ConfigError("serve runs its replicas on CPUs (Ray reserves no GPU for them), so backend 'cuda' and CUDA "
                          "devices are not supported there yet; on a GPU machine use Detector or StreamRunner")  # fmt: skip
    if backend == "auto":
        backend = select_backend(path, "auto", exclude=("cuda",)).name
    if backend == "torch" and device is None:
        device = "cpu"
    return backend, device


def probe(config: ServeConfig) -> str:
    """Load the model once in this process (a bad file or option fails here, not in N replicas); returns the
    precision it runs in, which every replica on this kind of CPU runs too."""
    from edge_mlla.detector import Detector

    det = Detector(config.model, backend=config.backend, device=config.device, precision=config.precision,
                   conf=config.conf, iou=config.iou, max_det=config.max_det,
                   **thread_options(config.backend, config.threads, config.detector_options))  # fmt: skip
    try:
        return det.precision
    finally:
        det.close()
