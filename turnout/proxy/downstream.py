"""``Downstream``: what an ``Exchange`` needs of the client side, whatever its HTTP version.

The HTTP/1.1 and HTTP/2 transports implement it (``transports/http1.py``,
``transports/http2.py``); ``turnout.testing.peers.FakeDownstream`` stands in for them in
tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Protocol

from turnout.proxy.protocols.heads import Headers, RequestHead, ResponseHead

if TYPE_CHECKING:
    from turnout.proxy.exchange_core import ExchangeCore

# Reasons a downstream stops reading (a bitmask, so independent causes do not collide).
PAUSE_UPSTREAM: Final = 1
PAUSE_BUFFER: Final = 2


class Downstream(Protocol):
    scheme: bytes
    client_ip: bytes
    client_json: bytes
    tls_listener: tuple[str, str] | None  # (gateway, listener) the TLS handshake chose
    client_cert: bytes | None  # x-forwarded-client-cert of a verified client certificate

    def send_response(self, head: ResponseHead, request: RequestHead) -> None: ...
    def send_body(self, data: bytes) -> None: ...
    def end_response(self, trailers: Headers | None) -> None: ...
    def send_continue(self) -> None: ...
    def abort(self) -> None: ...
    def set_reading(self, reason: int, on: bool) -> None: ...
    def exchange_finished(self, exchange: ExchangeCore, keep_alive: bool) -> None: ...
    def open_tunnel(self) -> None: ...
    def write_raw(self, data: bytes) -> None: ...
    def flush(self) -> None: ...
