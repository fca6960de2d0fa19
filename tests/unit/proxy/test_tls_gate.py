"""``TlsVersionGate``: a TLS 1.0/1.1 ClientHello gets the alert, anything else is handed
to the TLS protocol with every byte, however the bytes arrive."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from turnout.proxy.transports.tls_gate import TlsVersionGate, refused_version


def hello(version: bytes) -> bytes:
    body = version + bytes(32) + b"\x00\x00\x02\xc0\x2f\x01\x00"
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + len(handshake).to_bytes(2, "big") + handshake


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False
        self.protocol: Any = None

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closed = True

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol


class FakeTls:
    """A BufferedProtocol handing out small buffers, as a TLS protocol may."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.made = False
        self._buf = bytearray(7)

    def connection_made(self, transport: Any) -> None:
        self.made = True

    def get_buffer(self, n: int) -> memoryview:
        return memoryview(self._buf)

    def buffer_updated(self, n: int) -> None:
        self.received += self._buf[:n]


def run(*chunks: bytes) -> tuple[FakeTransport, list[FakeTls]]:
    made: list[FakeTls] = []

    def make_tls() -> FakeTls:
        made.append(FakeTls())
        return made[-1]

    async def go() -> FakeTransport:
        gate = TlsVersionGate(make_tls, 30.0)
        transport = FakeTransport()
        gate.connection_made(transport)  # type: ignore[arg-type]
        for chunk in chunks:
            if isinstance(transport.protocol, FakeTls):  # handed over: the socket feeds it
                buf = transport.protocol.get_buffer(len(chunk))
                for i in range(0, len(chunk), len(buf)):
                    piece = chunk[i : i + len(buf)]
                    buf[: len(piece)] = piece
                    transport.protocol.buffer_updated(len(piece))
            else:
                gate.data_received(chunk)
        gate.connection_lost(None)  # cancels the timer
        return transport

    return asyncio.run(go()), made


@pytest.mark.parametrize(
    ("version", "refused"),
    [(b"\x03\x01", True), (b"\x03\x02", True), (b"\x03\x03", False), (b"\x03\x00", True)],
)
def test_refused_versions(version: bytes, refused: bool) -> None:
    assert refused_version(hello(version)) is refused


def test_the_alert_waits_for_the_end_of_the_refused_record() -> None:
    """Closing with unread bytes makes the kernel send a reset that can destroy the alert:
    the gate reads the whole ClientHello record first."""
    raw = hello(b"\x03\x02")
    transport, _ = run(raw[:20])
    assert transport.written == [] and not transport.closed
    transport, _ = run(raw[:20], raw[20:])
    assert transport.written == [b"\x15\x03\x01\x00\x02\x02\x46"] and transport.closed


def test_a_tls11_hello_gets_the_alert_even_in_pieces() -> None:
    raw = hello(b"\x03\x02")
    transport, made = run(*[raw[i : i + 1] for i in range(len(raw))])
    assert transport.written == [b"\x15\x03\x01\x00\x02\x02\x46"]
    assert transport.closed and made == []


@pytest.mark.parametrize("piece", [1, 4, 11, 1000])
def test_a_tls12_hello_is_handed_over_with_every_byte(piece: int) -> None:
    raw = hello(b"\x03\x03") + b"more records"
    transport, made = run(*[raw[i : i + piece] for i in range(0, len(raw), piece)])
    assert transport.written == [] and not transport.closed
    (tls,) = made
    assert transport.protocol is tls and tls.made
    assert bytes(tls.received) == raw  # later chunks reach it through the transport


def test_garbage_goes_to_the_tls_protocol_at_once() -> None:
    _, made = run(b"GET / HTTP/1.1\r\n")
    (tls,) = made
    assert bytes(tls.received) == b"GET / HTTP/1.1\r\n"
