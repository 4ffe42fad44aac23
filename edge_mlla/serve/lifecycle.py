"""Ray and Serve lifecycle: start (or join) Ray, start Serve's HTTP proxy, deploy, wait, and stop cleanly.

:func:`run` is the one call; it returns a :class:`Server` (``url``, ``detector``, ``wait()``, ``shutdown()``).
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_mlla.errors import ConfigError, ServeError
from edge_mlla.serve.app import build_app, import_ray
from edge_mlla.serve.config import APP_NAME, DEFAULT_PORT, ServeConfig, positive_int

LOGGER = logging.getLogger("edge_mlla.serve")


# ============================================================================== Ray start
def start_ray(address: str | None = None, num_cpus: float | None = None) -> bool:
    """Connect to ``address`` (a running cluster, or "auto") or start a local single-node Ray without
    dashboard; returns True when this call started (and so owns) the Ray instance."""
    ray, _ = import_ray()
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    address = address or os.environ.get("RAY_ADDRESS") or None  # Ray's own variable: join that cluster
    if address:
        probe_cluster(address)
        kwargs = {"address": address, "log_to_driver": False}
    else:  # "local": a new instance even if a stale or foreign cluster is recorded in /tmp/ray
        kwargs["address"] = "local"
        kwargs["_node_ip_address"] = "127.0.0.1"
        if num_cpus is not None:
            kwargs["num_cpus"] = num_cpus
    try:
        ray.init(**kwargs)
    except ConnectionError as e:
        raise ServeError(f"could not connect to the Ray cluster at {address!r}: {e}; start it with `ray start --head`") from e
    return not address


def probe_cluster(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast (Ray itself retries for minutes) when nothing listens at a cluster address."""
    target = address
    if address == "auto":
        recorded = Path(tempfile.gettempdir(), "ray", "ray_current_cluster")  # where `ray start` records the head
        if not recorded.is_file():
            raise ServeError("address='auto' but no Ray cluster was started on this machine; run `ray start --head` "
                             "first, or give the head's HOST:PORT")  # fmt: skip
        target = recorded.read_text().strip()
    hostport = target.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"Ray address must be HOST:PORT (e.g. 10.0.0.5:6379) or 'auto', got {address!r}")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as e:
        raise ServeError(f"no Ray cluster answers at {hostport} ({e}); start the head with `ray start --head --port={port}`"
                         + (" (the cluster recorded in /tmp/ray is gone)" if address == "auto" else "")) from e


def check_port(host: str, port: int) -> None:
    """Raise :class:`ServeError` when ``host:port`` cannot be bound here (in use, or not our address).

    Example:
        >>> import socket
        >>> s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); port = s.getsockname()[1]
        >>> check_port("127.0.0.1", port)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        edge_mlla.errors.ServeError: cannot listen on 127.0.0.1:... (port in use?): [Errno 98] Address already in use; pick another --port
        >>> s.close()
    """
    port = positive_int(port, "port")
    if port > 65535:
        raise ConfigError(f"port must be in 1..65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ConfigError(f"host {host!r} does not resolve ({e}); use an address such as 127.0.0.1 or 0.0.0.0") from e
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        if os.name == "posix":  # as uvicorn does: TIME_WAIT leftovers of a previous server do not block it
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as e:
            raise ServeError(f"cannot listen on {host}:{port} (port in use?): {e}; pick another --port") from e


def _is_local(address: str | None) -> bool:
    if not address or address in ("auto", "local"):
        return True
    host = address.split("://")[-1].rsplit(":", 1)[0]
    return host in ("127.0.0.1", "localhost", "::1", socket.gethostname())


def _serve_running(ray: Any, serve: Any) -> bool:
    """Whether a Serve controller already runs in the connected cluster (``serve.status()`` would start one)."""
    if not ray.is_initialized():
        return False
    try:
        ray.get_actor("SERVE_CONTROLLER_ACTOR", namespace="serve")  # Serve's constants SERVE_CONTROLLER_NAME/NAMESPACE
        return True
    except ValueError:
        return False


def _check_resources(ray: Any, replicas: int, need: float) -> None:
    """Fail now when the cluster cannot place the replicas (Serve would otherwise wait forever)."""
    total = float(ray.cluster_resources().get("CPU", 0))
    if replicas * need > total + 1e-9:
        raise ConfigError(
            f"{replicas} replicas x {need:g} CPUs = {replicas * need:g} CPUs, but the Ray cluster has {total:g}; "
            "lower --replicas/--threads/--num-cpus or add nodes (ray start --address=HEAD:6379)"
        )


def _replica_precision(serve: Any, app: str) -> str | None:
    """The precision a replica of ``app`` runs (asked through the handle), or None if it cannot say."""
    try:
        return serve.get_app_handle(app).info.remote().result(timeout_s=30)["model"]["precision"]
    except Exception as e:  # informative only
        LOGGER.debug("could not ask %s for its precision: %s", app, e)
        return None


def _quiet_shutdown(ray: Any, serve: Any) -> None:
    try:
        serve.shutdown()
    except Exception as e:  # shutting down after a failure: report the failure, not this
        LOGGER.debug("serve.shutdown failed: %s", e)
    ray.shutdown()


# ============================================================================== the running server
@dataclass
class Server:
    """A running Serve app started by :func:`run` (``blocking=False``): its URL, a handle, shutdown.

    Example:
        >>> with run("best.onnx", blocking=False, port=8123) as server:   # doctest: +SKIP
        ...     print(server.url, server.detector(frame))
    """

    url: str
    app: str
    owns_ray: bool
    started_serve: bool
    precision: str | None = None  # what the replicas run (bf16 on CPUs with BF16 unless precision="f32" was asked)
    _detector: Any = field(default=None, repr=False)

    @property
    def detector(self) -> Any:
        """A :class:`~edge_mlla.serve.RemoteDetector` (handle API) for this app."""
        if self._detector is None:
            from edge_mlla.serve.client import RemoteDetector

            self._detector = RemoteDetector(self.app)
        return self._detector

    def wait(self) -> None:
        """Serve until Ctrl+C or SIGTERM (as ``docker stop`` and systemd send it), then :meth:`shutdown`.

        Example:
            >>> run("best.xml", blocking=False).wait()   # doctest: +SKIP
        """
        import signal

        previous = sigterm_as_interrupt()
        try:
            while True:
                time.sleep(1.0)
        except KeyboardInterrupt:
            LOGGER.info("shutting down %s", self.app)
        finally:
            try:
                self.shutdown()
            finally:
                if previous is not None:
                    signal.signal(signal.SIGTERM, previous)

    def shutdown(self) -> None:
        """Delete the app; shut Serve down if :func:`run` started it, and Ray if it started Ray."""
        ray, serve = import_ray()
        if not ray.is_initialized():
            return
        try:
            if self.started_serve:
                serve.shutdown()
            else:
                serve.delete(self.app)
        finally:
            if self.owns_ray:
                ray.shutdown()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def sigterm_as_interrupt() -> Any:
    """Make SIGTERM raise ``KeyboardInterrupt`` in the main thread (so ``finally`` blocks shut Serve and Ray
    down) instead of Ray's handler, which dumps stacks and aborts; returns the previous handler, or None
    outside the main thread (where handlers cannot be set)."""
    import signal

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, on_term)


