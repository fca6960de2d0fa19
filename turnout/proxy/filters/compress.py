"""A TrafficPolicy ``compression`` as a response filter with a streaming body transform.

``CompressFilter.on_response`` decides per response: the request is not ``HEAD``; the
status may carry a body and is not a 206; the response has no ``Content-Encoding`` of
its own; its media type is configured (exact, or ``type/*``); its ``Content-Length``,
when known, is at least ``minSize``. Then the coding is chosen from the request's
``Accept-Encoding`` by q-value (RFC 9110 §12.5.3; ``*`` stands for codings not named,
``q=0`` refuses one, ties go to the policy's order), and the filter sets
``Content-Encoding``, drops ``Content-Length`` (the body is streamed, chunked on
HTTP/1.1), turns a strong ``ETag`` weak (the bytes differ from the identity
representation's, as nginx does) and installs a ``Compressor`` as ``ctx.body_transform``:
the exchange passes every upstream chunk through it and sends what comes out, then its
tail. ``Vary: Accept-Encoding`` is added to every response of a configured media type,
compressed or not, so caches downstream keep the representations apart.

Negotiation results are memoised per distinct ``Accept-Encoding`` value (clients send
few), so a request pays one dict lookup for it. Codecs: the stdlib ``zlib`` (gzip
framing), ``brotli`` and ``zstandard`` — each compressor object is made per response.
"""

from __future__ import annotations

import zlib
from typing import Final

import brotli
import zstandard

from turnout.proxy.filters.base import FilterContext, LocalReply, ResponseFilter
from turnout.proxy.protocols.heads import ResponseHead

GZIP: Final = b"gzip"
BROTLI: Final = b"br"
ZSTD: Final = b"zstd"
_MEMO_LIMIT: Final = 512  # distinct Accept-Encoding values remembered per filter
_NO_BODY: Final = frozenset({204, 206, 304})


class Compressor:
    """One response's encoder: ``chunk`` per upstream chunk, ``end`` once."""

    __slots__ = ("coding", "encoder")

    def __init__(self, coding: bytes, level: int) -> None:
        self.coding = coding
        if coding == GZIP:
            self.encoder: object = zlib.compressobj(level, zlib.DEFLATED, 31)
        elif coding == BROTLI:
            self.encoder = brotli.Compressor(quality=level)
        else:
            self.encoder = zstandard.ZstdCompressor(level=level).compressobj()

    def chunk(self, data: bytes) -> bytes:
        enc = self.encoder
        if isinstance(enc, brotli.Compressor):
            return bytes(enc.process(data))
        return bytes(enc.compress(data))  # type: ignore[attr-defined]

    def end(self) -> bytes:
        enc = self.encoder
        if isinstance(enc, brotli.Compressor):
            return bytes(enc.finish())
        return bytes(enc.flush())  # type: ignore[attr-defined]


def negotiate(accept: bytes, offered: tuple[bytes, ...]) -> bytes | None:
    """The coding of ``offered`` (in preference order) the client weighs highest, or
    None (identity). Malformed members are ignored."""
    weights: dict[bytes, float] = {}
    for member in accept.lower().split(b","):
        name, _, params = member.partition(b";")
        name = name.strip()
        if not name:
            continue
        q = 1.0
        for param in params.split(b";"):
            key, _, value = param.partition(b"=")
            if key.strip() == b"q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
        if name == b"x-gzip":
            name = GZIP
        weights[name] = q
    star = weights.get(b"*", 0.0)
    best: bytes | None = None
    best_q = 0.0
    for coding in offered:
        q = weights.get(coding, star)
        if q > best_q:
            best, best_q = coding, q
    return best


class CompressFilter(ResponseFilter):
    __slots__ = ("exact", "levels", "memo", "min_size", "offered", "prefixes")

    def __init__(
        self,
        offered: tuple[bytes, ...],
        content_types: tuple[bytes, ...],
        min_size: int,
        levels: dict[bytes, int],
    ) -> None:
        self.offered = offered
        self.exact = frozenset(t for t in content_types if not t.endswith(b"/*"))
        self.prefixes = tuple(t[:-1] for t in content_types if t.endswith(b"/*"))
        self.min_size = min_size
        self.levels = levels
        self.memo: dict[bytes, bytes | None] = {}

    def __repr__(self) -> str:
        return f"<CompressFilter {b','.join(self.offered).decode()}>"

    def on_response(self, ctx: FilterContext, head: ResponseHead) -> LocalReply | None:
        status = head.status
        if status < 200 or status in _NO_BODY or ctx.head.method == b"HEAD":
            return None
        ctype: bytes | None = None
        for name, value in head.headers:
            if name == b"content-encoding":
                return None  # encoded already (by the service)
            if name == b"content-type":
                ctype = value
        if ctype is None:
            return None
        media = ctype.split(b";", 1)[0].strip().lower()
        if media not in self.exact and not media.startswith(self.prefixes):
            return None
        headers = head.headers
        _add_vary(headers)
        length = head.content_length
        if length is not None and length < self.min_size:
            return None
        accept = ctx.head.received.get(b"accept-encoding")
        if not accept:
            return None
        memo = self.memo
        coding = memo.get(accept, b"")
        if coding == b"":
            coding = negotiate(accept, self.offered)
            if len(memo) < _MEMO_LIMIT:
                memo[accept] = coding
        if coding is None:
            return None
        head.content_length = None
        for i, (name, value) in enumerate(headers):
            if name == b"etag" and not value.startswith(b"W/"):
                headers[i] = (name, b"W/" + value)
        headers.append((b"content-encoding", coding))
        ctx.body_transform = Compressor(coding, self.levels[coding])
        return None


def _add_vary(headers: list[tuple[bytes, bytes]]) -> None:
    for i, (name, value) in enumerate(headers):
        if name == b"vary":
            low = value.lower()
            if b"accept-encoding" in low or value.strip() == b"*":
                return
            headers[i] = (name, value + b", Accept-Encoding")
            return
    headers.append((b"vary", b"Accept-Encoding"))
