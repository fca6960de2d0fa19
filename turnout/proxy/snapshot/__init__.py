"""Compile a validated ``ConfigSet`` into an immutable ``Snapshot`` of lookup tables.

``tables`` holds the compiled types a request reads, ``builder`` the ``SnapshotBuilder``
that fills them in, ``limits`` the rate-limit compilation and ``state`` the per-worker
backend state (breakers, outlier detectors) that survives reloads. The names most
callers need are re-exported here.
"""

from __future__ import annotations

from turnout.proxy.snapshot.builder import (
    PoolFactory,
    SnapshotBuilder,
    creation_time,
    gateway_bindings,
    pool_key,
    server_name,
    socket_key,
)
from turnout.proxy.snapshot.limits import LimitStores, compile_rate_limits
from turnout.proxy.snapshot.state import BackendState
from turnout.proxy.snapshot.tables import (
    ALPN,
    HASH_COOKIE,
    HASH_HEADER,
    HASH_NONE,
    HASH_QUERY,
    HASH_SOURCE_IP,
    BackendChoice,
    Cluster,
    L4Route,
    RouteAction,
    Snapshot,
)

__all__ = [
    "ALPN",
    "HASH_COOKIE",
    "HASH_HEADER",
    "HASH_NONE",
    "HASH_QUERY",
    "HASH_SOURCE_IP",
    "BackendChoice",
    "BackendState",
    "Cluster",
    "L4Route",
    "LimitStores",
    "PoolFactory",
    "RouteAction",
    "Snapshot",
    "SnapshotBuilder",
    "compile_rate_limits",
    "creation_time",
    "gateway_bindings",
    "pool_key",
    "server_name",
    "socket_key",
]
