"""EndpointHealth, ActiveState and OutlierDetector: verdicts, ejections and recovery."""

from __future__ import annotations

import random

import pytest

from turnout.proxy.upstream.health import (
    ActiveState,
    EndpointHealth,
    OutlierDetector,
    ejected_count,
)
from turnout.proxy.upstream.probe import jittered

# -- EndpointHealth ----------------------------------------------------------------------


def test_endpoint_health_starts_available() -> None:
    h = EndpointHealth("10.0.0.1:80")
    assert h.available(0.0) and h.available(1e9)
    assert (h.active_ok, h.ejected_until, h.available_since, h.inflight) == (True, 0.0, 0.0, 0)
    assert h.ejections == 0 and not h.ejected_now(5.0)
    assert "10.0.0.1:80" in repr(h)


def test_active_verdict_gates_availability_and_restarts_slow_start() -> None:
    h = EndpointHealth()
    h.set_active(False, 10.0)
    assert not h.available(11.0)
    h.set_active(False, 12.0)
    assert h.available_since == 0.0
    h.set_active(True, 13.0)
    assert h.available(13.0) and h.available_since == 13.0
    h.set_active(True, 20.0)  # no change: slow start is not restarted
    assert h.available_since == 13.0


def test_active_recovery_while_ejected_starts_slow_start_when_the_ejection_ends() -> None:
    h = EndpointHealth()
    h.set_active(False, 1.0)
    h.ejected_until = 50.0
    h.set_active(True, 10.0)
    assert h.available_since == 0.0 and not h.available(49.9)
    assert h.available(60.0) and h.available_since == 50.0


def test_active_recovery_after_an_unnoticed_expiry_uses_the_recovery_time() -> None:
    h = EndpointHealth()
    h.set_active(False, 1.0)
    h.ejected_until = 5.0
    h.set_active(True, 10.0)  # the ejection ended at 5 while it was failing its checks
    assert h.ejected_until == 0.0 and h.available_since == 10.0
    assert h.available(10.0)


def test_unavailable_if_active_checks_fail_even_after_the_ejection_ends() -> None:
    h = EndpointHealth()
    h.ejected_until = 5.0
    h.set_active(False, 1.0)
    assert not h.available(6.0)
    assert h.ejected_until == 0.0 and h.available_since == 0.0


def test_ejected_count() -> None:
    hs = [EndpointHealth() for _ in range(4)]
    hs[0].ejected_until = 10.0
    hs[1].ejected_until = 20.0
    assert ejected_count(hs, 5.0) == 2
    assert ejected_count(hs, 15.0) == 1
    assert ejected_count(hs, 25.0) == 0


# -- ActiveState ---------------------------------------------------------------------------


def test_active_state_thresholds_and_single_flips() -> None:
    s = ActiveState(healthy_threshold=2, unhealthy_threshold=3)
    assert s.healthy
    assert [s.observe(False) for _ in range(3)] == [False, False, True]
    assert not s.healthy and s.consecutive == 3
    assert [s.observe(False) for _ in range(5)] == [False] * 5  # no second flip
    assert [s.observe(True) for _ in range(2)] == [False, True]
    assert s.healthy and s.consecutive == 2
    assert [s.observe(True) for _ in range(5)] == [False] * 5


def test_active_state_needs_consecutive_results() -> None:
    s = ActiveState(healthy_threshold=2, unhealthy_threshold=3)
    for ok in (False, False, True, False, False, True):
        assert not s.observe(ok)
    assert s.healthy
    assert not s.observe(False) and not s.observe(False)
    assert s.observe(False)
    for ok in (True, False, True, False):
        assert not s.observe(ok)
    assert not s.healthy
    assert "healthy=False" in repr(s)


def test_active_state_initially_unhealthy_and_threshold_one() -> None:
    s = ActiveState(1, 1, initially_healthy=False)
    assert not s.healthy
    assert not s.observe(False)
    assert s.observe(True) and s.healthy
    assert s.observe(False) and not s.healthy


