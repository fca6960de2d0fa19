"""DNS SRV discovery state: refresh timing, keep-last-good, log-once, applying endpoints.
A fake clock and a scripted resolver: no sleeps, no network."""

from __future__ import annotations

import asyncio
import logging

import pytest

from turnout.config.configset import ConfigSet
from turnout.config.model.backend import DiscoverySpec
from turnout.config.parse import parse_text
from turnout.config.validate import validate
from turnout.control.discovery import DiscoveryError, Endpoints, SRVDiscovery
from turnout.testing.clock import FakeClock

MANIFEST = """\
apiVersion: turnout.dev/v1alpha1
kind: Backend
metadata: {name: orders}
spec:
  discovery: {dnsSRV: _http._tcp.orders.example, refresh: 10s, timeout: 1s}
---
apiVersion: turnout.dev/v1alpha1
kind: Backend
metadata: {name: fixed}
spec:
  endpoints: [{address: "127.0.0.1:9"}]
"""


def _config(text: str = MANIFEST) -> ConfigSet:
    resources, problems = parse_text(text, "b.yaml")
    config, more = validate(resources)
    assert not [p for p in problems + more if p.severity == "error"], problems + more
    return config


class Script:
    """Answers in order; an exception instance is raised, ``None`` hangs."""

    def __init__(self, *answers: Endpoints | Exception | None) -> None:
        self.answers = list(answers)
        self.asked: list[str] = []

    async def __call__(self, spec: DiscoverySpec) -> Endpoints:
        self.asked.append(spec.dns_srv)
        answer = self.answers.pop(0)
        if answer is None:
            await asyncio.Event().wait()
        if isinstance(answer, Exception):
            raise answer
        assert answer is not None
        return answer


def _endpoints(d: SRVDiscovery, config: ConfigSet) -> list[tuple[str, int]]:
    spec = d.apply(config).backends()[("default", "orders")].spec
    return [(e.address, e.weight) for e in spec.endpoints]


def test_refresh_is_due_every_refresh_interval_and_fills_the_backend() -> None:
    clock = FakeClock()
    script = Script((("10.0.0.1:80", 5),), (("10.0.0.2:80", 1),))
    d = SRVDiscovery(script, clock.monotonic)
    config = _config()
    d.track(config)
    assert _endpoints(d, config) == []  # nothing before the first answer
    assert asyncio.run(d.refresh()) is True
    assert _endpoints(d, config) == [("10.0.0.1:80", 5)]
    assert d.apply(config).backends()[("default", "fixed")].spec.endpoints[0].address == (
        "127.0.0.1:9"
    )
    clock.advance(9.9)
    assert asyncio.run(d.refresh()) is False and script.asked == ["_http._tcp.orders.example"]
    clock.advance(0.1)
    assert asyncio.run(d.refresh()) is True
    assert _endpoints(d, config) == [("10.0.0.2:80", 1)]


def test_the_same_answer_is_no_change() -> None:
    clock = FakeClock()
    d = SRVDiscovery(Script((("10.0.0.1:80", 1),), (("10.0.0.1:80", 1),)), clock.monotonic)
    d.track(_config())
    assert asyncio.run(d.refresh()) is True
    clock.advance(10)
    assert asyncio.run(d.refresh()) is False


def test_a_failed_lookup_keeps_the_last_good_endpoints_and_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    script = Script(
        (("10.0.0.1:80", 1),),
        DiscoveryError("NXDOMAIN"),
        (),  # an empty answer is a failure too
        DiscoveryError("SERVFAIL"),
        (("10.0.0.3:80", 1),),
    )
    d = SRVDiscovery(script, clock.monotonic)
    config = _config()
    d.track(config)
    asyncio.run(d.refresh())
    with caplog.at_level(logging.INFO, logger="turnout"):
        for _ in range(3):
            clock.advance(10)
            assert asyncio.run(d.refresh()) is False
            assert _endpoints(d, config) == [("10.0.0.1:80", 1)]
        failures = [r for r in caplog.records if "failed" in r.getMessage()]
        assert len(failures) == 1
        assert "NXDOMAIN" in failures[0].getMessage() and "keeping the last" in (
            failures[0].getMessage()
        )
        clock.advance(10)
        assert asyncio.run(d.refresh()) is True
    assert _endpoints(d, config) == [("10.0.0.3:80", 1)]
    assert any("works again" in r.getMessage() for r in caplog.records)


def test_a_lookup_is_bounded_by_its_timeout(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    d = SRVDiscovery(Script(None), clock.monotonic)
    config = _config(MANIFEST.replace("timeout: 1s", "timeout: 10ms"))
    d.track(config)
    with caplog.at_level(logging.WARNING, logger="turnout"):
        assert asyncio.run(d.refresh()) is False
    assert "no answer within 10ms" in caplog.text and "no endpoints yet" in caplog.text
    assert _endpoints(d, config) == []


def test_tracking_forgets_removed_names_and_wakes_for_new_ones() -> None:
    clock = FakeClock()
    d = SRVDiscovery(Script(), clock.monotonic)
    d.wake = asyncio.Event()
    d.track(_config())
    assert d.wake.is_set() and d.next_due() == clock.monotonic()
    d.track(_config(MANIFEST.split("---")[1]))
    assert d.entries == {} and d.next_due() is None


def test_fill_tracks_and_fills_each_revision() -> None:
    clock = FakeClock()
    d = SRVDiscovery(Script((("10.0.0.1:80", 2),)), clock.monotonic)
    config = _config()
    assert d.fill(config).backends()[("default", "orders")].spec.endpoints == ()
    asyncio.run(d.refresh())
    assert d.fill(config).backends()[("default", "orders")].spec.endpoints[0].weight == 2
    assert config.backends()[("default", "orders")].spec.endpoints == ()  # not mutated


def test_endpoints_and_discovery_together_is_a_located_error() -> None:
    text = MANIFEST.replace(
        "refresh: 10s, timeout: 1s}", 'refresh: 10s, timeout: 1s}\n  endpoints: [{address: "a:1"}]'
    )
    resources, problems = parse_text(text, "b.yaml")
    _, more = validate(resources)
    errors = [p for p in problems + more if p.severity == "error"]
    assert errors, "expected an error"
    shown = str(errors[0])
    assert "b.yaml:" in shown and "mutually exclusive" in shown, shown


def test_a_bad_srv_name_is_a_located_error() -> None:
    resources, problems = parse_text(MANIFEST.replace("_http._tcp", "_http _tcp"), "b.yaml")
    _, more = validate(resources)
    errors = [str(p) for p in problems + more if p.severity == "error"]
    assert errors and "b.yaml:5" in errors[0] and "spec.discovery.dnsSRV" in errors[0], errors


def test_an_unexpected_resolver_error_is_a_failed_lookup(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    d = SRVDiscovery(Script(OSError("network is unreachable")), clock.monotonic)
    d.track(_config())
    with caplog.at_level(logging.WARNING, logger="turnout"):
        assert asyncio.run(d.refresh()) is False
    assert "OSError: network is unreachable" in caplog.text
    assert d.next_due() == clock.monotonic() + 10  # tried again after refresh
