"""One upstream HTTP/1.1 connection: asyncio glue around ``Http1ClientConnection``.

While a request is in flight the connection has an *owner* (the stream it serves); the
codec reports parsed events straight to that owner, so no call layer is spent per
event. Between requests the connection sits in its endpoint's pool, ownerless; an EOF or
any unsolicited byte there marks it unusable and it is dropped (stale detection).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Protocol

from turnout.proxy.protocols.heads import Headers, ResponseHead
from turnout.proxy.protocols.http1_client import Http1ClientConnection

if TYPE_CHECKING:
    from turnout.proxy.upstream.pool import EndpointPool


log = logging.getLogger("turnout.proxy")


class UpstreamOwner(Protocol):
    def response_informational(self, head: ResponseHead) -> None: ...
    def response_head(self, head: ResponseHead) -> None: ...
    def response_body(self, data: bytes) -> None: ...
    def response_complete(self, trailers: Headers | None) -> None: ...
    def tunnel_data(self, data: bytes) -> None: ...
    def protocol_error(self, message: str) -> None: ...
    def upstream_lost(self, conn: UpstreamConnection, exc: BaseException | None) -> None: ...
    def upstream_writable(self, writable: bool) -> None: ...
    def flush(self) -> None: ...


class _Orphan:
    """Receives codec events while pooled: anything at all means the socket is unusable."""

    __slots__ = ("conn",)

    def __init__(self, conn: UpstreamConnection) -> None:
        self.conn = conn

    def response_informational(self, head: ResponseHead) -> None:
        self.conn.codec.reusable = False

    def response_head(self, head: ResponseHead) -> None:
        self.conn.codec.reusable = False

    def response_body(self, data: bytes) -> None:
        self.conn.codec.reusable = False

    def response_complete(self, trailers: Headers | None) -> None:
        self.conn.codec.reusable = False

    def tunnel_data(self, data: bytes) -> None:
        self.conn.codec.reusable = False

    def protocol_error(self, message: str) -> None:
        self.conn.codec.reusable = False


class UpstreamConnection:
    """An asyncio protocol by duck typing, like ``Http1Transport`` (native when compiled)."""

    __slots__ = (
        "_orphan",
        "closed",
        "codec",
        "idle_since",
        "owner",
        "pool",
        "reading_paused",
        "requests",
        "transport",
    )

    def __init__(self, pool: EndpointPool) -> None:
        self.pool = pool
        self._orphan = _Orphan(self)
        self.codec = Http1ClientConnection(self._orphan)
        self.owner: UpstreamOwner | None = None
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self.requests = 0  # requests sent on this connection; > 1 means it was reused
        self.reading_paused = False

    # -- the asyncio protocol interface ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        # Counted here, not when open() returns: a cancelled open() still gets
        # connection_lost (which uncounts it) for a socket that was connected.
        self.pool.open_count += 1

    def data_received(self, data: bytes) -> None:
        # The owner may release this connection while handling the data, so keep it.
        owner = self.owner
        try:
            self.codec.feed(data)
        except Exception:
            log.exception("internal error on an upstream connection")
            self.abort()
            if owner is not None:
                owner.protocol_error("internal gateway error")
        if owner is not None:
            owner.flush()
        elif not self.codec.reusable:
            self.close()

    def eof_received(self) -> bool:
        owner = self.owner
        self.codec.feed_eof()
        if owner is not None:
            owner.flush()
        return False  # let the transport close

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        self.codec.reusable = False
        owner = self.owner
        if owner is not None:
            if not self.codec.done:
                self.codec.feed_eof()
            if self.owner is not None:  # feed_eof may have completed and released us
                owner.upstream_lost(self, exc)
            owner.flush()
        self.pool.forget(self)

    def pause_writing(self) -> None:
        if self.owner is not None:
            self.owner.upstream_writable(False)

    def resume_writing(self) -> None:
        if self.owner is not None:
            self.owner.upstream_writable(True)

    # -- used by streams ------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        # close() and abort() clear ``reusable`` and connection_lost sets ``closed``.
        return self.codec.reusable and not self.closed

    def attach(self, owner: UpstreamOwner, head_request: bool) -> None:
        self.owner = owner
        self.codec.handler = owner
        self.codec.expect(head_request)
        self.requests += 1

    def detach(self) -> None:
        self.owner = None
        self.codec.handler = self._orphan
        if self.reading_paused:
            self.set_reading(True)

    def write(self, data: bytes) -> None:
        if not self.closed:
            self.transport.write(data)  # type: ignore[union-attr]  # set before attach

    def set_reading(self, on: bool) -> None:
        t = self.transport
        if t is None or self.closed:
            return
        if on and self.reading_paused:
            self.reading_paused = False
            t.resume_reading()
        elif not on and not self.reading_paused:
            self.reading_paused = True
            t.pause_reading()

    def close(self) -> None:
        self.codec.reusable = False
        t = self.transport
        if t is not None and not t.is_closing():
            t.close()

    def abort(self) -> None:
        self.codec.reusable = False
        t = self.transport
        if t is not None:
            t.abort()
