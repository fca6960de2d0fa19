"""ExtAuthFilter without sockets: cached decisions (fake loop clock), the failure policy
and its log limit. The call-out itself runs against a real server in
tests/integration/test_ext_auth.py."""

from __future__ import annotations

import asyncio
import logging
from typing import cast

import pytest

from turnout.proxy.filters.base import FilterContext, LocalReply
from turnout.proxy.filters.extauth import Decision, ExtAuthFilter
from turnout.proxy.protocols.heads import RequestHead
from turnout.testing.fakeloop import FakeLoop


class Host:
    def filters_passed(self) -> None: ...
    def filter_answered(self, reply: LocalReply) -> None: ...
    def flush(self) -> None: ...


def context(loop: FakeLoop, auth: str = "Bearer a") -> FilterContext:
    head = RequestHead(
        b"GET", b"/x", b"", [(b"authorization", auth.encode()), (b"x-user", b"forged")]
    )
    return FilterContext(Host(), head, cast(asyncio.AbstractEventLoop, loop), b"10.0.0.1")


def test_cached_decisions_apply_until_the_ttl(caplog: pytest.LogCaptureFixture) -> None:
    loop = FakeLoop()
    flt = ExtAuthFilter("ns/p", [], "", (), (b"x-user",), 1.0, False, ttl=30.0, max_entries=1)
    allowed = Decision([(b"x-user", b"alice")], None)
    ctx = context(loop)
    flt.cache[flt._key(ctx)] = (loop.time() + 30.0, allowed)
    assert flt.on_request(ctx) is None
    assert [v for n, v in ctx.head.headers if n == b"x-user"] == [b"alice"]  # not forged
    loop.advance(31.0)
    with caplog.at_level(logging.WARNING, "turnout.extauth"):
        # expired and no endpoint to ask: a failure, closed (403)
        reply = flt.on_request(context(loop))
        assert isinstance(reply, LocalReply) and reply.status == 403
        assert reply.code == b"ext_auth_error"
        for _ in range(6):
            flt.on_request(context(loop, "Bearer other"))
    assert flt.failures == 7
    assert len(caplog.records) == 3  # the 1st, 2nd and 4th failures only


def test_fail_open_lets_requests_through() -> None:
    flt = ExtAuthFilter("ns/p", [], "", (), (), 1.0, True)
    assert flt.on_request(context(FakeLoop())) is None
