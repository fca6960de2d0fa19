"""The circuit breaker's states on a fake clock, and the mitigation filter's verdicts."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from turnout.config.parse import parse_text
from turnout.config.validate import validate
from turnout.control.remediation.breaker import BreakerOpen, Breakers, CircuitBreaker
from turnout.control.remediation.metrics import BreakerCollector
from turnout.proxy.filters.mitigation import MitigationFilter
from turnout.proxy.snapshot.mitigations import mitigation_filters
from turnout.testing.clock import FakeClock
from turnout.testing.exchange import ExchangeHarness
from turnout.testing.manifests import backend, dump, gateway, route, to


def test_closed_open_half_open_and_back() -> None:
    clock = FakeClock()
    b = CircuitBreaker("webhook:x", failure_threshold=2, reset_timeout=30, clock=clock)
    b.check()
    b.failed("refused")
    b.check()  # one failure: still closed
    b.failed("refused")
    assert b.state == "open"
    with pytest.raises(BreakerOpen, match="is open after 2 failures"):
        b.check()
    clock.advance(30)
    b.check()  # the trial call
    assert b.state == "half_open"
    with pytest.raises(BreakerOpen):
        b.check()  # only one trial at a time
    b.failed("refused")
    assert b.state == "open"
    clock.advance(30)
    b.check()
    b.succeeded()
    assert b.state == "closed"
    assert b.snapshot()["transitions"] == {
        "closed->open": 1,
        "open->half_open": 2,
        "half_open->open": 1,
        "half_open->closed": 1,
    }


def test_a_call_is_bounded_by_its_timeout_and_counts_as_a_failure() -> None:
    async def main() -> None:
        b = CircuitBreaker("slow", failure_threshold=1)
        with pytest.raises(TimeoutError):
            await b.call(lambda: asyncio.sleep(5), 0.01)
        assert b.state == "open" and b.last_error == "timed out after 0.01s"

    asyncio.run(main())


def mitigation(name: str, expires: str, **spec: object) -> dict[str, object]:
    return {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "Mitigation",
        "metadata": {"name": name},
        "spec": {"targetRef": {"name": "api"}, "expiresAt": expires, **spec},
    }


def manifests(*extra: dict[str, object]) -> str:
    return dump(gateway(), backend("app", 9000), route("api", [to("app")]), *extra)


def test_a_live_mitigation_sheds_the_route_with_a_fast_503() -> None:
    h = ExchangeHarness(manifests(mitigation("m1", "2999-01-01T00:00:00Z", shed={"percent": 100})))
    call = h.request()
    assert call.down.status == 503 and call.exchange.forward is None
    assert b'"error":"mitigation_shed"' in bytes(call.down.body)


def test_an_expired_mitigation_is_left_out_at_compile() -> None:
    h = ExchangeHarness(manifests(mitigation("m1", "2001-01-01T00:00:00Z", shed={"percent": 100})))
    call = h.request()
    assert call.down.status == 0 and call.exchange.forward is not None  # forwarded


def test_shares_add_up_and_clients_are_joined_per_route() -> None:
    resources, _ = parse_text(
        manifests(
            mitigation("a", "2999-01-01T00:00:00Z", shed={"percent": 70}),
            mitigation(
                "b", "2999-01-01T00:00:00Z", shed={"percent": 70}, blockClients=["10.0.0.1"]
            ),
        ),
        "m.yaml",
    )
    config, problems = validate(resources)
    assert problems == []
    (flt,) = mitigation_filters(config).values()
    assert flt.shed == 1.0 and flt.exact == frozenset({b"10.0.0.1"})


def test_blocked_addresses_and_networks() -> None:
    block = MitigationFilter(0, ("10.1.2.3", "192.0.2.0/24", "2001:db8::/32"))
    for ip in (b"10.1.2.3", b"192.0.2.77", b"2001:db8::1"):
        assert block._blocked(ip), ip
    for ip in (b"10.1.2.4", b"198.51.100.1", b"", b"not-an-ip"):
        assert not block._blocked(ip), ip


def test_breaker_state_and_transitions_are_metrics() -> None:
    clock = FakeClock()
    breakers = Breakers(clock, failure_threshold=1)
    breakers.get("webhook:hooks:443").failed("refused")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BreakerCollector(lambda: breakers))
    text = generate_latest(registry).decode()
    assert 'turnout_remediation_breaker_state{breaker="webhook:hooks:443"} 2.0' in text
    assert (
        'turnout_remediation_breaker_transitions_total{breaker="webhook:hooks:443",'
        'from="closed",to="open"} 1.0'
    ) in text
