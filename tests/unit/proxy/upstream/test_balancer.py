"""Smooth weighted round robin (the nginx algorithm)."""

from __future__ import annotations

import asyncio
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from turnout.core.netaddr import Address
from turnout.proxy.upstream.balancer import RoundRobinBalancer
from turnout.proxy.upstream.endpoints import Endpoint, Resolver
from turnout.proxy.upstream.pool import EndpointPool

_LOOP = asyncio.new_event_loop()  # pools need one; nothing runs on it here


def endpoint(name: str, weight: int) -> Endpoint:
    # A real pool (compiled code checks the type), but no connection is ever opened.
    pool = EndpointPool(Address(host=name, port=80), _LOOP, Resolver())
    return Endpoint(pool, weight)


def picks(balancer: RoundRobinBalancer, n: int) -> list[str]:
    out = []
    for _ in range(n):
        ep = balancer.pick()
        assert ep is not None
        out.append(ep.address.host)
    return out


def test_5_1_1_is_spread_out_exactly_like_nginx() -> None:
    balancer = RoundRobinBalancer([endpoint("a", 5), endpoint("b", 1), endpoint("c", 1)])

    assert picks(balancer, 14) == list("aabacaa") * 2


def test_equal_weights_rotate() -> None:
    balancer = RoundRobinBalancer([endpoint("a", 3), endpoint("b", 3), endpoint("c", 3)])

    assert picks(balancer, 7) == list("abcabca")


def test_weight_zero_is_never_picked() -> None:
    balancer = RoundRobinBalancer([endpoint("a", 0), endpoint("b", 2), endpoint("c", 0)])

    assert picks(balancer, 10) == ["b"] * 10
    assert [e.address.host for e in balancer.endpoints] == ["b"]


def test_no_live_endpoints_picks_none() -> None:
    assert RoundRobinBalancer([]).pick() is None
    assert RoundRobinBalancer([endpoint("a", 0)]).pick() is None


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 8), min_size=1, max_size=5))
def test_each_cycle_of_total_weight_picks_every_endpoint_weight_times(weights: list[int]) -> None:
    eps = [endpoint(f"e{i}", w) for i, w in enumerate(weights)]
    balancer = RoundRobinBalancer(eps)
    total = sum(weights)
    if total == 0:
        assert balancer.pick() is None
        return

    for _ in range(3):
        counts = Counter(picks(balancer, total))
        assert counts == Counter({f"e{i}": w for i, w in enumerate(weights) if w})
