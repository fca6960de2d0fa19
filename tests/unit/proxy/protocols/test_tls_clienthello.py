"""The sans-IO ClientHello reader against real ClientHellos made by Python's ssl."""

from __future__ import annotations

import ssl
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from turnout.proxy.protocols.tls_clienthello import (
    MAX_CLIENT_HELLO,
    ClientHelloError,
    ClientHelloParser,
    HelloStatus,
)


def client_hello(
    server_name: str | None,
    version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3,
    alpn: tuple[str, ...] = (),
) -> bytes:
    """The first flight of a real ssl client (no server needed: it stops at want-read)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = version
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_side=False, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def feed_all(data: bytes, cuts: list[int]) -> ClientHelloParser:
    parser = ClientHelloParser()
    last = 0
    for cut in [*cuts, len(data)]:
        if parser.status is not HelloStatus.NEED_MORE:
            break
        parser.feed(data[last:cut])
        last = cut
    return parser


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_server_name_of_a_real_client_hello_at_every_split(version: ssl.TLSVersion) -> None:
    hello = client_hello("Shop.Example.com", version, ("h2", "http/1.1"))

    for cut in range(len(hello) + 1):
        parser = feed_all(hello, [cut])
        assert parser.status is HelloStatus.FOUND, cut
        assert parser.server_name == "shop.example.com"
        assert bytes(parser.buffered) == hello  # forwarded byte for byte


def test_byte_at_a_time() -> None:
    hello = client_hello("a.b.example.org")
    parser = ClientHelloParser()
    statuses = [parser.feed(hello[i : i + 1]) for i in range(len(hello))]
    assert statuses[:-1] == [HelloStatus.NEED_MORE] * (len(hello) - 1)
    assert statuses[-1] is HelloStatus.FOUND
    assert parser.server_name == "a.b.example.org"


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_no_sni(version: ssl.TLSVersion) -> None:
    hello = client_hello(None, version)
    for cut in range(0, len(hello) + 1, 7):
        parser = feed_all(hello, [cut])
        assert parser.status is HelloStatus.NO_SNI
        assert parser.server_name is None


def split_into_records(hello: bytes, size: int) -> bytes:
    """The same handshake message re-framed as records of ``size`` bytes."""
    message = hello[5:]
    out = bytearray()
    for i in range(0, len(message), size):
        part = message[i : i + size]
        out += b"\x16\x03\x01" + struct.pack("!H", len(part)) + part
    return bytes(out)


@pytest.mark.parametrize("size", [1, 3, 50, 100])
def test_client_hello_spanning_several_records(size: int) -> None:
    hello = split_into_records(client_hello("multi.example.com"), size)
    if len(hello) // (size + 5) > 64:
        assert feed_all(hello, []).status is HelloStatus.TOO_LARGE  # record-count cap
        return
    for cut in range(0, len(hello) + 1, 5):
        parser = feed_all(hello, [cut])
        assert parser.status is HelloStatus.FOUND
        assert parser.server_name == "multi.example.com"


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x80\x2e\x01\x03\x01",  # SSLv2-framed hello
        b"\x16\x02",  # not TLS 3.x
        b"SSH-2.0-OpenSSH_9.6\r\n",
    ],
)
def test_not_tls_is_recognised_from_the_first_bytes(data: bytes) -> None:
    assert ClientHelloParser().feed(data) is HelloStatus.NOT_TLS


@pytest.mark.parametrize(
    "data",
    [
        b"\x16\x03\x01\x00\x00",  # empty handshake record
        b"\x16\x03\x01\x00\x04\x02\x00\x00\x00",  # a ServerHello, not a ClientHello
        b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x03",  # body too short
        b"\x16\x03\x01\x40\x01",  # record longer than 2^14
    ],
)
def test_malformed(data: bytes) -> None:
    assert ClientHelloParser().feed(data) is HelloStatus.MALFORMED


def test_oversize_client_hello_is_refused_before_it_arrives() -> None:
    # A handshake header announcing 64 KiB: refused at once, nothing more buffered.
    head = b"\x16\x03\x01\x40\x00" + b"\x01" + (65536).to_bytes(3, "big")
    assert ClientHelloParser().feed(head) is HelloStatus.TOO_LARGE
    # Exactly at the cap is fine; the parser only stops at the cap.
    parser = ClientHelloParser(limit=MAX_CLIENT_HELLO)
    assert parser.feed(b"\x16\x03\x01\x40\x00\x01\x00\x3f\xfc") is HelloStatus.NEED_MORE


def test_feeding_after_the_answer_is_misuse() -> None:
    parser = ClientHelloParser()
    parser.feed(b"hello")
    with pytest.raises(ClientHelloError):
        parser.feed(b"more")


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=6))
def test_fuzz_never_raises_and_stays_bounded(data: bytes, cuts: list[int]) -> None:
    # Prefix half the examples with a valid record header so the fuzzer reaches the
    # ClientHello parser, not just the first-byte check.
    for blob in (data, b"\x16\x03\x01" + struct.pack("!H", len(data)) + data):
        parser = feed_all(blob, sorted(c for c in cuts if c <= len(blob)))
        assert len(parser.buffered) <= len(blob)
        assert len(parser._handshake) <= MAX_CLIENT_HELLO + 5


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2000), st.binary(min_size=1, max_size=8))
def test_fuzz_mutated_real_hello(index: int, patch: bytes) -> None:
    hello = bytearray(client_hello("fuzz.example.com"))
    i = index % len(hello)
    hello[i : i + len(patch)] = patch
    parser = feed_all(bytes(hello), [i])
    assert parser.status in HelloStatus
    if parser.status is HelloStatus.FOUND:
        assert parser.server_name
