"""One upstream connection: asyncio glue around ``Http1ClientConnection`` (or the h2c codec).

The exchange sends a request through a protocol-neutral interface: ``send_request``
(the ``RequestHead``, the client address and scheme for the gateway's forwarding
headers, the body received so far and whether it is complete), then ``send_body`` for
each later body chunk, ``send_end`` with the trailers, and ``abort`` to reset. The
HTTP/1.1 codec renders and frames them (``protocols/http1_client.py``); the h2c codec
makes HEADERS and DATA frames of them directly. ``write`` sends raw bytes: a tunnel's
after ``101``, and a request mirror's HTTP/1.1 bytes.

While a request is in flight the connection has an *owner* (the stream it serves); the
codec reports parsed events straight to that owner, so no call layer is spent per
event. Between requests the connection sits in its endpoint's pool, ownerless; an EOF or
any unsolicited byte there marks it unusable and it is dropped (stale detection).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Protocol

from turnout.proxy.protocols.heads import Headers, RequestHead, ResponseHead
from turnout.proxy.protocols.http1_client import (
    Http1ClientConnection,
    body_bytes,
    end_bytes,
    request_bytes,
)
from turnout.proxy.protocols.http2_client import Http2ClientConnection

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
        self.conn.spoil()

    def response_head(self, head: ResponseHead) -> None:
        self.conn.spoil()

    def response_body(self, data: bytes) -> None:
        self.conn.spoil()

    def response_complete(self, trailers: Headers | None) -> None:
        self.conn.spoil()

    def tunnel_data(self, data: bytes) -> None:
        self.conn.spoil()

    def protocol_error(self, message: str) -> None:
        self.conn.spoil()


class UpstreamConnection:
    """An asyncio protocol by duck typing, like ``Http1Transport`` (native when compiled)."""

    __slots__ = (
        "_orphan",
        "chunked",
        "closed",
        "codec",
        "h2",
        "h2_blocked",
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
        # HTTP/2 to the endpoint (appProtocol h2c/grpc): this codec replaces ``codec``
        self.h2: Http2ClientConnection | None = (
            Http2ClientConnection(self._orphan) if pool.http2 else None
        )
        self.h2_blocked = False  # request bytes wait for HTTP/2 flow-control window
        self.owner: UpstreamOwner | None = None
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self.requests = 0  # requests sent on this connection; > 1 means it was reused
        self.reading_paused = False
        self.chunked = False  # the current request's body is chunked (HTTP/1.1 framing)

    # -- the asyncio protocol interface ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        # Counted here, not when open() returns: a cancelled open() still gets
        # connection_lost (which uncounts it) for a socket that was connected.
        self.pool.open_count += 1
        if self.h2 is not None:
            transport.write(self.h2.data_to_send())  # type: ignore[attr-defined]  # preface

    def data_received(self, data: bytes) -> None:
        # The owner may release this connection while handling the data, so keep it.
        owner = self.owner
        if self.h2 is not None:
            self._h2_received(data, owner)
            return
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
        if self.h2 is not None:
            self.h2.feed_eof()
        else:
            self.codec.feed_eof()
        if owner is not None:
            owner.flush()
        return False  # let the transport close

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        self.codec.reusable = False
        h2 = self.h2
        owner = self.owner
        if h2 is not None:
            h2.reusable = False
            if owner is not None and not h2.done:
                h2.feed_eof()
                owner.flush()
            self.pool.forget(self)
            return
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
        return self.reusable and not self.closed

    @property
    def reusable(self) -> bool:
        h2 = self.h2
        return h2.reusable if h2 is not None else self.codec.reusable

    @property
    def received_any(self) -> bool:
        h2 = self.h2
        return h2.received_any if h2 is not None else self.codec.received_any

    def attach(self, owner: UpstreamOwner, head_request: bool) -> None:
        self.owner = owner
        self.requests += 1
        h2 = self.h2
        if h2 is not None:
            h2.handler = owner
            h2.expect(head_request)
            return
        self.codec.handler = owner
        self.codec.expect(head_request)

    def detach(self) -> None:
        self.owner = None
        if self.h2 is not None:
            self.h2.handler = self._orphan
        else:
            self.codec.handler = self._orphan
        if self.reading_paused:
            self.set_reading(True)

    def send_request(
        self,
        head: RequestHead,
        client_ip: bytes,
        scheme: bytes,
        body: list[bytes] | None,
        end: bool,
        trailers: Headers | None,
    ) -> None:
        """The request head, the body so far, and its end when ``end``."""
        if self.closed:
            return
        self.chunked = head.chunked
        h2 = self.h2
        if h2 is None:
            data = request_bytes(head, client_ip, scheme, body, end, trailers)
            self.transport.write(data)  # type: ignore[union-attr]  # set before attach
            return
        h2.send_request(head, client_ip, scheme)
        if body:
            for part in body:
                h2.send_body(part)
        if end:
            h2.send_end()
        self._h2_flush(h2)

    def send_body(self, data: bytes) -> None:
        if self.closed:
            return
        h2 = self.h2
        if h2 is None:
            self.transport.write(body_bytes(self.chunked, data))  # type: ignore[union-attr]
            return
        h2.send_body(data)
        self._h2_flush(h2)

    def send_end(self, trailers: Headers | None) -> None:
        if self.closed:
            return
        h2 = self.h2
        if h2 is None:
            if self.chunked:
                self.transport.write(end_bytes(True, trailers))  # type: ignore[union-attr]
            return
        h2.send_end()
        self._h2_flush(h2)

    def _h2_flush(self, h2: Http2ClientConnection) -> None:
        self.transport.write(h2.data_to_send())  # type: ignore[union-attr]
        if not h2.writable and not self.h2_blocked and self.owner is not None:
            self.h2_blocked = True
            self.owner.upstream_writable(False)

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        h2 = self.h2
        if h2 is None:
            self.transport.write(data)  # type: ignore[union-attr]  # set before attach
            return
        # HTTP/1.1 bytes from a mirror, re-framed as HTTP/2 (see protocols.http2_client)
        h2.send(data)
        self._h2_flush(h2)

    def _h2_received(self, data: bytes, owner: UpstreamOwner | None) -> None:
        h2 = self.h2
        assert h2 is not None
        try:
            h2.feed(data)
        except Exception:
            log.exception("internal error on an upstream HTTP/2 connection")
            self.abort()
            if owner is not None:
                owner.protocol_error("internal gateway error")
        out = h2.data_to_send()
        if out and not self.closed:
            self.transport.write(out)  # type: ignore[union-attr]
        if self.h2_blocked and h2.writable:
            self.h2_blocked = False
            if self.owner is not None:
                self.owner.upstream_writable(True)
        if owner is not None:
            owner.flush()
        elif not h2.reusable:
            self.close()

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

    def spoil(self) -> None:
        """Never reuse this connection (it misbehaved, or it is closing)."""
        self.codec.reusable = False
        if self.h2 is not None:
            self.h2.reusable = False

    def close(self) -> None:
        self.spoil()
        t = self.transport
        if t is not None and not t.is_closing():
            t.close()

    def abort(self) -> None:
        self.spoil()
        t = self.transport
        if t is None:
            return
        h2 = self.h2
        if h2 is not None and not self.closed:
            # Cancel the call the way HTTP/2 says (RST_STREAM CANCEL), then close: the
            # upstream learns why rather than seeing the connection drop.
            out = h2.cancel()
            if out:
                t.write(out)
            t.close()
            return
        t.abort()
