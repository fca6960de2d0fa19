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

``DecompressFilter`` (``requestDecompression``) is the request side: a body with
``Content-Encoding`` gzip, br or zstd is decoded as it streams and forwarded without the
field (chunked: its length is unknown); a decoded size beyond ``maxSize`` — a
decompression bomb — or undecodable bytes refuse the request (413 / 400, or an abort once
the response began), and the upstream never receives a complete request. Another coding
is refused with 415. Each decoder gets at most ``maxSize`` + 1 bytes of output per call
(``max_length`` / ``max_output_size``), so a bomb is caught before it is inflated.

Negotiation results are memoised per distinct ``Accept-Encoding`` value (clients send
few), so a request pays one dict lookup for it. Codecs: the stdlib ``zlib`` (gzip
framing), ``brotli`` and ``zstandard`` — each compressor object is made per response.
"""

from __future__ import annotations

import zlib
from typing import IO, Final, cast

import brotli
import zstandard

from turnout.proxy.filters.base import (
    FilterContext,
    LocalReply,
    Verdict,
)
from turnout.proxy.filters.refusals import BodyRefused
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


class CompressFilter:
    """Response hooks (wrapped by ``response_filter`` at build, like every filter of a
    module that is not compiled)."""

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


class _Sink:
    """Collects a zstd stream writer's output, refusing it past the limit."""

    __slots__ = ("limit", "parts", "size")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.size += len(data)
        if self.size > self.limit:
            raise _too_large()
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts = []
        return out


def _too_large() -> BodyRefused:
    return BodyRefused(
        413, b"body_too_large", b"the decompressed request body is larger than this route accepts"
    )


def _undecodable(why: bytes) -> BodyRefused:
    return BodyRefused(400, b"bad_content_encoding", why)


class Decompressor:
    """One request body's decoder, refusing output beyond ``limit`` bytes. No call
    produces more than the room left (+1 byte, or one zstd block), so a bomb is refused
    before it is inflated."""

    __slots__ = ("br", "coding", "gz", "limit", "size", "zsink", "zst")

    def __init__(self, coding: bytes, limit: int) -> None:
        self.coding = coding
        self.limit = limit
        self.size = 0
        self.gz = zlib.decompressobj(31) if coding == GZIP else None
        self.br = brotli.Decompressor() if coding == BROTLI else None
        self.zsink = _Sink(limit)
        self.zst = (
            zstandard.ZstdDecompressor().stream_writer(
                cast("IO[bytes]", self.zsink), write_size=65536
            )
            if coding == ZSTD
            else None
        )

    def _count(self, out: bytes) -> bytes:
        self.size += len(out)
        if self.size > self.limit:
            raise _too_large()
        return out

    def chunk(self, data: bytes) -> bytes:
        try:
            if self.gz is not None:
                out = self.gz.decompress(data, self.limit - self.size + 1)
                if self.gz.unconsumed_tail:
                    raise _too_large()  # the room is full and input is left
                return self._count(out)
            if self.br is not None:
                room = self.limit - self.size + 1
                parts = [self._count(bytes(self.br.process(data, output_buffer_limit=room)))]
                while not self.br.can_accept_more_data():
                    room = self.limit - self.size + 1
                    parts.append(self._count(bytes(self.br.process(b"", output_buffer_limit=room))))
                return b"".join(parts)
            assert self.zst is not None
            self.zst.write(data)
            self.zst.flush()  # type: ignore[no-untyped-call]
            return self._count(self.zsink.take())
        except (zlib.error, brotli.error, zstandard.ZstdError) as exc:
            raise _undecodable(b"the request body could not be decompressed") from exc

    def end(self) -> bytes:
        if self.gz is not None:
            if not self.gz.eof:
                raise _undecodable(b"the compressed request body is truncated")
            return self._count(self.gz.flush())
        if self.br is not None and not self.br.is_finished():
            raise _undecodable(b"the compressed request body is truncated")
        return b""


_DECODABLE: Final = {GZIP: GZIP, b"x-gzip": GZIP, BROTLI: BROTLI, ZSTD: ZSTD}


class DecompressFilter:
    """``requestDecompression``: decode compressed request bodies, at most ``limit``."""

    __slots__ = ("limit",)

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def __repr__(self) -> str:
        return f"<DecompressFilter max {self.limit}>"

    def resume(self, ctx: FilterContext, outcome: object) -> Verdict:
        return None  # never suspends

    def on_request(self, ctx: FilterContext) -> Verdict:
        head = ctx.head
        value = head.received.get(b"content-encoding")
        if value is None or not head.has_body:
            return None
        coding = _DECODABLE.get(value.strip().lower())
        if coding is None:
            return LocalReply(
                415,
                b"unsupported_content_encoding",
                b"request bodies may be encoded with gzip, br or zstd only",
                [(b"accept-encoding", b"gzip, br, zstd")],
            )
        head.headers = [h for h in head.headers if h[0] != b"content-encoding"]
        head.content_length = None
        head.chunked = True  # the decoded length is unknown: chunked upstream
        ctx.request_transform = Decompressor(coding, self.limit)
        return None
