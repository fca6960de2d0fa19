"""HealthChecker against real sockets on 127.0.0.1: verdicts, thresholds, reconfiguration."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Literal

import pytest

from turnout.core.netaddr import Address
from turnout.proxy.upstream.probe import HealthChecker, ProbeTarget, check

Mode = Literal["ok", "fail", "hang", "close"]

INTERVAL = 0.02


class _Conn(asyncio.Protocol):
    def __init__(self, server: Upstream) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        server = self.server
        server.connections += 1
        server.times.append(time.monotonic())
        server.open.add(transport)
        if server.mode == "close":
            transport.close()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        server = self.server
        if b"\r\n\r\n" not in self.buf or server.mode in ("hang", "close"):
            return
        assert self.transport is not None
        server.requests.append(self.buf)
        if server.mode == "ok":
            server.oks += 1
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        else:
            server.fails += 1
            self.transport.write(b"HTTP/1.1 500 Oops\r\ncontent-length: 0\r\n\r\n")
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.server.open.discard(self.transport)


class Upstream:
    """A loopback server whose behaviour can be switched while probes run."""

    def __init__(self, mode: Mode) -> None:
        self.mode: Mode = mode
        self.connections = 0
        self.oks = 0
        self.fails = 0
        self.times: list[float] = []
        self.requests: list[bytes] = []
        self.open: set[asyncio.Transport] = set()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self, unix_path: str = "") -> Upstream:
        loop = asyncio.get_running_loop()
        if unix_path:
            self.server = await loop.create_unix_server(lambda: _Conn(self), unix_path)
        else:
            self.server = await loop.create_server(lambda: _Conn(self), "127.0.0.1", 0)
            self.port = self.server.sockets[0].getsockname()[1]
        return self

    @property
    def address(self) -> Address:
        return Address("127.0.0.1", self.port)

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for transport in list(self.open):
            transport.close()
        await self.server.wait_closed()
        await asyncio.sleep(0)  # let the transports' connection_lost run


def refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def target(address: Address, **kw: object) -> ProbeTarget:
    settings: dict[str, object] = {
        "interval": INTERVAL,
        "timeout": 0.2,
        "healthy_threshold": 2,
        "unhealthy_threshold": 3,
    }
    settings.update(kw)
    return ProbeTarget(key=str(address), address=address, **settings)  # type: ignore[arg-type]


async def until(cond: Callable[[], bool], limit: float = 3.0) -> None:
    deadline = time.monotonic() + limit
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


def run(main: Callable[[], Awaitable[None]]) -> None:
    async def wrapper() -> None:
        await main()
        # Nothing may outlive the test: every probe task must be gone.
        assert asyncio.all_tasks() == {asyncio.current_task()}

    asyncio.run(wrapper())


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, bool]] = []

    def __call__(self, key: str, healthy: bool) -> None:
        self.events.append((key, healthy))


# -- single probes -------------------------------------------------------------------------


def test_single_probes_against_each_kind_of_server(tmp_path: Path) -> None:
    async def main() -> None:
        ok, fail, hang, close = [await Upstream(m).start() for m in ("ok", "fail", "hang", "close")]
        dead = Address("127.0.0.1", refused_port())
        unix = await Upstream("ok").start(str(tmp_path / "up.sock"))
        try:
            assert await check(target(ok.address)) == ""
            assert await check(target(fail.address)) == "unexpected status 500"
            assert await check(target(fail.address, expected=frozenset({200, 500}))) == ""
            t0 = time.monotonic()
            assert await check(target(hang.address, timeout=0.1)) == "timed out after 0.1s"
            assert 0.09 < time.monotonic() - t0 < 1.0
            assert await check(target(close.address)) != ""
            assert "refused" in (await check(target(dead))).lower()
            # TCP probes only connect.
            assert await check(target(hang.address, kind="TCP")) == ""
            assert await check(target(fail.address, kind="TCP")) == ""
            assert "refused" in (await check(target(dead, kind="TCP"))).lower()
            unix_addr = Address(path=str(tmp_path / "up.sock"))
            assert await check(target(unix_addr)) == ""
            assert await check(target(unix_addr, kind="TCP")) == ""
            assert unix.requests[0].startswith(b"GET / HTTP/1.1\r\nhost: localhost\r\n")
        finally:
            for server in (ok, fail, hang, close, unix):
                await server.stop()

    run(main)


def test_request_line_and_headers() -> None:
    async def main() -> None:
        up = await Upstream("ok").start()
        try:
            assert await check(target(up.address, path="/healthz?deep=1", method="HEAD")) == ""
            assert await check(target(up.address, host="svc.example.test")) == ""
        finally:
            await up.stop()
        first, second = up.requests
        assert first == (
            b"HEAD /healthz?deep=1 HTTP/1.1\r\nhost: 127.0.0.1:%d\r\n"
            b"user-agent: turnout-health\r\nconnection: close\r\n\r\n" % up.port
        )
        assert b"\r\nhost: svc.example.test\r\n" in second

    run(main)


def test_dns_names_are_resolved_and_every_address_is_tried() -> None:
    async def main() -> None:
        up = await Upstream("ok").start()
        try:
            # "localhost" may resolve to ::1 first, where nothing listens.
            assert await check(target(Address("localhost", up.port))) == ""
            error = await check(target(Address("no-such-host.invalid", up.port), timeout=2.0))
            assert error.startswith("cannot resolve 'no-such-host.invalid'") or "timed out" in error
        finally:
            await up.stop()

    run(main)


@pytest.mark.parametrize(
    "kw",
    [
        {"interval": 0.0},
        {"timeout": -1.0},
        {"jitter": 1.0},
        {"healthy_threshold": 0},
        {"path": "healthz"},
        {"path": "/a b"},
        {"method": "GE T"},
        {"host": "a\r\nx: y"},
        {"kind": "UDP"},
    ],
)
def test_invalid_targets_are_rejected(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        target(Address("127.0.0.1", 80), **kw)


# -- the checker ---------------------------------------------------------------------------


def test_thresholds_and_one_callback_per_flip() -> None:
    async def main() -> None:
        up = await Upstream("ok").start()
        events = Recorder()
        fails_at_flip: list[int] = []
        oks_at_flip: list[int] = []

        def on_change(key: str, healthy: bool) -> None:
            events(key, healthy)
            (oks_at_flip if healthy else fails_at_flip).append(up.oks if healthy else up.fails)

        checker = HealthChecker(on_change)
        t = target(up.address)
        try:
            checker.configure([t])
            assert checker.healthy(t.key) is True  # healthy until proven otherwise
            await until(lambda: up.oks >= 3)
            assert events.events == []
            up.mode = "fail"
            await until(lambda: bool(events.events))
            assert events.events == [(t.key, False)]
            assert fails_at_flip == [3]  # exactly the third consecutive failure
            assert checker.healthy(t.key) is False
            await until(lambda: up.fails >= 8)
            assert events.events == [(t.key, False)]  # no repeated callback
            up.oks = 0
            up.mode = "ok"
            await until(lambda: len(events.events) == 2)
            assert events.events == [(t.key, False), (t.key, True)]
            assert oks_at_flip == [2]  # exactly the second consecutive success
            await until(lambda: up.oks >= 6)
            assert len(events.events) == 2
            snap = checker.snapshot()[t.key]
            assert snap["healthy"] is True and snap["lastError"] == ""
            assert snap["consecutive"] >= 6 and snap["failures"] >= 8
            assert snap["checks"] >= 14 and abs(snap["lastCheck"] - time.time()) < 5
        finally:
            await checker.close()
            await up.stop()

    run(main)


@pytest.mark.parametrize("mode", ["hang", "close", "refused"])
def test_unresponsive_endpoints_go_unhealthy(mode: Mode | Literal["refused"]) -> None:
    async def main() -> None:
        up = await Upstream("hang" if mode == "refused" else mode).start()
        address = Address("127.0.0.1", refused_port()) if mode == "refused" else up.address
        events = Recorder()
        checker = HealthChecker(events)
        t = target(address, timeout=0.05)
        try:
            checker.configure([t])
            await until(lambda: bool(events.events))
            assert events.events == [(t.key, False)]
            snap = checker.snapshot()[t.key]
            assert snap["healthy"] is False and snap["consecutive"] == 3
            assert snap["checks"] == snap["failures"] == 3
            if mode == "hang":
                assert snap["lastError"] == "timed out after 0.05s"
                assert up.connections == 3
            elif mode == "refused":
                assert "refused" in snap["lastError"].lower()
            else:
                assert snap["lastError"]
        finally:
            await checker.close()
            await up.stop()

    run(main)


def test_configure_keeps_state_of_unchanged_and_retuned_targets() -> None:
    async def main() -> None:
        bad = await Upstream("fail").start()
        good = await Upstream("ok").start()
        events = Recorder()
        oks_at_flip: list[int] = []

        def on_change(key: str, healthy: bool) -> None:
            events(key, healthy)
            oks_at_flip.append(bad.oks)

        checker = HealthChecker(on_change)
        tb, tg = target(bad.address), target(good.address)
        try:
            checker.configure([tb, tg])
            await until(lambda: bool(events.events))
            assert events.events == [(tb.key, False)]
            before = checker.snapshot()[tb.key]
            # An equal target (another instance): same task, same state.
            checker.configure([target(bad.address), target(good.address)])
            assert checker.healthy(tb.key) is False
            assert checker.snapshot()[tb.key]["checks"] >= before["checks"]
            # Retuned: the verdict and counters survive, and no flip is reported.
            retuned = target(bad.address, path="/ready", healthy_threshold=4)
            checker.configure([retuned, tg])
            assert checker.healthy(tb.key) is False
            assert checker.snapshot()[tb.key]["failures"] >= before["failures"]
            count = bad.fails
            await until(lambda: bad.fails >= count + 3)
            assert events.events == [(tb.key, False)]
            assert bad.requests[-1].startswith(b"GET /ready ")
            assert checker.healthy(tg.key) is True
            # The new thresholds apply: recovery now takes four successes.
            bad.mode = "ok"
            await until(lambda: len(events.events) == 2)
            assert events.events == [(tb.key, False), (tb.key, True)]
            assert oks_at_flip == [0, 4] and checker.healthy(tb.key) is True
        finally:
            await checker.close()
            await bad.stop()
            await good.stop()

    run(main)


def test_removal_stops_probing_and_reports_the_endpoint_healthy_again() -> None:
    async def main() -> None:
        bad = await Upstream("fail").start()
        good = await Upstream("ok").start()
        events = Recorder()
        checker = HealthChecker(events)
        tb, tg = target(bad.address), target(good.address)
        try:
            checker.configure([tb, tg])
            await until(lambda: bool(events.events))
            await until(lambda: good.oks >= 2)
            checker.configure([])
            # The unhealthy endpoint has no active checks any more: it counts as healthy.
            assert events.events == [(tb.key, False), (tb.key, True)]
            assert checker.snapshot() == {} and checker.healthy(tb.key) is None
            await asyncio.sleep(INTERVAL * 2)  # a connect already under way may land
            seen = (bad.connections, good.connections)
            await asyncio.sleep(INTERVAL * 8)
            assert (bad.connections, good.connections) == seen
            assert asyncio.all_tasks() == {asyncio.current_task()}
            # Adding it back starts afresh, healthy first.
            checker.configure([tg])
            assert checker.healthy(tg.key) is True
            await until(lambda: good.connections > seen[1])
        finally:
            await checker.close()
            await bad.stop()
            await good.stop()
        assert len(events.events) == 2

    run(main)


def test_close_cancels_probes_in_flight() -> None:
    async def main() -> None:
        hang = await Upstream("hang").start()
        checker = HealthChecker(Recorder())
        try:
            checker.configure([target(hang.address, timeout=5.0, interval=5.0)])
            await until(lambda: hang.connections == 1)  # a probe is waiting for an answer
            t0 = time.monotonic()
            await checker.close()
            assert time.monotonic() - t0 < 0.5
            assert asyncio.all_tasks() == {asyncio.current_task()}
            with pytest.raises(RuntimeError, match="closed"):
                checker.configure([])
            await until(lambda: not hang.open)  # the probe's socket was closed
        finally:
            await checker.close()  # idempotent
            await hang.stop()

    run(main)


def test_duplicate_keys_are_rejected_without_changes() -> None:
    async def main() -> None:
        up = await Upstream("ok").start()
        checker = HealthChecker(Recorder())
        t = target(up.address)
        try:
            checker.configure([t])
            with pytest.raises(ValueError, match="two health checks"):
                checker.configure([t, target(up.address, path="/other")])
            assert list(checker.snapshot()) == [t.key]
        finally:
            await checker.close()
            await up.stop()

    run(main)


def test_jitter_spreads_probes_within_bounds() -> None:
    async def main() -> None:
        up = await Upstream("ok").start()
        checker = HealthChecker(Recorder())
        try:
            checker.configure([target(up.address, interval=0.02, jitter=0.5)])
            await until(lambda: up.connections >= 12)
        finally:
            await checker.close()
            await up.stop()
        gaps = [b - a for a, b in zip(up.times, up.times[1:], strict=False)]
        # Each gap is a probe (short) plus a delay in [0.01, 0.03].
        assert min(gaps) >= 0.01 - 0.002
        assert len({round(g, 3) for g in gaps}) > 3  # not a fixed period

    run(main)


def test_a_failing_callback_does_not_stop_the_checks() -> None:
    async def main() -> None:
        up = await Upstream("fail").start()
        calls: list[bool] = []

        def on_change(key: str, healthy: bool) -> None:
            calls.append(healthy)
            raise RuntimeError("boom")

        checker = HealthChecker(on_change)
        try:
            checker.configure([target(up.address)])
            await until(lambda: calls == [False])
            up.mode = "ok"
            await until(lambda: calls == [False, True])
        finally:
            await checker.close()
            await up.stop()

    run(main)
