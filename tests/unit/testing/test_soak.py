"""The soak's judgement: which failures a worker kill explains, and how slopes are fitted."""

from __future__ import annotations

import pytest

from turnout.testing.soak import Failure, Kill, Sample, classify, resource_trend, steep

KILL = Kill(7, 100.0, 100.05, ports=frozenset({40001, 40002}), upstream_ports=frozenset({45000}))


def _fail(at: float, port: int | None, kind: str = "h1-keepalive") -> Failure:
    return Failure(kind, at, port, "ReadError('')")


def test_a_failure_on_the_victims_connection_right_after_the_kill_is_allowed() -> None:
    grpc = Failure("grpc-stream", 104.0, 45000, "UNAVAILABLE", upstream=True)
    verdict = classify([_fail(100.06, 40001), _fail(104.0, 40002, "h2"), grpc], [KILL], 5.0)
    assert len(verdict.allowed) == 3 and verdict.unallowed == []


@pytest.mark.parametrize(
    ("failure", "why"),
    [
        (_fail(100.06, 40003), "a connection the victim did not hold"),
        (_fail(99.9, 40001), "before the victim was frozen"),
        (_fail(105.1, 40001), "after the window"),
        (_fail(100.06, None), "a request that never had a connection"),
        (_fail(100.06, 45000), "a client port that is the victim's upstream-side port"),
        (Failure("grpc", 100.06, 40001, "x", upstream=True), "and the other way round"),
    ],
)
def test_anything_else_is_a_failure(failure: Failure, why: str) -> None:
    verdict = classify([failure], [KILL], 5.0)
    assert verdict.unallowed == [failure], why


def test_each_kill_explains_only_its_own_connections() -> None:
    later = Kill(pid=8, frozen_at=200.0, killed_at=200.1, ports=frozenset({50000}))
    verdict = classify([_fail(200.2, 40001), _fail(200.2, 50000)], [KILL, later], 5.0)
    assert [f.port for f in verdict.allowed] == [50000]
    assert [f.port for f in verdict.unallowed] == [40001]


def _series(
    pid: int, role: str, rss_per_s: float, fds_per_s: float, start: float = 0.0
) -> list[Sample]:
    return [
        Sample(start + t, pid, role, int(100 * 2**20 + rss_per_s * t), int(20 + fds_per_s * t))
        for t in range(0, 1201, 10)
    ]


def test_slopes_are_per_hour_and_leave_the_warm_up_out() -> None:
    # 1 KiB/s is 3.5 MiB/h; a warm-up jump (first 60 s) must not count.
    samples = _series(1, "supervisor", 1024, 0)
    samples[:6] = [Sample(s.at, 1, "supervisor", 10 * 2**20, 5) for s in samples[:6]]
    (trend,) = resource_trend(samples, warmup=60)
    assert trend.rss_slope == pytest.approx(1024 * 3600)
    assert trend.fds_slope == pytest.approx(0)
    assert trend.fds_start == trend.fds_end == 20
    assert trend.seconds == 1140
    assert steep(trend, min_seconds=600, max_rss_mib_h=8, max_fd_drift=5) == []
    assert steep(trend, min_seconds=600, max_rss_mib_h=1, max_fd_drift=5) == [
        "supervisor 1: RSS grows 3.5 MiB/h (limit 1)"
    ]


def test_a_replacement_worker_is_its_own_line() -> None:
    old = _series(2, "worker", 0, 0)[:30]
    new = _series(3, "worker", 0, 0.01, start=300)
    trends = {t.pid: t for t in resource_trend(old + new, warmup=60)}
    assert trends[2].rss_slope == pytest.approx(0)
    assert trends[3].fds_slope == pytest.approx(36, rel=1e-3)  # fds are whole numbers
    assert "open fds floor rose 20 → 29" in steep(trends[3], 600, 8, 5)[0]


def test_a_short_line_is_not_judged() -> None:
    (trend,) = resource_trend(_series(4, "worker", 10 * 2**20, 1)[:10], warmup=0)
    assert trend.rss_slope is not None and trend.rss_slope > 8 * 2**20
    assert steep(trend, min_seconds=600, max_rss_mib_h=8, max_fd_drift=5) == []
    assert resource_trend(_series(5, "worker", 0, 0)[:3], warmup=60) == []


def test_fds_open_for_a_moment_are_not_a_leak() -> None:
    # bursts of +12 during reloads, back to 27 between them: flat; a floor rising by 6 is not
    samples = [
        Sample(t, 9, "supervisor", 2**20, 27 + (12 if t % 50 == 0 else 0))
        for t in range(0, 1201, 10)
    ]
    (trend,) = resource_trend(samples, warmup=0)
    assert (trend.fds_floor_start, trend.fds_floor_end) == (27, 27)
    assert steep(trend, 600, 8, 5) == []
    leaking = [Sample(s.at, 9, s.role, s.rss, s.fds + (6 if s.at > 900 else 0)) for s in samples]
    (trend,) = resource_trend(leaking, warmup=0)
    assert steep(trend, 600, 8, 5) == ["supervisor 9: open fds floor rose 27 → 33 (limit +5)"]