@pytest.mark.parametrize(("good", "bad"), [(0, 1), (1, 0), (-1, 3)])
def test_active_state_rejects_bad_thresholds(good: int, bad: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ActiveState(good, bad)


def test_jitter_bounds() -> None:
    rand = random.Random(7)
    samples = [jittered(1.0, 0.2, rand) for _ in range(5000)]
    assert min(samples) >= 0.8 and max(samples) <= 1.2
    assert min(samples) < 0.82 and max(samples) > 1.18  # the whole range is used
    assert 0.98 < sum(samples) / len(samples) < 1.02
    assert jittered(2.5, 0.0, rand) == 2.5


# -- OutlierDetector -----------------------------------------------------------------------


def _fail(d: OutlierDetector, h: EndpointHealth, n: int, now: float, status: int = 500) -> bool:
    """Report ``n`` failures; True when the last one ejected."""
    ejected = False
    for _ in range(n):
        ejected = d.on_response(h, status, now, total=10)
    return ejected


def test_consecutive_5xx_ejects_at_the_threshold() -> None:
    d = OutlierDetector(consecutive_5xx=3, base_ejection_time=30.0, max_ejection_percent=100)
    h = EndpointHealth()
    assert not _fail(d, h, 2, now=1.0)
    assert d.on_response(h, 503, 1.0, total=10)
    assert h.ejected_until == 31.0 and h.ejections == 1 and d.ejections_5xx == 1
    assert not h.available(30.9) and h.ejected_now(30.9)
    assert (h.consecutive_5xx, h.consecutive_gateway) == (0, 0)


@pytest.mark.parametrize("ok_status", [200, 204, 301, 404, 499])
def test_a_success_resets_both_counters(ok_status: int) -> None:
    d = OutlierDetector(consecutive_5xx=3, consecutive_gateway_errors=3, max_ejection_percent=100)
    h = EndpointHealth()
    _fail(d, h, 2, now=1.0, status=0)
    assert (h.consecutive_5xx, h.consecutive_gateway) == (2, 2)
    assert not d.on_response(h, ok_status, 1.0, total=10)
    assert (h.consecutive_5xx, h.consecutive_gateway) == (0, 0)
    assert not _fail(d, h, 2, now=1.0, status=502)
    assert h.ejected_until == 0.0


@pytest.mark.parametrize("status", [0, 502, 503, 504])
def test_gateway_errors_eject(status: int) -> None:
    d = OutlierDetector(consecutive_5xx=0, consecutive_gateway_errors=2, max_ejection_percent=100)
    h = EndpointHealth()
    assert not d.on_response(h, status, 1.0, total=10)
    assert d.on_response(h, status, 1.0, total=10)
    assert d.ejections_gateway == 1 and d.ejections_5xx == 0


def test_other_5xx_count_as_5xx_but_reset_the_gateway_counter() -> None:
    d = OutlierDetector(consecutive_5xx=0, consecutive_gateway_errors=2, max_ejection_percent=100)
    h = EndpointHealth()
    for status in (502, 500, 503, 501, 0, 500, 504):
        assert not d.on_response(h, status, 1.0, total=10)
    assert h.consecutive_5xx == 7 and h.consecutive_gateway == 1
    d5 = OutlierDetector(consecutive_5xx=4, consecutive_gateway_errors=0, max_ejection_percent=100)
    h5 = EndpointHealth()
    for status in (502, 500, 0):
        assert not d5.on_response(h5, status, 1.0, total=10)
    assert d5.on_response(h5, 501, 1.0, total=10)


def test_both_detectors_disabled_never_eject() -> None:
    d = OutlierDetector(consecutive_5xx=0, consecutive_gateway_errors=0, max_ejection_percent=100)
    h = EndpointHealth()
    assert not _fail(d, h, 100, now=1.0, status=0)
    assert h.available(1.0)


def test_ejection_time_grows_and_is_capped() -> None:
    d = OutlierDetector(
        consecutive_5xx=1,
        base_ejection_time=10.0,
        max_ejection_percent=100,
        max_ejection_time=35.0,
        interval=1000.0,  # no decay within this test
    )
    h = EndpointHealth()
    now = 0.0
    durations = []
    for _ in range(5):
        assert d.on_response(h, 500, now, total=10)
        durations.append(h.ejected_until - now)
        now = h.ejected_until  # fail again the moment it comes back
        assert h.available(now)
    assert durations == [10.0, 20.0, 30.0, 35.0, 35.0]
    assert h.ejections == 5


def test_max_ejection_time_never_below_base() -> None:
    d = OutlierDetector(consecutive_5xx=1, base_ejection_time=60.0, max_ejection_time=5.0)
    h = EndpointHealth()
    assert d.on_response(h, 500, 0.0, total=1)
    assert h.ejected_until == 60.0


def test_the_multiplier_decays_while_the_endpoint_behaves() -> None:
    d = OutlierDetector(
        consecutive_5xx=1, base_ejection_time=10.0, max_ejection_percent=100, interval=5.0
    )
    h = EndpointHealth()
    assert d.on_response(h, 500, 0.0, total=10)  # x1, back at 10
    assert d.on_response(h, 500, 10.0, total=10)  # x2, back at 30
    assert d.on_response(h, 500, 30.0, total=10)  # x3, back at 60
    assert h.ejected_until == 60.0
    # 12 s healthy = two full intervals: x3 decays to x1, so this ejection is x2.
    assert h.available(72.0)
    assert d.on_response(h, 500, 72.0, total=10)
    assert h.ejected_until == 92.0
    # A long healthy stretch forgives everything: back to the base time.
    assert d.on_response(h, 500, 1000.0, total=10)
    assert h.ejected_until == 1010.0


def test_recovery_is_lazy_and_sets_available_since_to_the_end_of_the_ejection() -> None:
    d = OutlierDetector(consecutive_5xx=1, base_ejection_time=30.0, max_ejection_percent=100)
    h = EndpointHealth()
    assert d.on_response(h, 500, 100.0, total=4)
    assert h.available_since == 0.0
    assert not h.available(129.999)
    assert h.ejected_until == 130.0  # still ejected: nothing changed
    assert h.available(500.0)  # noticed long after the fact
    assert h.available_since == 130.0 and h.ejected_until == 0.0
    assert h.available(501.0) and h.available_since == 130.0


def test_ejected_now_also_releases() -> None:
    d = OutlierDetector(consecutive_5xx=1, base_ejection_time=1.0, max_ejection_percent=100)
    h = EndpointHealth()
    assert d.on_response(h, 0, 0.0, total=4)
    assert h.ejected_now(0.5)
    assert not h.ejected_now(1.5)
    assert h.ejected_until == 0.0 and h.available_since == 1.0


def test_results_while_ejected_are_ignored() -> None:
    d = OutlierDetector(consecutive_5xx=2, base_ejection_time=10.0, max_ejection_percent=100)
    h = EndpointHealth()
    assert _fail(d, h, 2, now=0.0)
    assert not _fail(d, h, 10, now=5.0)  # late answers to requests sent before
    assert h.consecutive_5xx == 0 and h.ejections == 1 and h.ejected_until == 10.0
    assert not d.on_response(h, 500, 11.0, total=10)  # back: counting starts afresh
    assert h.consecutive_5xx == 1


@pytest.mark.parametrize(
    ("percent", "total", "allowed"),
    [(10, 10, 1), (10, 3, 1), (10, 25, 2), (50, 4, 2), (50, 5, 2), (100, 3, 3), (0, 10, 0)],
)
def test_max_ejection_percent(percent: int, total: int, allowed: int) -> None:
    d = OutlierDetector(consecutive_5xx=1, max_ejection_percent=percent)
    assert d.allowed(total) == allowed
    hs = [EndpointHealth() for _ in range(total)]
    ejected = [d.on_response(h, 500, 1.0, total=total) for h in hs]
    assert sum(ejected) == allowed
    assert d.ejections_overflow == total - allowed
    assert ejected_count(hs, 1.0) == allowed


def test_an_endpoint_refused_for_lack_of_room_is_ejected_once_room_frees_up() -> None:
    d = OutlierDetector(consecutive_5xx=2, base_ejection_time=10.0, max_ejection_percent=50)
    a, b, c = EndpointHealth(), EndpointHealth(), EndpointHealth()
    assert _fail(d, a, 2, now=0.0)  # 50 % of 3 rounds down to 1
    assert not d.on_response(b, 500, 1.0, total=3)
    assert not d.on_response(b, 500, 1.0, total=3)  # at the threshold, but no room
    assert d.ejections_overflow == 1
    assert not d.on_response(c, 500, 1.0, total=3)
    assert not d.on_response(b, 500, 9.0, total=3)  # a is still out
    assert d.on_response(b, 500, 10.0, total=3)  # a came back: room for b
    assert b.ejected_until == 20.0


def test_the_callers_ejected_count_takes_precedence() -> None:
    d = OutlierDetector(consecutive_5xx=1, max_ejection_percent=20)
    h = EndpointHealth()
    assert not d.on_response(h, 500, 0.0, total=10, ejected=2)  # 2 of 10 already out
    assert d.on_response(h, 500, 0.0, total=10, ejected=1)
    assert "max%=20" in repr(d)
