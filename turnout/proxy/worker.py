"""A data-plane worker: serves listener sockets it is given, applies revisions, drains.

The worker never binds sockets itself: the supervisor binds each listener once and
passes the descriptor, so every worker accepts from the same kernel queue and a worker
that dies loses no queued connection. ``apply`` builds the new snapshot first and only
then swaps it and opens/closes servers, so a revision that fails to build leaves the
running one untouched.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, cast

from turnout.config.configset import ConfigSet
from turnout.observe.accesslog import AccessLog
from turnout.proxy.routing.tls import TlsTable, socket_context
from turnout.proxy.runtime import ProxySettings, Runtime
from turnout.proxy.snapshot import ALPN
from turnout.proxy.transports.http1 import Http1Transport
from turnout.proxy.transports.l4 import L4Listener, L4Transport
from turnout.proxy.transports.tls_gate import gated_tls_factory

if TYPE_CHECKING:
    from turnout.observe.otlp import TraceExporter

log = logging.getLogger("turnout.worker")


class Worker:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        settings: ProxySettings,
        access_log: AccessLog | None,
        *,
        limits_path: str = "",
        redis_url: str = "",
        ejections_path: str = "",
    ) -> None:
        self.loop = loop
        self.rt = Runtime(loop, settings, access_log)
        self.rt.open_limit_stores(limits_path, redis_url)
        self.rt.open_ejection_table(ejections_path)
        self.servers: dict[str, asyncio.Server] = {}
        self.tls_servers: set[str] = set()  # keys of the servers created with TLS
        self.client_cas: dict[str, bytes | None] = {}  # their client-certificate CAs
        self.tls13_servers: set[str] = set()  # those whose listeners all require TLS 1.3
        self.l4_servers: set[str] = set()  # keys of the servers piping L4 (docs/l4.md)
        self.l4_listeners: dict[str, L4Listener] = {}  # their connection counts
        self.sockets: dict[str, socket.socket] = {}
        self.revision = 0
        self.rt.start()
        # One export task per worker (the compiled runtime keeps only the span queue).
        self.exporter: TraceExporter | None = None
        if self.rt.tracer is not None:
            # Imported only when tracing is on: httpx and opentelemetry-proto cost a
            # worker ~10 MiB of RSS.
            from turnout.observe.otlp import TraceExporter

            self.exporter = TraceExporter(self.rt.tracer, loop)
            self.exporter.start()

    async def apply(
        self, config: ConfigSet, revision: int, new_sockets: dict[str, socket.socket]
    ) -> None:
        """Build, then swap. Raises if the snapshot cannot be built (nothing changes then)."""
        snapshot = self.rt.build(config, revision)
        # Filter plugins: set up the new, reconfigure the changed, close the unused
        # (raises, naming the FilterPlugin, when a setup fails: nothing changes then).
        await self.rt.plugins.commit()
        self.sockets.update(new_sockets)
        for key in snapshot.bindings:
            tls = key in snapshot.tls
            l4 = key in snapshot.l4
            client_ca = snapshot.tls_client_ca.get(key)
            tls13 = tls and snapshot.tls[key].tls13_only
            if key in self.servers and (
                (key in self.tls_servers) != tls
                or (key in self.l4_servers) != l4
                or self.client_cas.get(key) != client_ca
                or (key in self.tls13_servers) != tls13
            ):
                # The port switched between plain, TLS and L4, or its client-certificate
                # CAs or minimum TLS version changed (the server's context holds them, and
                # OpenSSL picks the version before SNI chooses a listener): a new server on the
                # socket (closing a server closes its socket, so the new one gets a dup).
                self.sockets[key] = self.sockets[key].dup()
                self.servers.pop(key).close()
            if key not in self.servers:
                sock = self.sockets.get(key)
                if sock is None:
                    raise RuntimeError(f"no listening socket was passed for {key}")
                if l4:
                    listener = self.l4_listeners.setdefault(key, L4Listener(key))
                    # L4Transport is a protocol by duck typing, like Http1Transport.
                    l4_factory = cast(
                        "Callable[[], asyncio.Protocol]",
                        partial(L4Transport, self.rt, key, listener),
                    )
                    self.servers[key] = await self.loop.create_server(
                        l4_factory, sock=sock, backlog=4096
                    )
                    self.l4_servers.add(key)
                    self.tls_servers.discard(key)
                    continue
                self.l4_servers.discard(key)
                context = None
                if tls:
                    context = socket_context(
                        partial(self._tls_table, key),
                        snapshot.tls_default[key],
                        ALPN,
                        client_ca,
                        tls13,
                    )
                    self.tls_servers.add(key)
                    self.client_cas[key] = client_ca
                    if tls13:
                        self.tls13_servers.add(key)
                    else:
                        self.tls13_servers.discard(key)
                else:
                    self.tls_servers.discard(key)
                # Http1Transport is a protocol by duck typing (see its docstring).
                factory = cast(
                    "Callable[[], asyncio.Protocol]",
                    partial(Http1Transport, self.rt, key, b"https" if tls else b"http"),
                )
                if context is not None:
                    # The loop's own TLS protocol behind a gate that sends TLS 1.0/1.1
                    # clients the protocol_version alert the loop would drop (tls_gate.py).
                    factory = cast(
                        "Callable[[], asyncio.Protocol]",
                        gated_tls_factory(
                            self.loop, factory, context, self.rt.settings.header_timeout
                        ),
                    )
                self.servers[key] = await self.loop.create_server(factory, sock=sock, backlog=4096)
        self.rt.install(snapshot)
        self.revision = revision
        for key in list(self.servers):
            if key not in snapshot.bindings:
                self.servers.pop(key).close()
                sock = self.sockets.pop(key, None)
                if sock is not None:
                    sock.close()
        settle_garbage_collector()

    def _tls_table(self, key: str) -> TlsTable | None:
        return self.rt.snapshot.tls.get(key)

    async def drain(self, grace: float) -> None:
        """Stop accepting, let in-flight requests finish for up to ``grace`` seconds."""
        for server in self.servers.values():
            server.close()
        self.rt.drain()
        if self.rt.connections:
            await asyncio.wait([self.rt.all_closed()], timeout=grace)
        for conn in list(self.rt.connections):
            transport = getattr(conn, "transport", None)
            if transport is not None:
                transport.abort()
        self.rt.stop()
        await self.rt.plugins.close_all()
        if self.exporter is not None:
            await self.exporter.close(min(grace, 2.0))
            self.exporter = None
        await self.rt.close_limit_stores()

    def stats(self) -> dict[str, object]:
        data = self.rt.stats.export()
        data["revision"] = self.revision
        data["cache"] = self.rt.caches.export()
        data["pools"] = {key: (len(p.idle), p.open_count) for key, p in self.rt.pools.items()}
        if self.rt.access_log is not None:
            data["access_log_dropped"] = self.rt.access_log.dropped
            data["log"] = self.rt.access_log.take_recent()
        tracer = self.rt.tracer
        if tracer is not None:
            data["trace_spans_exported"] = tracer.exported
            data["trace_spans_dropped"] = tracer.dropped
            data["trace_export_failures"] = tracer.export_failures
        return data


def settle_garbage_collector() -> None:
    """Move what a revision built out of the collector's sight.

    Snapshots, compiled configuration and imported modules are long-lived; a full
    collection would walk all of them again and again, a pause that shows in tail
    latency. Per-request objects are freed by reference counting (their cycles are
    broken when a request finishes), so the collector has little to find among them.
    Unfreezing first lets the collection free what the previous revision left behind.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
