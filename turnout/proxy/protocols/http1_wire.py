"""HTTP/1.1 serialisation: precomputed status lines, heads and chunk framing.

What goes out is always re-serialised from parsed fields: one framing header chosen by
the sender, ``name: value`` with a single space, CRLF line ends. Nothing a peer sent is
copied through as raw bytes, so a framing trick on one side cannot reach the other.
"""

from __future__ import annotations

import http
from typing import Final

from turnout.proxy.protocols.heads import Headers


def _status_line(code: int) -> bytes:
    try:
        phrase = http.HTTPStatus(code).phrase.encode()
    except ValueError:
        phrase = b""
    return b"HTTP/1.1 %d %s\r\n" % (code, phrase)


STATUS_LINES: Final = {code: _status_line(code) for code in range(100, 600)}
CRLF: Final = b"\r\n"
LAST_CHUNK: Final = b"0\r\n\r\n"
CONTINUE_100: Final = b"HTTP/1.1 100 Continue\r\n\r\n"


def render_headers(headers: Headers) -> bytes:
    return b"".join([b"%s: %s\r\n" % nv for nv in headers])


def request_head(
    method: bytes, target: bytes, authority: bytes, headers: Headers, tail: bytes
) -> bytes:
    """A request head; ``tail`` holds pre-rendered framing/forwarding lines."""
    return b"%s %s HTTP/1.1\r\nhost: %s\r\n%s%s\r\n" % (
        method,
        target,
        authority,
        render_headers(headers),
        tail,
    )


def response_head(status: int, headers: Headers, tail: bytes) -> bytes:
    line = STATUS_LINES.get(status) or b"HTTP/1.1 %d \r\n" % status
    return b"%s%s%s\r\n" % (line, render_headers(headers), tail)


def chunk(data: bytes) -> bytes:
    """One chunk; empty data gives nothing (an empty chunk would end the body)."""
    return b"%x\r\n%s\r\n" % (len(data), data) if data else b""


def last_chunk(trailers: Headers | None) -> bytes:
    if not trailers:
        return LAST_CHUNK
    return b"0\r\n%s\r\n" % render_headers(trailers)
