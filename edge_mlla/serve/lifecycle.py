"""Ray and Serve lifecycle: start (or join) Ray, start Serve's HTTP proxy (with the guard), deploy, wait, and stop
cleanly at any moment. :func:`run` is the one call; it returns a :class:`Server` (``url``, ``detector``,
``wait()``, ``shutdown()``).

A stop leaves no process of ours: a SIGTERM or Ctrl+C during start-up, deployment or serving ends in
``shutdown``, which deletes the app, stops the Ray this call started and then ends any of its processes still
alive (:class:`~edge_mlla.serve.processes.RayProcesses`).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_mlla.errors import ConfigError, ServeError
from edge_mlla.serve.app import build_app, import_ray
from edge_mlla.serve.config import APP_NAME, DEFAULT_PORT, ServeConfig, positive_int
from edge_mlla.serve.guard import CALLBACK, CALLBACK_ENV, LIMITS_ENV, GuardLimits
from edge_mlla.serve.processes import RayProcesses
from edge_mlla.serve.raystart import check_resources, is_local, is_loopback, probe_cluster, serve_running, start_ray

LOGGER = logging.getLogger("edge_mlla.serve")


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


def reachable_host(host: str) -> str:
    """The address other machines reach a server bound to ``host`` at (this machine's outward address for a
    wildcard bind such as ``0.0.0.0``)."""
    if host not in ("0.0.0.0", "::", ""):
        return host
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))  # no packet is sent: this only picks the outgoing interface
            return s.getsockname()[0]
    except OSError:
        return socket.gethostname()


@dataclass
class Server:
    """A running Serve app started by :func:`run` (``blocking=False``): its URL, a handle, shutdown.

    ``precision`` is what the replicas run; ``guarded`` whether the HTTP proxy runs the guard
    (:mod:`~edge_mlla.serve.guard`: the Serve instance was started by :func:`run`).

    Example:
        >>> with run("best.onnx", blocking=False, port=8123) as server:   # doctest: +SKIP
        ...     print(server.url, server.precision, server.detector(frame))
    """

    url: str
    app: str
    owns_ray: bool
    started_serve: bool
    precision: str | None = None
    guarded: bool = False
    processes: RayProcesses | None = field(default=None, repr=False)
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
        """Delete the app; stop Serve if :func:`run` started it, and Ray (all its processes) if it started Ray."""
        ray, serve = import_ray()
        try:
            if ray.is_initialized():
                app = self.app if self.owns_ray or not self.started_serve else None
                _stop(ray, serve, app, self.owns_ray, self.started_serve, self.processes)
        finally:
            if self.owns_ray and self.processes is not None:
                self.processes.reap()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def _stop(ray: Any, serve: Any, app: str | None, owns_ray: bool, started_serve: bool, procs: RayProcesses | None) -> None:
    """Delete ``app`` (its replicas finish what they hold), then stop what this process started. When it owns Ray,
    ``ray.shutdown()`` ends Serve with it: Serve's own ``serve.shutdown()`` ends in its controller killing itself
    under a call Ray retries forever, which prints 'graceful_shutdown failed ... infinite retries'."""
    try:
        if app is not None:
            serve.delete(app)
        elif started_serve and not owns_ray:
            serve.shutdown()
    except Exception as e:  # stopping after a failure: report the failure, not this
        LOGGER.debug("stopping Serve failed: %s", e)
    finally:
        if owns_ray:
            if procs is not None:
                procs.snapshot()  # the replicas of now, before their raylet goes
            ray.shutdown()


def sigterm_as_interrupt() -> Any:
    """Make SIGTERM raise ``KeyboardInterrupt`` in the main thread (so ``finally`` blocks shut Serve and Ray
    down) instead of Ray's handler, which exits without stopping everything; returns the previous handler, or
    None outside the main thread (where handlers cannot be set)."""

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, on_term)


def _warn_if_exposed(host: str, port: int, cfg: ServeConfig) -> None:
    if is_loopback(host):
        return
    auth = "every route but /health needs the token" if cfg.token else "no token: anyone who reaches it can use it (--token)"
    LOGGER.warning("listening on %s:%d: reachable from other machines over plain HTTP (no TLS); %s", host, port, auth)


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
    (``ray start --head`` on one machine, ``ray start --address=HEAD:6379`` on the others); without it a local
    single-node Ray is started on loopback only (no dashboard, usage stats off) with the HTTP guard in its proxy
    (:mod:`~edge_mlla.serve.guard`). ``host`` other than loopback logs a warning; set ``token`` to require a bearer
    token. ``options`` are :class:`ServeConfig` fields (``replicas``, ``max_batch``, ``threads``, ``backend``,
    ``precision``, ``max_bytes``, ``token``, ...). ``handle_sigterm`` (default: ``blocking``) turns SIGTERM into
    ``KeyboardInterrupt`` as soon as Ray is up; a stop at any point of the start-up leaves no process behind.

    Example:
        >>> server = run("best.xml", replicas=2, port=8000, max_batch=4, precision="f32", blocking=False)  # doctest: +SKIP
        >>> server.url, server.precision                                                    # doctest: +SKIP
        ('http://127.0.0.1:8000/', 'f32')
        >>> server.shutdown()                                                               # doctest: +SKIP
    """
    ray, serve = import_ray()
    if not isinstance(route_prefix, str) or not route_prefix.startswith("/"):
        raise ConfigError(f"route_prefix must start with '/', got {route_prefix!r}")
    address = address or os.environ.get("RAY_ADDRESS") or None
    if not ray.is_initialized() and address:
        probe_cluster(address)  # before the model probe: a wrong address fails in seconds
    if is_local(address) and not serve_running(ray, serve):
        check_port(host, port)
    cfg = ServeConfig.make(model, **options).validated()
    app = build_app(cfg)
    _warn_if_exposed(host, port, cfg)
    procs = None if ray.is_initialized() or address else RayProcesses().start()
    guard_env = {CALLBACK_ENV: CALLBACK, LIMITS_ENV: GuardLimits.of(cfg).to_env()}
    owns_ray = started_serve = False
    try:
        owns_ray = start_ray(address, ray_num_cpus, env=guard_env)
        if blocking if handle_sigterm is None else handle_sigterm:
            sigterm_as_interrupt()
        started_serve = not serve_running(ray, serve)
        check_resources(ray, cfg.replicas, float(cfg.num_cpus or 0))
        if started_serve:
            serve.start(http_options={"host": host, "port": int(port), "request_timeout_s": cfg.request_timeout_s})
        try:
            serve.run(app, name=name, route_prefix=route_prefix)
        except Exception as e:
            raise ServeError(f"deploying {Path(cfg.model).name} failed: {type(e).__name__}: {e}") from e
    except BaseException as e:
        _abort(ray, serve, name, owns_ray, started_serve, procs)
        if isinstance(e, SystemExit):  # Ray's SIGTERM handler during ray.init: a stop like any other
            raise KeyboardInterrupt from e
        raise
    if procs is not None:
        procs.stop_watching()
    url = f"http://{reachable_host(host)}:{int(port)}{route_prefix.rstrip('/')}/"
    server = Server(url=url, app=name, owns_ray=owns_ray, started_serve=started_serve, precision=_ask(serve, name),
                    guarded=guard_active(host, port, route_prefix), processes=procs)  # fmt: skip
    if owns_ray and not server.guarded:
        LOGGER.warning("the HTTP proxy runs without the edge_mlla guard: bodies reach the replicas unchecked by it")
    LOGGER.info("serving %s on %s (%d replicas, %s; GET %shealth)", Path(cfg.model).name, server.url, cfg.replicas,
                server.precision, server.url)  # fmt: skip
    if not blocking:
        return server
    server.wait()
    return server


