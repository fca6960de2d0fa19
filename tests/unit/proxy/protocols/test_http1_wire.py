"""HTTP/1.1 serialisers: status lines, heads, chunk framing."""

from __future__ import annotations

import pytest

from tests.unit.proxy.protocols.recorders import ClientRecorder, ServerRecorder
from turnout.proxy.protocols.http1 import Http1ServerConnection, Limits
from turnout.proxy.protocols.http1_client import Http1ClientConnection
from turnout.proxy.protocols.http1_wire import (
    CONTINUE_100,
    LAST_CHUNK,
    STATUS_LINES,
    chunk,
    last_chunk,
    render_headers,
    request_head,
    response_head,
)


@pytest.mark.parametrize(
    ("status", "line"),
    [
        (200, b"HTTP/1.1 200 OK\r\n"),
        (404, b"HTTP/1.1 404 Not Found\r\n"),
        (418, b"HTTP/1.1 418 I'm a Teapot\r\n"),
        (599, b"HTTP/1.1 599 \r\n"),  # no registered phrase
    ],
)
def test_status_lines(status: int, line: bytes) -> None:
    assert STATUS_LINES[status] == line


def test_render_headers() -> None:
    assert render_headers([(b"a", b"1"), (b"a", b"2"), (b"x-y", b"")]) == (
        b"a: 1\r\na: 2\r\nx-y: \r\n"
    )
    assert render_headers([]) == b""


def test_request_head() -> None:
    out = request_head(b"POST", b"/a?b=1", b"api:8080", [(b"x-a", b"1")], b"content-length: 3\r\n")

    assert out == (b"POST /a?b=1 HTTP/1.1\r\nhost: api:8080\r\nx-a: 1\r\ncontent-length: 3\r\n\r\n")


def test_response_head() -> None:
    assert response_head(201, [(b"location", b"/x")], b"content-length: 0\r\n") == (
        b"HTTP/1.1 201 Created\r\nlocation: /x\r\ncontent-length: 0\r\n\r\n"
    )
    assert response_head(700, [], b"") == b"HTTP/1.1 700 \r\n\r\n"


def test_chunk_framing() -> None:
    assert chunk(b"hello") == b"5\r\nhello\r\n"
    assert chunk(b"x" * 255) == b"ff\r\n" + b"x" * 255 + b"\r\n"
    assert last_chunk(None) == LAST_CHUNK == b"0\r\n\r\n"
    assert last_chunk([]) == b"0\r\n\r\n"
    assert last_chunk([(b"x-sum", b"5")]) == b"0\r\nx-sum: 5\r\n\r\n"
    assert CONTINUE_100 == b"HTTP/1.1 100 Continue\r\n\r\n"


def test_a_serialised_request_parses_back() -> None:
    body = [b"hello", b" ", b"world"]
    wire = request_head(
        b"PUT", b"/up?x=1", b"api", [(b"x-a", b"1")], b"transfer-encoding: chunked\r\n"
    )
    wire += b"".join(chunk(p) for p in body) + last_chunk([(b"x-sum", b"11")])
    rec = ServerRecorder()

    Http1ServerConnection(rec, Limits()).feed(wire)

    head = rec.heads[0]
    assert (head.method, head.target, head.authority, head.chunked) == (
        b"PUT",
        b"/up?x=1",
        b"api",
        True,
    )
    assert head.headers == [(b"x-a", b"1")]
    assert rec.body == b"hello world"
    assert rec.trailers() == [(b"x-sum", b"11")]


def test_a_serialised_response_parses_back() -> None:
    wire = response_head(200, [(b"x-a", b"1")], b"transfer-encoding: chunked\r\n")
    wire += chunk(b"abc") + last_chunk(None)
    rec = ClientRecorder()
    conn = Http1ClientConnection(rec)
    conn.expect(False)

    conn.feed(wire)

    assert rec.kinds == ["head", "body", "end"]
    assert rec.heads[0].headers == [(b"x-a", b"1")]
    assert rec.body == b"abc"
