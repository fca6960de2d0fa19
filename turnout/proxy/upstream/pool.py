"""Per-worker upstream connection pools, one per endpoint.

Idle connections are kept LIFO (the most recently used is the warmest and least likely
to have been closed by the upstream), bounded by ``max_idle``, and expired after
``idle_timeout`` by the runtime's sweeper, oldest first, without scanning the rest.
A connection the upstream closed while idle is removed the moment asyncio reports it
(``forget``); one that went bad unnoticed is caught by the single retry in the stream.
Pools outlive configuration snapshots, so a reload keeps warm connections.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import cast

from turnout.core.netaddr import Address
from turnout.observe.accesslog import json_string
from turnout.proxy.upstream.connection import UpstreamConnection
from turnout.proxy.upstream.endpoints import Resolver
from turnout.proxy.upstream.health import EndpointHealth


class EndpointPool:
    __slots__ = (
        "_loop",
        "_resolver",
        "address",
        "connect_errors",
        "health",
        "http2",
        "idle",
        "idle_timeout",
        "is_ip",
        "key",
        "key_json",
        "max_idle",
        "open_count",
        "server_hostname",
        "tls",
    )

    def __init__(
        self,
        address: Address,
        loop: asyncio.AbstractEventLoop,
        resolver: Resolver,
        max_idle: int = 128,
        idle_timeout: float = 60.0,
        tls: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        key: str | None = None,
        http2: bool = False,
    ) -> None:
        self.address = address
        self.key = key or str(address)
        # TLS to the endpoint: the context, and the name sent as SNI and verified
        self.tls = tls
        self.server_hostname = server_hostname
        self.http2 = http2  # h2c to the endpoint (Backend appProtocol h2c / grpc)
        self.key_json = json_string(self.key)  # for access-log lines
        self.is_ip = address.is_unix or address.is_ip
        self._loop = loop
        self._resolver = resolver
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self.idle: deque[UpstreamConnection] = deque()
        self.open_count = 0
        self.connect_errors = 0
        # Active-check verdicts, outlier ejections and in-flight requests of this address;
        # like the pool, it outlives snapshots.
        self.health = EndpointHealth(self.key)

    def take_idle(self) -> UpstreamConnection | None:
        idle = self.idle
        while idle:
            conn = idle.pop()
            if conn.reusable and not conn.closed:
                return conn
            conn.close()
        return None

    def release(self, conn: UpstreamConnection) -> None:
        """Return a connection after its response completed; keep it if it is healthy.

        Its idle time is counted from the sweeper tick that first sees it idle (cheaper
        than a clock read per request, and expiry only needs second precision).
        """
        conn.detach()
        if conn.reusable and not conn.closed and len(self.idle) < self.max_idle:
            conn.idle_since = 0.0
            self.idle.append(conn)
        else:
            conn.close()

    def forget(self, conn: UpstreamConnection) -> None:
        """Called from ``connection_lost``: the socket is gone."""
        self.open_count -= 1
        try:
            self.idle.remove(conn)
        except ValueError:
            pass

    def expire(self, now: float) -> None:
        idle = self.idle
        for conn in idle:
            if not conn.idle_since:
                conn.idle_since = now  # first seen idle by this tick
        limit = now - self.idle_timeout
        while idle and idle[0].idle_since < limit:
            idle.popleft().close()

    def close_idle(self) -> None:
        while self.idle:
            self.idle.pop().close()

    async def open(self) -> UpstreamConnection:
        """Open a new connection (resolving the name if needed). Raises ``OSError``."""
        addr = self.address
        loop = self._loop
        # UpstreamConnection is a protocol by duck typing (see its docstring).
        factory = cast("Callable[[], asyncio.Protocol]", partial(UpstreamConnection, self))
        proto: asyncio.Protocol
        tls = self.tls
        if addr.is_unix:
            _, proto = await loop.create_unix_connection(
                factory, addr.path, ssl=tls, server_hostname=self.server_hostname if tls else None
            )
        else:
            if self.is_ip:
                targets = [(addr.host, addr.port)]
            else:
                targets = await self._resolver.resolve(addr.host, addr.port)
            last: OSError | None = None
            for host, port in targets:
                try:
                    if tls is None:
                        _, proto = await loop.create_connection(factory, host, port)
                    else:
                        # The name, not the resolved address, is what the certificate names.
                        _, proto = await loop.create_connection(
                            factory, host, port, ssl=tls, server_hostname=self.server_hostname
                        )
                    break
                except OSError as exc:
                    last = exc
            else:
                assert last is not None
                raise last
        return cast(UpstreamConnection, proto)
