"""Fake peers of an ``Exchange``: the client side it answers and the sockets upstream.

``FakeDownstream`` stands where a transport (HTTP/1.1 or HTTP/2) stands: it records what
the exchange sends — the response head, body, end and trailers, aborts, 100-continue,
pause/resume of reading — and anything sent after the client left (``late``, which a
test expects empty). ``FakeSocket`` is the asyncio transport under a real
``UpstreamConnection``: it records the bytes written upstream and whether the
connection was closed or aborted, so the real codecs and pools run unchanged (and the
compiled data plane accepts them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from turnout.proxy.protocols.heads import Headers, RequestHead, ResponseHead

if TYPE_CHECKING:
    from turnout.proxy.exchange_core import ExchangeCore
    from turnout.proxy.streams import Exchange


class FakeDownstream:
    """Satisfies ``streams.Downstream``."""

    def __init__(self, client_ip: bytes = b"192.0.2.10", scheme: bytes = b"http") -> None:
        self.scheme = scheme
        self.client_ip = client_ip
        self.client_json = b'"' + client_ip + b'"'
        self.tls_listener: tuple[str, str] | None = None
        self.client_cert: bytes | None = None
        self.head: ResponseHead | None = None
        self.informational: list[ResponseHead] = []
        self.body = bytearray()
        self.ended = False
        self.trailers: Headers | None = None
        self.aborted = False
        self.continued = False
        self.tunnel = False
        self.raw = bytearray()
        self.paused = 0  # the PAUSE_* reasons reading is paused for (a bitmask)
        self.finished: bool | None = None  # keep-alive, once the exchange finished
        self.flushes = 0
        self.gone = False  # the client left (``leave``)
        self.late: list[str] = []  # what was sent after that: should stay empty

    # -- what a test asks -----------------------------------------------------------------

    @property
    def status(self) -> int:
        return self.head.status if self.head is not None else 0

    def header(self, name: bytes) -> bytes | None:
        """The first value of ``name`` in the response head."""
        if self.head is None:
            return None
        for key, value in self.head.headers:
            if key == name:
                return value
        return None

    def leave(self, exchange: Exchange) -> None:
        """The client closes its connection: the transport tells the exchange."""
        self.gone = True
        exchange.downstream_lost()

    # -- the Downstream interface ------------------------------------------------------------

    def _sent(self, what: str) -> bool:
        if self.gone:
            self.late.append(what)
            return False
        return True

    def send_response(self, head: ResponseHead, request: RequestHead) -> None:
        if not self._sent(f"response {head.status}"):
            return
        if head.status < 200 and head.status != 101:
            self.informational.append(head)
        else:
            self.head = head

    def send_body(self, data: bytes) -> None:
        if self._sent("body"):
            self.body += data

    def end_response(self, trailers: Headers | None) -> None:
        if self._sent("end"):
            self.ended = True
            self.trailers = trailers

    def send_continue(self) -> None:
        if self._sent("100-continue"):
            self.continued = True

    def abort(self) -> None:
        if self._sent("abort"):
            self.aborted = True

    def set_reading(self, reason: int, on: bool) -> None:
        if on:
            self.paused &= ~reason
        else:
            self.paused |= reason

    def exchange_finished(self, exchange: ExchangeCore, keep_alive: bool) -> None:
        self.finished = keep_alive

    def open_tunnel(self) -> None:
        if self._sent("tunnel"):
            self.tunnel = True

    def write_raw(self, data: bytes) -> None:
        if self._sent("raw"):
            self.raw += data

    def flush(self) -> None:
        self.flushes += 1


class FakeSocket:
    """An ``asyncio.Transport`` look-alike under an upstream connection."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closing = False
        self.aborted = False
        self.reading = True

    def write(self, data: bytes) -> None:
        self.written += data

    def writelines(self, chunks: list[bytes]) -> None:
        for data in chunks:
            self.written += data

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, key: str, default: Any = None) -> Any:
        return ("198.51.100.1", 80) if key == "peername" else default

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = self.aborted = True
