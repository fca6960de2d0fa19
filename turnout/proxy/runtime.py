"""The per-worker runtime: current snapshot, settings, pools, counters, and the sweeper.

``Runtime.snapshot`` is the one reference a request reads; ``install`` builds a new
snapshot and swaps it. Pools are keyed by endpoint address and outlive snapshots; pools
no snapshot uses any more are closed once idle.

Timeouts that need no precision (header read, keep-alive idle, connect, pooled
connection expiry, stream idle) are checked by one sweeper tick per second over the open
connections instead of a timer per request: arming and cancelling a ``call_later``
handle per request costs more than the whole routing step. Route timeouts, which users
set in milliseconds and conformance checks, use real ``call_later`` handles, armed only for
routes that have them.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Protocol

from turnout.config.configset import ConfigSet
from turnout.config.tls import UpstreamTLS
from turnout.core.ids import RequestIdGenerator
from turnout.core.netaddr import Address
from turnout.observe.accesslog import AccessLog
from turnout.observe.stats import WorkerStats
from turnout.observe.tracing import Tracer, TracingSettings
from turnout.proxy.cache.shared import RedisCache
from turnout.proxy.cache.zone import CacheStores
from turnout.proxy.compile import compile_snapshot
from turnout.proxy.filters.plugin_host import PluginHost
from turnout.proxy.protocols.http1 import Limits
from turnout.proxy.ratelimit.local import LocalStore
from turnout.proxy.ratelimit.redis_store import RedisStore
from turnout.proxy.snapshot.builder import pool_key, server_name
from turnout.proxy.snapshot.limits import LimitStores
from turnout.proxy.snapshot.state import BackendState
from turnout.proxy.snapshot.tables import Snapshot
from turnout.proxy.upstream.ejections import EjectionTable
from turnout.proxy.upstream.endpoints import Resolver
from turnout.proxy.upstream.pool import EndpointPool
from turnout.proxy.upstream.tls import ContextCache


@dataclass(slots=True)
class ProxySettings:
    header_timeout: float = 10.0  # receiving a request head
    idle_timeout: float = 60.0  # keep-alive between requests
    stream_idle_timeout: float = 300.0  # no byte either way while a request is in flight
    request_timeout: float = 0.0  # whole request, unless the route sets one; 0 = none
    drain_timeout: float = 10.0
    access_log_sample: float = 1.0  # share of requests below 400 logged (errors: all)
    dns_ttl: float = 30.0
    limits: Limits = field(default_factory=Limits)
    tunnel_dir: str = ""  # where `turnout connect` sockets live (config.sandboxes)
    tracing: TracingSettings = field(default_factory=TracingSettings)


class Sweepable(Protocol):
    def sweep(self, now: float) -> None: ...
    def drain(self) -> None: ...


class Runtime:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        settings: ProxySettings,
        access_log: AccessLog | None = None,
    ) -> None:
        self.loop = loop
        self.settings = settings
        self.access_log = access_log
        self.stats = WorkerStats()
        self.no_route = self.stats.cell("", "")
        self.ids = RequestIdGenerator()
        self.resolver = Resolver(ttl=settings.dns_ttl)
        self.pools: dict[str, EndpointPool] = {}
        self.tls_contexts = ContextCache()
        # Circuit breakers and outlier detectors by backend, kept across snapshots.
        self.backend_state = BackendState(self.stats)
        # Filter plugin instances, set up once and kept across revisions (plugin_host.py)
        self.plugins = PluginHost(self.stats)
        # Rate-limit stores: the host-wide table (shared with the other workers) and Redis
        self.limits = LimitStores(None, None)
        # Response caches by TrafficPolicy, and the Redis tier (proxy/cache)
        self.caches = CacheStores()
        # Verdicts of the supervisor's active health checks, by endpoint key; pools
        # created later start from them.
        self.active_health: dict[str, bool] = {}
        self.connections: set[Sweepable] = set()
        self.draining = False
        self.snapshot = Snapshot(0, {}, {})
        self.wall_offset = time.time() - time.perf_counter()
        # None when tracing is off: a request then pays one attribute check for it
        # (its export task belongs to the worker: ``observe.otlp``)
        self.tracer = Tracer(settings.tracing) if settings.tracing.endpoint else None
        self._ticker: asyncio.TimerHandle | None = None
        self._closed_waiter: asyncio.Future[None] | None = None

    # -- configuration -------------------------------------------------------------------

    def build(self, config: ConfigSet, revision: int) -> Snapshot:
        return compile_snapshot(
            config,
            revision,
            self.stats,
            self._pool_for,
            self.backend_state,
            limits=self.limits,
            tunnel_dir=self.settings.tunnel_dir,
            plugins=self.plugins,
            caches=self.caches,
        )

    def open_limit_stores(self, table_path: str, redis_url: str) -> None:
        """The host-wide rate-limit table (shared with the other workers) and Redis."""
        local = LocalStore.open(table_path) if table_path else LocalStore.private()
        redis = RedisStore(redis_url) if redis_url else None
        self.limits = LimitStores(local, redis)
        if redis_url:
            self.caches = CacheStores(RedisCache(redis_url))
            self.caches.start(self.loop)

    def open_ejection_table(self, path: str) -> None:
        """The host-wide outlier table (shared with the other workers); "" = per worker."""
        self.backend_state.ejections = EjectionTable.open(path) if path else None

    async def close_limit_stores(self) -> None:
        local, redis = self.limits.local, self.limits.redis
        self.limits = LimitStores(None, None)
        caches = self.caches
        self.caches = CacheStores()
        await caches.aclose()
        if redis is not None:
            await redis.aclose()
        if local is not None:
            local.close()

    def install(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def _pool_for(
        self,
        address: Address,
        max_idle: int,
        idle_timeout: float,
        tls: UpstreamTLS | None = None,
        http2: bool = False,
    ) -> EndpointPool:
        key = pool_key(address, tls, http2)
        pool = self.pools.get(key)
        if pool is None:
            context = self.tls_contexts.get(tls) if tls is not None else None
            pool = self.pools[key] = EndpointPool(
                address,
                self.loop,
                self.resolver,
                max_idle,
                idle_timeout,
                tls=context,
                server_hostname=server_name(address, tls),
                key=key,
                http2=http2,
            )
            verdict = self.active_health.get(str(address))  # checks are per address
            if verdict is not None:
                pool.health.set_active(verdict, time.perf_counter())
        else:
            pool.max_idle, pool.idle_timeout = max_idle, idle_timeout
        return pool

    def set_active_health(self, verdicts: dict[str, bool]) -> None:
        now = time.perf_counter()
        self.active_health.update(verdicts)
        # Verdicts are per address; a TLS or h2c pool's key carries a suffix.
        for pool in self.pools.values():
            ok = verdicts.get(str(pool.address))
            if ok is not None:
                pool.health.set_active(ok, now)

    # -- time ----------------------------------------------------------------------------

    def start(self) -> None:
        self._ticker = self.loop.call_later(1.0, self._tick)

    def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        for pool in self.pools.values():
            pool.close_idle()
        if self.access_log is not None:
            self.access_log.close()

    def _tick(self) -> None:
        loop = self.loop
        now = time.perf_counter()
        self.wall_offset = time.time() - now
        for conn in list(self.connections):
            conn.sweep(now)
        in_use = self.snapshot.pools
        for key, pool in list(self.pools.items()):
            pool.expire(now)
            if key not in in_use and not pool.idle and pool.open_count <= 0:
                del self.pools[key]
            elif key not in in_use:
                pool.close_idle()
        if self.access_log is not None:
            self.access_log.tick()
        self._ticker = loop.call_later(1.0, self._tick)

    def refused(self, status: int, client_json: bytes) -> None:
        """Count and log a request refused before it could be parsed (no route known)."""
        cell = self.no_route
        cell.codes[status // 100] += 1
        cell.buckets[0] += 1
        self.stats.refusal(status, b"malformed_request")
        log = self.access_log
        if log is not None:
            wall = time.time()
            log.record(
                (
                    wall,
                    0.0,
                    None,
                    None,
                    None,
                    status,
                    0,
                    0,
                    b"null",
                    b"null",
                    b"null",
                    None,
                    client_json,
                    None,
                    b"",  # routing key
                    None,  # consumer
                    0,
                    0,
                )
            )

    # -- shutdown ------------------------------------------------------------------------

    def drain(self) -> None:
        """Stop keep-alive: idle connections close now, busy ones after their response."""
        self.draining = True
        for conn in list(self.connections):
            conn.drain()

    def all_closed(self) -> asyncio.Future[None]:
        """A future resolved when the last connection closes (after ``drain``)."""
        if self._closed_waiter is None:
            self._closed_waiter = self.loop.create_future()
            if not self.connections:
                self._closed_waiter.set_result(None)
        return self._closed_waiter

    def connection_closed(self, conn: Sweepable) -> None:
        self.connections.discard(conn)
        waiter = self._closed_waiter
        if waiter is not None and not self.connections and not waiter.done():
            waiter.set_result(None)
