"""``Http1ClientConnection``: upstream responses as the stream sees them (no event loop)."""

from __future__ import annotations

import pytest

from tests.unit.proxy.protocols.recorders import ClientRecorder
from turnout.proxy.protocols.http1_client import Http1ClientConnection


def upstream(
    *chunks: bytes, head_request: bool = False, eof: bool = False
) -> tuple[ClientRecorder, Http1ClientConnection]:
    rec = ClientRecorder()
    conn = Http1ClientConnection(rec)
    conn.expect(head_request)
    for chunk in chunks:
        conn.feed(chunk)
    if eof:
        conn.feed_eof()
    return rec, conn


def resp(head: str, body: bytes = b"") -> bytes:
    return head.replace("\n", "\r\n").encode() + b"\r\n\r\n" + body


def test_content_length_response() -> None:
    rec, conn = upstream(resp("HTTP/1.1 200 OK\nContent-Length: 5\nX-App: 1", b"hello"))

    assert rec.kinds == ["head", "body", "end"]
    head = rec.heads[0]
    assert (head.status, head.content_length, head.chunked, head.keep_alive) == (
        200,
        5,
        False,
        True,
    )
    assert head.headers == [(b"x-app", b"1")]
    assert rec.body == b"hello"
    assert rec.events[-1] == ("end", None)
    assert conn.done and conn.reusable and conn.received_any


def test_content_length_body_in_pieces() -> None:
    raw = resp("HTTP/1.1 200 OK\nContent-Length: 10", b"0123456789")

    rec, conn = upstream(*[raw[i : i + 3] for i in range(0, len(raw), 3)])

    assert rec.body == b"0123456789"
    assert rec.kinds[-1] == "end"
    assert conn.done and conn.reusable


def test_chunked_response_with_trailers() -> None:
    raw = resp("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\nTrailer: X-Sum")
    raw += b"3\r\nabc\r\n2\r\nde\r\n0\r\nX-Sum: 5\r\nContent-Type: evil\r\nHost: evil\r\n\r\n"

    rec, conn = upstream(raw)

    head = rec.heads[0]
    assert (head.chunked, head.content_length) == (True, None)
    assert head.headers == []
    assert rec.body == b"abcde"
    assert rec.events[-1] == ("end", [(b"x-sum", b"5")])
    assert conn.done and conn.reusable


def test_close_delimited_body_ends_at_eof() -> None:
    rec, conn = upstream(resp("HTTP/1.1 200 OK\nX-A: 1", b"abc"), b"def")

    assert rec.kinds == ["head", "body", "body"]
    assert not conn.done

    conn.feed_eof()

    assert rec.kinds[-1] == "end"
    assert rec.body == b"abcdef"
    assert conn.done
    assert not conn.reusable
    assert rec.heads[0].keep_alive is False


@pytest.mark.parametrize(
    "head",
    [
        "HTTP/1.1 200 OK\nContent-Length: 1000",
        "HTTP/1.1 200 OK\nTransfer-Encoding: chunked",
        "HTTP/1.1 200 OK\nContent-Length: 0",
    ],
)
def test_a_head_response_completes_at_its_head(head: str) -> None:
    rec, conn = upstream(resp(head), head_request=True)

    assert rec.kinds == ["head", "end"]
    assert conn.done and conn.reusable


def test_the_connection_is_reusable_after_a_head_response() -> None:
    rec, conn = upstream(resp("HTTP/1.1 200 OK\nContent-Length: 1000"), head_request=True)

    conn.expect(False)
    conn.feed(resp("HTTP/1.1 201 Created\nContent-Length: 2", b"ok"))

    assert [h.status for h in rec.heads] == [200, 201]
    assert rec.body == b"ok"
    assert rec.kinds == ["head", "end", "head", "body", "end"]
    assert conn.done and conn.reusable


def test_body_bytes_after_a_head_response_spoil_the_connection() -> None:
    rec, conn = upstream(
        resp("HTTP/1.1 200 OK\nContent-Length: 10"), b"0123456789", head_request=True
    )

    assert rec.kinds == ["head", "end"]
    assert not conn.reusable


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses_end_at_the_head(status: int) -> None:
    rec, conn = upstream(resp(f"HTTP/1.1 {status} X\nContent-Length: 10\nETag: x"))

    assert rec.kinds == ["head", "end"]
    assert rec.heads[0].status == status
    assert conn.done and conn.reusable


def test_interim_responses() -> None:
    rec, conn = upstream(
        resp("HTTP/1.1 100 Continue"),
        resp("HTTP/1.1 103 Early Hints\nLink: </style.css>; rel=preload"),
        resp("HTTP/1.1 200 OK\nContent-Length: 2", b"ok"),
    )

    assert rec.kinds == ["info", "head", "body", "end"]
    info = rec.events[0][1]
    assert info.status == 103
    assert info.headers == [(b"link", b"</style.css>; rel=preload")]
    assert rec.heads[0].status == 200
    assert conn.done and conn.reusable


def test_interim_responses_in_one_read() -> None:
    raw = resp("HTTP/1.1 100 Continue") + resp("HTTP/1.1 200 OK\nContent-Length: 0")

    rec, conn = upstream(raw)

    assert rec.kinds == ["head", "end"]
    assert conn.done


