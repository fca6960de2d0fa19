"""Mirror: real sockets on 127.0.0.1, asyncio servers as mirror targets, no mocks.

Each test runs its own loop (``asyncio.run``) holding the targets, the ``EndpointPool``
and the mirrors, and fails if the loop's exception handler saw anything (an exception
escaping a callback, a task exception never retrieved).
"""

from __future__ import annotations

import asyncio
import gc
import random
import socket
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any, Literal

import pytest

from turnout.core.netaddr import Address
from turnout.proxy.filters.mirror import (
    DROPPED,
    FAILED,
    RUNNING,
    SENT,
    Mirror,
    MirrorCounters,
    sample,
)
from turnout.proxy.protocols.http1_wire import chunk, last_chunk
from turnout.proxy.upstream.endpoints import Resolver
from turnout.proxy.upstream.pool import EndpointPool
from turnout.testing import free_port

Mode = Literal["answer", "slow", "stuck", "silent", "early", "garbage"]
OK_RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


class Target:
    """A mirror target recording every request as ``(head bytes, raw body bytes)``.

    Modes: ``answer`` (read the request, answer 200), ``slow`` (the same after not
    reading for 0.3 s), ``stuck`` (accept, never read),
    ``silent`` (read requests, never answer), ``early`` (answer 200 right after the head,
    without reading the body), ``garbage`` (answer with bytes that are not HTTP).
    """

    def __init__(self, mode: Mode = "answer", rcvbuf: int = 0) -> None:
        self.mode = mode
        self.rcvbuf = rcvbuf
        self.requests: list[tuple[bytes, bytes]] = []
        self.connections = 0
        self.cut = 0  # connections that ended in the middle of a request
        self.port = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self._stop = asyncio.Event()

    async def start(self) -> Target:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if self.rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._server = await asyncio.start_server(self._handle, sock=sock)
        return self

    async def close(self) -> None:
        self._stop.set()
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await asyncio.sleep(0.01)  # let the handlers see their closed sockets

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        try:
            if self.mode == "stuck":
                await self._stop.wait()
                return
            if self.mode == "slow":
                await asyncio.sleep(0.3)
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError as exc:
                    if exc.partial:
                        self.cut += 1
                    return
                if self.mode in ("early", "garbage"):
                    self.requests.append((head, b""))
                    writer.write(OK_RESPONSE if self.mode == "early" else b"NOT HTTP\r\n\r\n")
                    await writer.drain()
                    await self._stop.wait()
                    return
                try:
                    body = await _read_body(reader, head)
                except asyncio.IncompleteReadError:
                    self.cut += 1
                    return
                self.requests.append((head, body))
                if self.mode in ("answer", "slow"):
                    writer.write(OK_RESPONSE)
                    await writer.drain()
        except ConnectionError:
            self.cut += 1
        finally:
            writer.close()


async def _read_body(reader: asyncio.StreamReader, head: bytes) -> bytes:
    """The raw body bytes (chunk framing included) as framed by ``head``."""
    lines = head.lower().split(b"\r\n")
    if b"transfer-encoding: chunked" in lines:
        parts = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            parts.append(size_line)
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                while True:  # trailers, then the empty line
                    line = await reader.readuntil(b"\r\n")
                    parts.append(line)
                    if line == b"\r\n":
                        return b"".join(parts)
            parts.append(await reader.readexactly(size + 2))
    for line in lines:
        if line.startswith(b"content-length:"):
            return await reader.readexactly(int(line.split(b":")[1]))
    return b""


async def until(cond: Callable[[], object], within: float = 5.0) -> None:
    deadline = perf_counter() + within
    while not cond():
        if perf_counter() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.002)


