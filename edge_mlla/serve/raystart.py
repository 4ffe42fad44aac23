"""Starting or joining Ray for :func:`~edge_mlla.serve.run`.

A local instance is single-node and listens on loopback only. On Linux Ray takes the machine's routable address
as the node IP even when told ``127.0.0.1`` (``resolve_ip_for_localhost``), so its GCS, raylet, workers and
agents would listen on the network. Ray's single-node mode (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, the
default on macOS and Windows: https://github.com/ray-project/ray/issues/30770,
https://github.com/ray-project/ray/pull/32409) keeps the node IP on loopback, and this Ray binds its servers
to the node IP (https://github.com/ray-project/ray/pull/59852); the dashboard is off. The variable is set for
the processes ``ray.init`` starts, and Ray's already-imported copy of it for the call.

Imports inside functions: Ray loads only when it is started (start-up time of the CLI and of
``import edge_mlla.serve``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from edge_mlla.errors import ConfigError, ServeError
from edge_mlla.serve.app import import_ray

LOGGER = logging.getLogger("edge_mlla.serve")
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration (for the processes started meanwhile), then restore them."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _single_node_mode() -> Iterator[None]:
    from ray._private import ray_constants  # read by ray._private.services.get_node_ip_address at call time

    old = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        with environment(LOOPBACK_ENV):
            yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = old


def start_ray(address: str | None = None, num_cpus: float | None = None, env: Mapping[str, str] | None = None) -> bool:
    """Connect to ``address`` (a running cluster, or "auto") or start a local single-node Ray on loopback, without
    dashboard, its processes started with ``env`` added; returns True when this call started (and so owns) Ray."""
    ray, _ = import_ray()
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None  # Ray's own variable: join that cluster
    try:
        if address:
            probe_cluster(address)
            ray.init(address=address, log_to_driver=False)
            return False
        kwargs: dict[str, Any] = {"address": "local", "include_dashboard": False, "log_to_driver": False,
                                  "_node_ip_address": "127.0.0.1"}  # fmt: skip
        if num_cpus is not None:
            kwargs["num_cpus"] = num_cpus
        with _single_node_mode(), environment(env or {}):
            ray.init(**kwargs)
    except ConnectionError as e:
        raise ServeError(f"could not connect to the Ray cluster at {address!r}: {e}; start it with `ray start --head`") from e
    return True


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv4-mapped IPv6 too) is this machine's loopback.

    Example:
        >>> is_loopback("127.0.0.1"), is_loopback("::ffff:127.0.0.1"), is_loopback("0.0.0.0"), is_loopback("localhost")
        (True, True, False, True)
    """
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool((mapped or ip).is_loopback)


def keep_replica_grpc_local() -> bool:
    """In a Serve replica of a loopback-only Ray, make the replica's inter-deployment gRPC server listen on the
    node's loopback address: Serve binds it to ``[::]:0`` (all interfaces) with no setting to change that
    (https://github.com/ray-project/ray/pull/59908). Called by the replica before Serve starts that server;
    returns whether the bind address is now local."""
    import ray

    try:
        from ray.serve._private import replica
    except ImportError:  # pragma: no cover - another Serve layout
        return False
    ip = ray.util.get_node_ip_address()
    original = getattr(replica, "add_port_to_grpc_server", None)
    if original is None or not is_loopback(ip):
        return False
    if getattr(original, "edge_mlla_local", False):
        return True

    def bind_local(server: Any, address: str) -> Any:
        if address.startswith("[::]:"):
            address = f"{ip}:{address.rsplit(':', 1)[1]}"
        return original(server, address)

    bind_local.edge_mlla_local = True  # type: ignore[attr-defined]
    replica.add_port_to_grpc_server = bind_local
    return True


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


def is_local(address: str | None) -> bool:
    """Whether ``address`` names this machine (or no cluster at all)."""
    if not address or address in ("auto", "local"):
        return True
    host = address.split("://")[-1].rsplit(":", 1)[0]
    return host in ("127.0.0.1", "localhost", "::1", socket.gethostname())


def serve_running(ray: Any, serve: Any) -> bool:
    """Whether a Serve controller already runs in the connected cluster (``serve.status()`` would start one)."""
    if not ray.is_initialized():
        return False
    try:
        ray.get_actor("SERVE_CONTROLLER_ACTOR", namespace="serve")  # Serve's constants SERVE_CONTROLLER_NAME/NAMESPACE
        return True
    except ValueError:
        return False


def check_resources(ray: Any, replicas: int, need: float) -> None:
    """Fail now when the cluster cannot place the replicas (Serve would otherwise wait forever)."""
    total = float(ray.cluster_resources().get("CPU", 0))
    if replicas * need > total + 1e-9:
        raise ConfigError(
            f"{replicas} replicas x {need:g} CPUs = {replicas * need:g} CPUs, but the Ray cluster has {total:g}; "
            "lower --replicas/--threads/--num-cpus or add nodes (ray start --address=HEAD:6379)"
        )


__all__ = ["check_resources", "environment", "is_local", "is_loopback", "keep_replica_grpc_local", "probe_cluster", "serve_running", "start_ray"]
