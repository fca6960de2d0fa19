"""The protocol-neutral request side of the upstream codecs: one ``RequestHead`` rendered
as HTTP/1.1 bytes, or as HTTP/2 HEADERS/DATA frames without going through HTTP/1.1."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events

from tests.unit.proxy.protocols.recorders import ClientRecorder
from turnout.proxy.protocols.heads import RequestHead
from turnout.proxy.protocols.http1_client import render_request, request_bytes
from turnout.proxy.protocols.http2_client import Http2ClientConnection


def _head(method: bytes = b"POST", chunked: bool = False) -> RequestHead:
    head = RequestHead(
        method,
        b"/orders",
        b"page=2",
        [(b"accept", b"*/*"), (b"te", b"trailers"), (b"connection", b"close")],
        b"shop.example",
        "shop.example",
    )
    head.request_id = b"rid-1"
    head.forwarded_for = b"203.0.113.9"
    if chunked:
        head.chunked = True
    else:
        head.content_length = 5
    return head


def test_http1_head_carries_the_gateway_headers_and_framing() -> None:
    data = render_request(_head(), b"192.0.2.1", b"https")
    assert data.startswith(b"POST /orders?page=2 HTTP/1.1\r\nhost: shop.example\r\n")
    assert b"x-forwarded-for: 203.0.113.9, 192.0.2.1\r\n" in data
    assert b"x-forwarded-proto: https\r\nx-forwarded-host: shop.example\r\n" in data
    assert b"x-request-id: rid-1\r\ncontent-length: 5\r\n\r\n" in data


def test_http1_request_bytes_frame_a_chunked_body_and_its_end() -> None:
    head = _head(chunked=True)
    data = request_bytes(head, b"192.0.2.1", b"http", [b"hello", b"!"], True, None)
    assert data.endswith(b"transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n1\r\n!\r\n0\r\n\r\n")
    data = request_bytes(head, b"192.0.2.1", b"http", None, False, None)
    assert data.endswith(b"transfer-encoding: chunked\r\n\r\n")


def _server_events(data: bytes) -> list[h2.events.Event]:
    server = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False, header_encoding=None)
    )
    server.initiate_connection()
    return list(server.receive_data(data))


def test_http2_headers_are_built_from_the_head_without_http1() -> None:
    client = Http2ClientConnection(ClientRecorder())
    preface = client.data_to_send()
    client.expect(False)
    client.send_request(_head(), b"192.0.2.1", b"https")
    client.send_body(b"hello")
    client.send_end()
    events = _server_events(preface + client.data_to_send())
    (received,) = [e for e in events if isinstance(e, h2.events.RequestReceived)]
    headers = list(received.headers)
    assert headers[:4] == [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":authority", b"shop.example"),
        (b":path", b"/orders?page=2"),
    ]
    assert (b"te", b"trailers") in headers
    assert all(name != b"connection" for name, _ in headers)  # connection-specific: dropped
    assert (b"x-forwarded-for", b"203.0.113.9, 192.0.2.1") in headers
    assert (b"x-forwarded-proto", b"https") in headers
    assert (b"x-request-id", b"rid-1") in headers
    assert (b"content-length", b"5") in headers
    body = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
    assert body == b"hello"
    assert any(isinstance(e, h2.events.StreamEnded) for e in events)
    assert client._parser is None  # nothing was parsed as HTTP/1.1


def test_http2_mirror_bytes_are_still_translated() -> None:
    client = Http2ClientConnection(ClientRecorder())
    preface = client.data_to_send()
    client.expect(False)
    client.send(b"GET /m HTTP/1.1\r\nhost: shop.example\r\nx-a: 1\r\n\r\n")
    events = _server_events(preface + client.data_to_send())
    (received,) = [e for e in events if isinstance(e, h2.events.RequestReceived)]
    assert (b":path", b"/m") in list(received.headers)
    assert any(isinstance(e, h2.events.StreamEnded) for e in events)
