"""What both client transports do when a connection arrives: who is it, and may it stay.

The peer address (for logs and limits), and on TLS sockets the listener the handshake
chose and the verified client certificate (``routing.tls.handshake_identity``). The
connection is registered with the runtime and counted either way; one whose listener
requires a client certificate it did not present (or TLS 1.3 it did not negotiate) is
then aborted (``None``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from turnout.observe.accesslog import json_string
from turnout.proxy.routing.tls import ListenerId, handshake_identity
from turnout.proxy.runtime import Runtime, Sweepable

Admitted = tuple[bytes, bytes, ListenerId | None, bytes | None]


def admit(
    rt: Runtime, conn: Sweepable, key: str, scheme: bytes, transport: asyncio.BaseTransport
) -> Admitted | None:
    """``(client ip, client ip as JSON, TLS listener, client certificate)``, or None
    when the connection was refused (already aborted)."""
    client_ip, client_json = b"-", b'"-"'
    peer: Any = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and peer:
        ip = str(peer[0])
        client_ip, client_json = ip.encode(), json_string(ip)
    listener: ListenerId | None = None
    cert: bytes | None = None
    refuse = False
    if scheme == b"https":
        listener, cert, refuse = handshake_identity(
            rt.snapshot.tls.get(key), transport.get_extra_info("ssl_object")
        )
    rt.connections.add(conn)
    rt.stats.active_connections += 1
    rt.stats.connections_total += 1
    if refuse:  # the listener requires a client certificate or TLS 1.3: counted, closed
        rt.stats.protocol_errors += 1
        transport.abort()  # type: ignore[attr-defined]  # a stream transport
        return None
    return client_ip, client_json, listener, cert