def run(scenario: Callable[[asyncio.AbstractEventLoop], Awaitable[None]]) -> None:
    """Run ``scenario(loop)`` on a fresh loop; fail on anything the loop had to report."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        reports: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: reports.append(context))
        await scenario(loop)
        await asyncio.sleep(0.01)
        gc.collect()  # surfaces "Task exception was never retrieved"
        await asyncio.sleep(0)
        assert reports == []

    asyncio.run(main())


def make_pool(loop: asyncio.AbstractEventLoop, port: int) -> EndpointPool:
    return EndpointPool(Address(host="127.0.0.1", port=port), loop, Resolver())


async def close_pool(pool: EndpointPool) -> None:
    pool.close_idle()
    await until(lambda: pool.open_count == 0)


def post_head(length: int) -> bytes:
    return (
        b"POST /orders?id=7 HTTP/1.1\r\nhost: shop.example\r\naccept: */*\r\n"
        b"x-forwarded-for: 10.0.0.1\r\nx-forwarded-proto: http\r\n"
        b"x-forwarded-host: shop.example\r\nx-request-id: r-1\r\n"
        b"content-length: %d\r\n\r\n" % length
    )


CHUNKED_HEAD = (
    b"PUT /upload HTTP/1.1\r\nhost: shop.example\r\nx-request-id: r-2\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)
GET_HEAD = b"GET /health HTTP/1.1\r\nhost: shop.example\r\nx-request-id: r-3\r\n\r\n"


# -- what arrives ---------------------------------------------------------------------------


def test_content_length_request_arrives_exactly_and_the_connection_is_pooled() -> None:
    async def scenario(loop: asyncio.AbstractEventLoop) -> None:
        target = await Target().start()
        pool = make_pool(loop, target.port)
        counters = MirrorCounters()
        head = post_head(11)
        mirror = Mirror(pool, loop, head, counters=counters)
        mirror.body(b"hello ")  # before the connection exists: buffered
        assert mirror.conn is None
        await until(lambda: mirror.conn is not None)
        mirror.body(b"world")  # connected: written straight through
        mirror.end()
        await until(lambda: mirror.outcome != RUNNING)
        assert mirror.outcome == SENT
        assert mirror.status == 200
        assert target.requests == [(head, b"hello world")]
        assert len(pool.idle) == 1  # released after the complete exchange
        assert (counters.started, counters.sent, counters.active) == (1, 1, 0)
        await close_pool(pool)
        await target.close()

    run(scenario)


def test_chunked_request_arrives_exactly_with_framing_and_trailers() -> None:
    async def scenario(loop: asyncio.AbstractEventLoop) -> None:
        target = await Target().start()
        pool = make_pool(loop, target.port)
        counters = MirrorCounters()
        parts = [chunk(b"abc"), chunk(b"x" * 70_000)]
        later = [chunk(b"defg"), last_chunk([(b"x-checksum", b"42")])]
        mirror = Mirror(pool, loop, CHUNKED_HEAD, counters=counters)
        for part in parts:
            mirror.body(part)
        await until(lambda: mirror.conn is not None)
        for part in later:
            mirror.body(part)
        mirror.end()
        await until(lambda: mirror.outcome != RUNNING)
        assert mirror.outcome == SENT
        assert target.requests == [(CHUNKED_HEAD, b"".join(parts + later))]
        assert len(pool.idle) == 1
        await close_pool(pool)
        await target.close()

    run(scenario)


def test_pooled_connection_is_reused_for_the_next_mirror() -> None:
    async def scenario(loop: asyncio.AbstractEventLoop) -> None:
        target = await Target().start()
        pool = make_pool(loop, target.port)
        counters = MirrorCounters()
        first = Mirror(pool, loop, GET_HEAD, counters=counters)
        first.end()  # no body: complete before the connection even exists
        await until(lambda: first.outcome != RUNNING)
        assert first.outcome == SENT
        assert len(pool.idle) == 1
        second = Mirror(pool, loop, post_head(3), counters=counters)
        assert second.conn is not None  # took the idle connection synchronously
        assert len(pool.idle) == 0
        second.body(b"abc")
        second.end()
        await until(lambda: second.outcome != RUNNING)
        assert second.outcome == SENT
        assert len(pool.idle) == 1
        assert target.connections == 1
        assert target.requests == [(GET_HEAD, b""), (post_head(3), b"abc")]
        assert counters.sent == 2
        await close_pool(pool)
        await target.close()

    run(scenario)


# -- never slowing the primary -----------------------------------------------------------


def test_stuck_target_never_blocks_the_caller() -> None:
    """A target that never reads: the mirror gives up; the primary's 10 MB flow on."""
    size = 10 * 1024 * 1024
    piece = 64 * 1024

    async def scenario(loop: asyncio.AbstractEventLoop) -> None:
        stuck = await Target("stuck", rcvbuf=4096).start()
        primary = await Target("answer").start()
        pool = make_pool(loop, stuck.port)
        counters = MirrorCounters()
        head = post_head(size)
        mirror = Mirror(pool, loop, head, counters=counters)
        await until(lambda: mirror.conn is not None)  # stuck on a full socket, not connecting
        reader, writer = await asyncio.open_connection("127.0.0.1", primary.port)
        writer.write(head)
        data = b"m" * piece
        slowest = 0.0
        dropped_at = -1
        started = perf_counter()
        for i in range(size // piece):
            writer.write(data)  # the primary request, with real backpressure
            t0 = perf_counter()
            mirror.body(data)
            slowest = max(slowest, perf_counter() - t0)
            if dropped_at < 0 and mirror.outcome == DROPPED:
                dropped_at = i * piece
            await writer.drain()
        mirror.end()
        response = await reader.readexactly(len(OK_RESPONSE))
        elapsed = perf_counter() - started
        writer.close()
        await writer.wait_closed()
        assert response == OK_RESPONSE
        assert primary.requests == [(head, b"m" * size)]
        assert mirror.outcome == DROPPED
        assert 0 < dropped_at < size
        assert counters.dropped == 1 and counters.active == 0
        # body() is a write or a list append: never a wait. Generous bounds for slow CI.
        assert slowest < 0.05, slowest
        assert elapsed < 20.0, elapsed
        await until(lambda: pool.open_count == 0)  # its connection was aborted
        await close_pool(pool)
        await stuck.close()
        await primary.close()

    run(scenario)


def test_slow_target_within_the_limit_still_gets_every_byte() -> None:
    """Blocked, the mirror buffers (up to ``limit``) and flushes when writable again."""
    # More than the kernel can hold in flight on loopback (tcp_wmem's maximum, 4 MiB by
    # default, plus the target's 4 KiB receive buffer), so the mirror must block.
    size = 12 * 1024 * 1024
    piece = 64 * 1024

    async def scenario(loop: asyncio.AbstractEventLoop) -> None:
        target = await Target("slow", rcvbuf=4096).start()
        pool = make_pool(loop, target.port)
        counters = MirrorCounters()
        head = post_head(size)
        mirror = Mirror(pool, loop, head, limit=16 << 20, counters=counters)
        await until(lambda: mirror.conn is not None)
        for i in range(size // piece):
            mirror.body(bytes([65 + i % 26]) * piece)
            await asyncio.sleep(0)
        assert mirror.backlog is not None and mirror.backlog_size > 0  # it did block
        mirror.end()
        await until(lambda: mirror.outcome != RUNNING)
        assert mirror.outcome == SENT
        expected = b"".join(bytes([65 + i % 26]) * piece for i in range(size // piece))
        assert target.requests == [(head, expected)]
        assert len(pool.idle) == 1
        await close_pool(pool)
        await target.close()

    run(scenario)


def test_backlog_limit_while_connecting_drops_the_mirror() -> None:
    async def scenario(loop: asyncio.AbstractEventLoop) -> None:
        target = await Target().start()
        pool = make_pool(loop, target.port)
        counters = MirrorCounters()
        mirror = Mirror(pool, loop, post_head(3000), limit=2048, counters=counters)
        mirror.body(b"a" * 2000)
        assert mirror.outcome == RUNNING
        mirror.body(b"b" * 1000)  # 3000 > 2048 buffered before the connection exists
        assert mirror.outcome == DROPPED
        mirror.body(b"c")  # ignored from now on
        mirror.end()
        # The connect was left to finish: its fresh connection went to the pool unused.
        await until(lambda: len(pool.idle) == 1)
        assert pool.open_count == 1
        assert target.requests == []
        assert counters.dropped == 1
        await close_pool(pool)
        await target.close()

    run(scenario)


# -- failures -------------------------------------------------------------------------------


def test_refused_port_counts_failed_and_raises_nothing() -> None:
    async def scenario(loop: asyncio.AbstractEventLoop) -> None:
        pool = make_pool(loop, free_port())  # nothing listens there
        counters = MirrorCounters()
        mirror = Mirror(pool, loop, post_head(4), counters=counters)
        mirror.body(b"data")
        mirror.end()
        await until(lambda: mirror.outcome != RUNNING)
        assert mirror.outcome == FAILED
        mirror.body(b"more")  # still harmless
        mirror.abort()  # and so is a late abort: counted once
        assert (counters.failed, counters.dropped, counters.sent) == (1, 0, 0)
        assert pool.open_count == 0

    run(scenario)


def test_timeout_cancels_a_hanging_connect() -> None:
    """A listener whose accept queue is full drops SYNs: the connect hangs."""

    async def scenario(loop: asyncio.AbstractEventLoop) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        fillers = []
        try:
            for _ in range(4):  # fill the accept queue; nobody ever accepts
                filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                filler.setblocking(False)
                fillers.append(filler)
                try:
                    filler.connect(listener.getsockname())
                except BlockingIOError:
                    pass
            await asyncio.sleep(0.05)
            pool = make_pool(loop, listener.getsockname()[1])
            counters = MirrorCounters()
            started = perf_counter()
            mirror = Mirror(pool, loop, GET_HEAD, timeout=0.3, counters=counters)
            mirror.end()
            await until(lambda: mirror.outcome != RUNNING)
            assert perf_counter() - started >= 0.29  # ended by the timer, not refused
            assert mirror.outcome == FAILED
            assert mirror.connecting is None and mirror.timer is None
            await asyncio.sleep(0.05)
            assert pool.open_count == 0 and len(pool.idle) == 0
            assert counters.failed == 1
        finally:
            for filler in fillers:
                filler.close()
            listener.close()

    run(scenario)


def test_timeout_bounds_the_mirror_lifetime() -> None:
    async def scenario(loop: asyncio.AbstractEventLoop) -> None:
        target = await Target("silent").start()
        pool = make_pool(loop, target.port)
        counters = MirrorCounters()
        started = perf_counter()
        mirror = Mirror(pool, loop, GET_HEAD, timeout=0.2, counters=counters)
        mirror.end()
        await until(lambda: mirror.outcome != RUNNING)
        assert perf_counter() - started >= 0.19
        assert mirror.outcome == FAILED
        assert target.requests == [(GET_HEAD, b"")]
        await until(lambda: pool.open_count == 0)  # closed, not pooled
        assert len(pool.idle) == 0
        assert counters.failed == 1
        await target.close()

    run(scenario)


def test_malformed_answer_fails_and_closes() -> None:
    async def scenario(loop: asyncio.AbstractEventLoop) -> None:
        target = await Target("garbage").start()
        pool = make_pool(loop, target.port)
        counters = MirrorCounters()
        mirror = Mirror(pool, loop, GET_HEAD, counters=counters)
        mirror.end()
        await until(lambda: mirror.outcome != RUNNING)
        assert mirror.outcome == FAILED
        await until(lambda: pool.open_count == 0)
        assert len(pool.idle) == 0
        await target.close()

    run(scenario)


def test_answer_before_the_request_is_written_closes_instead_of_pooling() -> None:
    async def scenario(loop: asyncio.AbstractEventLoop) -> None:
        target = await Target("early").start()
        pool = make_pool(loop, target.port)
        counters = MirrorCounters()
        mirror = Mirror(pool, loop, post_head(10), counters=counters)
        mirror.body(b"12345")
        await until(lambda: mirror.outcome != RUNNING)
        assert mirror.outcome == SENT
        assert mirror.status == 200
        mirror.body(b"67890")  # the rest of the primary's body: ignored
        mirror.end()
        await until(lambda: pool.open_count == 0)
        assert len(pool.idle) == 0
        await target.close()

    run(scenario)


# -- abort ----------------------------------------------------------------------------------


def test_abort_while_connecting_sends_nothing_and_pools_the_fresh_connection() -> None:
    async def scenario(loop: asyncio.AbstractEventLoop) -> None:
        target = await Target().start()
        pool = make_pool(loop, target.port)
        counters = MirrorCounters()
        mirror = Mirror(pool, loop, post_head(5), counters=counters)
        mirror.body(b"12")
        mirror.abort()
        assert mirror.outcome == DROPPED
        await until(lambda: len(pool.idle) == 1)
        assert mirror.timer is None  # disarmed once the connect ended
        await asyncio.sleep(0.02)
        assert target.requests == [] and target.cut == 0  # not one byte was sent
        assert counters.dropped == 1
        # The pooled connection serves the next mirror.
        other = Mirror(pool, loop, GET_HEAD, counters=counters)
        assert other.conn is not None
        other.end()
        await until(lambda: other.outcome != RUNNING)
        assert other.outcome == SENT
        assert target.connections == 1
        await close_pool(pool)
        await target.close()

    run(scenario)


def test_abort_mid_body_closes_the_connection() -> None:
    async def scenario(loop: asyncio.AbstractEventLoop) -> None:
        target = await Target().start()
        pool = make_pool(loop, target.port)
        counters = MirrorCounters()
        mirror = Mirror(pool, loop, post_head(100), counters=counters)
        mirror.body(b"x" * 10)
        await until(lambda: mirror.conn is not None and target.connections == 1)
        mirror.abort()
        assert mirror.outcome == DROPPED
        await until(lambda: target.cut == 1)  # the target saw the connection end mid-body
        await until(lambda: pool.open_count == 0)
        assert target.requests == []
        assert len(pool.idle) == 0
        mirror.abort()  # idempotent
        assert counters.dropped == 1
        await target.close()

    run(scenario)


# -- sampling -------------------------------------------------------------------------------


def test_sample_edges() -> None:
    assert not sample(0, 100, 0.0)
    assert sample(100, 100, 0.999999)
    assert sample(150, 100, 0.5)
    assert not sample(5, 0, 0.0)
    assert sample(1, 2, 0.4999)
    assert not sample(1, 2, 0.5)


@pytest.mark.parametrize(("numerator", "denominator"), [(1, 3), (25, 100), (7, 1000)])
def test_sample_rate(numerator: int, denominator: int) -> None:
    rng = random.Random(7)
    n = 100_000
    hits = sum(sample(numerator, denominator, rng.random()) for _ in range(n))
    p = numerator / denominator
    assert abs(hits - n * p) <= 4.5 * (n * p * (1 - p)) ** 0.5