def run(
    model: str | os.PathLike | ServeConfig,
    *,
    port: int = DEFAULT_PORT,
    host: str = "127.0.0.1",
    address: str | None = None,
    name: str = APP_NAME,
    route_prefix: str = "/",
    blocking: bool = True,
    ray_num_cpus: float | None = None,
    handle_sigterm: bool | None = None,
    **options: Any,
) -> Server:
    """Start (or join) Ray, start Serve's HTTP proxy on ``host:port``, deploy ``model`` and serve it.

    ``blocking=True`` serves until Ctrl+C or SIGTERM and then shuts down; ``blocking=False`` returns a
    :class:`Server` at once (call ``server.wait()`` or ``server.shutdown()``). ``address`` joins a running cluster
    (``ray start --head`` on one machine, ``ray start --address=HEAD:6379`` on the others); without
    it a local single-node Ray is started (no dashboard, usage stats off). ``options`` are
    :class:`ServeConfig` fields (``replicas``, ``max_batch``, ``threads``, ``backend``, ``precision``, ...; see
    :func:`build_app`). ``handle_sigterm`` (default: ``blocking``) turns SIGTERM into ``KeyboardInterrupt`` from the
    moment Ray is up, so a stop during start-up also cleans up (see :func:`sigterm_as_interrupt`).

    Example:
        >>> server = run("best.xml", replicas=2, port=8000, max_batch=4, blocking=False)  # doctest: +SKIP
        >>> server.url                                                                     # doctest: +SKIP
        'http://127.0.0.1:8000/'
        >>> server.shutdown()                                                               # doctest: +SKIP
    """
    ray, serve = import_ray()
    if not isinstance(route_prefix, str) or not route_prefix.startswith("/"):
        raise ConfigError(f"route_prefix must start with '/', got {route_prefix!r}")
    address = address or os.environ.get("RAY_ADDRESS") or None
    if not ray.is_initialized() and address:
        probe_cluster(address)  # before the model probe: a wrong address fails in seconds
    if _is_local(address) and not _serve_running(ray, serve):
        check_port(host, port)
    cfg = ServeConfig.make(model, **options)
    app = build_app(cfg)
    owns_ray = start_ray(address, ray_num_cpus)
    if blocking if handle_sigterm is None else handle_sigterm:
        sigterm_as_interrupt()
    try:
        started_serve = not _serve_running(ray, serve)
        checked = cfg.validated()
        _check_resources(ray, checked.replicas, float(checked.num_cpus or 0))
        if started_serve:
            serve.start(http_options={"host": host, "port": int(port)})
        try:
            serve.run(app, name=name, route_prefix=route_prefix)
        except Exception as e:
            raise ServeError(f"deploying {Path(cfg.model).name} failed: {type(e).__name__}: {e}") from e
    except BaseException:
        if owns_ray:
            _quiet_shutdown(ray, serve)
        raise
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    server = Server(url=f"http://{shown_host}:{int(port)}{route_prefix.rstrip('/')}/", app=name, owns_ray=owns_ray,
                    started_serve=started_serve, precision=_replica_precision(serve, name))  # fmt: skip
    LOGGER.info("serving %s on %s (%d replicas; GET %shealth)", Path(cfg.model).name, server.url, checked.replicas, server.url)
    if not blocking:
        return server
    server.wait()
    return server


__all__ = ["Server", "check_port", "probe_cluster", "run", "sigterm_as_interrupt", "start_ray"]
