"""SecurityPolicy bruteForce: the ban state machine with explicit times, and the guard on
a private table with a fake clock (two guards on one table stand for two workers)."""

from __future__ import annotations

from typing import Any

from turnout.proxy.filters.base import FilterContext
from turnout.proxy.filters.bruteforce import BanCounter, BruteForceGuard
from turnout.proxy.protocols.heads import RequestHead
from turnout.proxy.ratelimit.local import LocalStore
from turnout.testing.clock import FakeClock


def test_failures_within_the_window_ban() -> None:
    c = BanCounter(max_failures=3, window=60.0, ban_for=600.0)
    s = [0.0, 0.0, 0.0]
    assert c.step(s, 0, 100.0, 0).allowed  # asking counts nothing
    assert c.step(s, 0, 100.0, 1).allowed
    assert c.step(s, 0, 110.0, 1).allowed
    third = c.step(s, 0, 120.0, 1)
    assert not third.allowed and third.retry_after == 600.0
    banned = c.step(s, 0, 300.0, 0)
    assert not banned.allowed and banned.retry_after == 420.0
    assert c.step(s, 0, 720.0, 0).allowed  # the ban is over
    assert c.step(s, 0, 720.0, 1).allowed  # and the count starts again


def test_failures_spread_over_more_than_the_window_do_not_ban() -> None:
    c = BanCounter(max_failures=3, window=60.0, ban_for=600.0)
    s = [0.0, 0.0, 0.0]
    for t in (100.0, 150.0, 161.0, 200.0):  # the window restarts at 161
        assert c.step(s, 0, t, 1).allowed
    assert not c.step(s, 0, 210.0, 1).allowed  # 161, 200, 210: three within 60 s


class _Host:
    pass


def _ctx(ip: bytes) -> FilterContext:
    head = RequestHead(b"GET", b"/", b"", [])
    host: Any = _Host()
    loop: Any = None  # the guard reads only the client address
    return FilterContext(host, head, loop, ip)


def test_the_guard_bans_an_address_in_every_worker_sharing_the_table() -> None:
    clock = FakeClock()
    table = LocalStore.private(1024)
    w1 = BruteForceGuard("default/api", 3, "1m", "10m", table, None, clock.monotonic)
    w2 = BruteForceGuard("default/api", 3, "1m", "10m", table, None, clock.monotonic)
    bad, other = _ctx(b"10.0.0.7"), _ctx(b"10.0.0.8")
    w1.failed(bad)
    w2.failed(bad)
    assert w1.check(bad) is None
    w2.failed(bad)  # the third failure, in either worker, bans
    for guard in (w1, w2):
        reply = guard.check(bad)
        assert reply is not None
        assert (reply.status, reply.code) == (403, b"banned")
        assert reply.headers == [(b"retry-after", b"600")]
    assert w1.check(other) is None  # per address
    clock.advance(599.5)
    reply = w1.check(bad)
    assert reply is not None and reply.headers == [(b"retry-after", b"1")]
    clock.advance(0.5)
    assert w1.check(bad) is None and w2.check(bad) is None


def test_policies_count_apart() -> None:
    clock = FakeClock()
    table = LocalStore.private(1024)
    a = BruteForceGuard("default/a", 1, "1m", "10m", table, None, clock.monotonic)
    b = BruteForceGuard("default/b", 1, "1m", "10m", table, None, clock.monotonic)
    ctx = _ctx(b"10.0.0.7")
    a.failed(ctx)
    assert a.check(ctx) is not None
    assert b.check(ctx) is None


def test_by_consumer_locks_a_known_user_from_any_address_with_a_fake_clock() -> None:
    import base64

    from turnout.proxy.filters.bruteforce import USER_LOCKED

    clock = FakeClock()
    guard = BruteForceGuard(
        "default/b", 2, "1m", "10m", LocalStore.private(1024), None, clock.monotonic
    )
    guard.lock_users(frozenset({b"alice"}))

    def ctx(user: bytes, ip: bytes) -> FilterContext:
        c = _ctx(ip)
        auth = b"Basic " + base64.b64encode(user + b":pw")
        c.head = RequestHead(b"GET", b"/", b"", [(b"authorization", auth)])
        return c

    guard.failed(ctx(b"alice", b"10.0.0.1"))
    guard.failed(ctx(b"mallory", b"10.0.0.9"))  # unknown: not counted per user
    assert guard.check(ctx(b"alice", b"10.0.0.3")) is None
    guard.failed(ctx(b"alice", b"10.0.0.2"))  # the second, from another address
    locked = guard.check(ctx(b"alice", b"10.0.0.3"))
    assert locked is not None and locked.message == USER_LOCKED
    assert guard.check(ctx(b"bob", b"10.0.0.3")) is None
    assert guard.check(_ctx(b"10.0.0.3")) is None  # the address itself is not banned
    clock.advance(601.0)
    assert guard.check(ctx(b"alice", b"10.0.0.3")) is None


class _Answering:
    def on_request(self, ctx: FilterContext) -> Any:
        from turnout.proxy.filters.base import LocalReply

        return LocalReply(401, b"unauthorized")

    def resume(self, ctx: FilterContext, outcome: object) -> Any:
        return None


class _Passing:
    def on_request(self, ctx: FilterContext) -> Any:
        return None

    def resume(self, ctx: FilterContext, outcome: object) -> Any:
        return None


def test_a_traced_context_keeps_the_filters_that_ran_and_cuts_after_an_answer() -> None:
    from turnout.proxy.filters.base import filter_name, request_filter

    class Host:
        def filter_answered(self, reply: object) -> None:
            self.reply = reply

    first, answering, never = (
        request_filter(_Passing()),
        request_filter(_Answering()),
        request_filter(_Passing()),
    )
    traced = FilterContext(Host(), RequestHead(b"GET", b"/", b"", []), None, b"10.0.0.1")  # type: ignore[arg-type]
    traced.ran = ()
    traced.run((first,))
    traced.run((first, answering, never))
    assert traced.ran == (first, first, answering)
    assert [filter_name(f) for f in traced.ran] == ["_Passing", "_Passing", "_Answering"]
    untraced = FilterContext(Host(), RequestHead(b"GET", b"/", b"", []), None, b"10.0.0.1")  # type: ignore[arg-type]
    untraced.run((first, answering))
    assert untraced.ran is None