def test_101_switches_to_a_tunnel() -> None:
    rec, conn = upstream(
        resp(
            "HTTP/1.1 101 Switching Protocols\nUpgrade: websocket\nConnection: Upgrade\n"
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
            b"\x81\x02hi",
        ),
        b"\x81\x03bye",
    )

    assert rec.kinds == ["head", "tunnel", "tunnel"]
    head = rec.heads[0]
    assert (head.status, head.upgrade) == (101, b"websocket")
    assert head.get(b"sec-websocket-accept") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert head.get(b"upgrade") is None
    assert rec.tunnel == b"\x81\x02hi\x81\x03bye"

    conn.feed_eof()
    assert "error" not in rec.kinds
    assert not conn.reusable


@pytest.mark.parametrize(
    "raw",
    [
        resp("HTTP/1.1 200 OK\nContent-Length: 10", b"abc"),
        resp("HTTP/1.1 200 OK\nTransfer-Encoding: chunked", b"3\r\nabc\r\n"),
        b"HTTP/1.1 200 OK\r\nContent-Le",
    ],
    ids=["content-length", "chunked", "head"],
)
def test_a_truncated_response_then_eof_is_an_error(raw: bytes) -> None:
    rec, conn = upstream(raw, eof=True)

    assert rec.kinds[-1] == "error"
    assert "end" not in rec.kinds
    assert not conn.done
    assert not conn.reusable


def test_eof_before_any_response_byte_is_left_to_the_caller() -> None:
    rec, conn = upstream(eof=True)

    assert rec.events == []  # the connection loss itself is reported (and may be retried)
    assert not conn.received_any
    assert not conn.done
    assert not conn.reusable


def test_unsolicited_bytes_mark_the_connection_not_reusable() -> None:
    rec, conn = upstream(resp("HTTP/1.1 200 OK\nContent-Length: 1", b"x"))
    assert conn.reusable

    conn.feed(b"HTTP/1.1 200 OK\r\n")

    assert not conn.reusable
    assert rec.kinds == ["head", "body", "end"]


def test_bytes_before_any_request_mark_the_connection_not_reusable() -> None:
    rec = ClientRecorder()
    conn = Http1ClientConnection(rec)

    conn.feed(b"garbage")

    assert not conn.reusable
    assert rec.events == []


def test_trailing_garbage_after_a_response_spoils_the_connection() -> None:
    rec, conn = upstream(resp("HTTP/1.1 200 OK\nContent-Length: 1", b"xGARBAGE"))

    assert rec.kinds[:3] == ["head", "body", "end"]
    assert not conn.reusable


@pytest.mark.parametrize(
    "head",
    [
        "HTTP/1.1 200 OK\nContent-Length: 1\nConnection: close",
        "HTTP/1.0 200 OK\nContent-Length: 1",
    ],
)
def test_connection_close_is_not_reusable(head: str) -> None:
    rec, conn = upstream(resp(head, b"x"))

    assert rec.kinds == ["head", "body", "end"]
    assert rec.heads[0].keep_alive is False
    assert conn.done
    assert not conn.reusable


def test_http_1_0_keep_alive_is_reusable() -> None:
    rec, conn = upstream(resp("HTTP/1.0 200 OK\nContent-Length: 1\nConnection: keep-alive", b"x"))

    assert rec.heads[0].keep_alive
    assert conn.reusable


def test_hop_by_hop_and_nominated_response_headers_are_removed() -> None:
    rec, _ = upstream(
        resp(
            "HTTP/1.1 200 OK\nContent-Length: 0\nConnection: keep-alive, X-Internal\n"
            "Keep-Alive: timeout=5\nProxy-Authenticate: Basic\nX-Internal: secret\n"
            "Set-Cookie: a=1\nSet-Cookie: b=2"
        )
    )

    assert rec.heads[0].headers == [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")]


def test_a_malformed_response_is_a_protocol_error() -> None:
    rec, conn = upstream(b"HTTP/1.1 abc OK\r\n\r\n")

    assert rec.kinds == ["error"]
    assert rec.events[0][1].startswith("malformed response")
    assert not conn.reusable

    conn.feed(resp("HTTP/1.1 200 OK\nContent-Length: 0"))
    assert rec.kinds == ["error"]


@pytest.mark.parametrize("te", [",chunked", "chunked,", "chunked, ,", " , chunked"])
def test_an_empty_transfer_encoding_element_is_a_protocol_error(te: str) -> None:
    raw = resp(f"HTTP/1.1 200 OK\nTransfer-Encoding: {te}", b"3\r\nabc\r\n0\r\n\r\n")

    rec, conn = upstream(raw)

    assert rec.kinds == ["error"]
    assert "empty element" in rec.events[0][1]
    assert not conn.reusable


def test_an_oversized_response_head_is_a_protocol_error() -> None:
    rec = ClientRecorder()
    conn = Http1ClientConnection(rec, max_header_bytes=100)
    conn.expect(False)

    conn.feed(resp("HTTP/1.1 200 OK\nX-Big: " + "v" * 200 + "\nContent-Length: 0"))

    assert rec.kinds == ["error"]
    assert "too large" in rec.events[0][1]
    assert not conn.reusable


def test_a_first_read_with_much_body_is_not_an_oversized_head() -> None:
    # Regression: the head-size cap once counted every byte of the first read, so a
    # fast upstream that sent head and 256 KiB of body together looked like a huge head.
    body = b"b" * (256 * 1024)
    rec, conn = upstream(resp(f"HTTP/1.1 200 OK\nContent-Length: {len(body)}", body))

    assert rec.kinds[0] == "head" and rec.kinds[-1] == "end"
    assert rec.body == body
    assert conn.reusable


def test_a_head_that_never_ends_is_refused() -> None:
    rec, conn = upstream(b"HTTP/1.1 200 OK\r\nX-Big: ", *([b"a" * 16384] * 8))

    assert rec.kinds == ["error"]
    assert not conn.reusable