def _abort(ray: Any, serve: Any, app: str, owns_ray: bool, started_serve: bool, procs: RayProcesses | None) -> None:
    """Undo a start that failed or was stopped half-way (even inside ``ray.init``): nothing it started may outlive
    it. ``procs`` is set when this call was starting its own Ray."""
    mine = owns_ray or procs is not None
    try:
        if ray.is_initialized():
            _stop(ray, serve, None if mine or started_serve else app, mine, started_serve and not mine, procs)
    except BaseException as e:  # a second signal while cleaning up: still reap below
        LOGGER.debug("clean-up after a failed start: %s", e)
    finally:
        if procs is not None:
            procs.reap()


def guard_active(host: str, port: int, route_prefix: str = "/", timeout_s: float = 10.0) -> bool:
    """Whether answers from the HTTP proxy at ``host:port`` went through the guard (its ``x-edge-mlla-guard``
    header on ``GET /health``)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1" if host in ("0.0.0.0", "::", "") else host, port, timeout=timeout_s)
    try:
        conn.request("GET", route_prefix.rstrip("/") + "/health")
        resp = conn.getresponse()
        resp.read()
        return resp.getheader("x-edge-mlla-guard") == "1"
    except OSError:
        return False
    finally:
        conn.close()


def _ask(serve: Any, app: str) -> str | None:
    """The precision a replica of ``app`` runs (asked through the handle), or None if it cannot say."""
    try:
        return serve.get_app_handle(app).info.remote().result(timeout_s=30)["model"]["precision"]
    except Exception as e:  # informative only
        LOGGER.debug("could not ask %s for its precision: %s", app, e)
        return None


__all__ = ["Server", "check_port", "guard_active", "is_loopback", "reachable_host", "run", "sigterm_as_interrupt"]
