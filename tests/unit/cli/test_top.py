"""``turnout top``'s arithmetic: rates and quantiles from two scrapes of ``/metrics``."""

from __future__ import annotations

import math

import pytest

from turnout.cli.top import Sample, parse, quantile, rows, sort_rows

SCRAPE = """\
# TYPE turnout_requests counter
turnout_requests_total{route="default/a",backend="default/x",code="2xx"} %(a2)s
turnout_requests_total{route="default/a",backend="default/x",code="5xx"} %(a5)s
turnout_requests_total{route="default/b",backend="default/x",code="2xx"} %(b2)s
# TYPE turnout_request_duration_seconds histogram
turnout_request_duration_seconds_bucket{route="default/a",backend="default/x",le="0.01"} %(a_fast)s
turnout_request_duration_seconds_bucket{route="default/a",backend="default/x",le="0.1"} %(a_all)s
turnout_request_duration_seconds_bucket{route="default/a",backend="default/x",le="+Inf"} %(a_all)s
turnout_request_duration_seconds_count{route="default/a",backend="default/x"} %(a_all)s
turnout_request_duration_seconds_sum{route="default/a",backend="default/x"} 1.0
# TYPE turnout_downstream_connections_active gauge
turnout_downstream_connections_active 3.0
"""


def _sample(at: float, **values: float) -> Sample:
    return parse(SCRAPE % {k: repr(float(v)) for k, v in values.items()}, at)


def test_rates_error_share_and_quantiles_come_from_the_difference() -> None:
    prev = _sample(10.0, a2=100, a5=0, b2=5, a_fast=50, a_all=100)
    cur = _sample(12.0, a2=180, a5=20, b2=5, a_fast=60, a_all=200)
    by_name = {r.name: r for r in rows(prev, cur, "route")}
    a = by_name["default/a"]
    assert a.rps == 50.0  # 100 requests in 2 s
    assert a.errors == 0.2
    # 10 of the interval's 100 under 10 ms, 90 between 10 and 100 ms
    assert a.p50 == pytest.approx(0.01 + 0.09 * 40 / 90)
    assert a.p99 == pytest.approx(0.01 + 0.09 * 89 / 90)
    assert a.requests == 200
    b = by_name["default/b"]
    assert b.rps == 0.0 and math.isnan(b.errors) and math.isnan(b.p50)
    assert cur.gauges["turnout_downstream_connections_active"] == 3.0
    backend = rows(prev, cur, "backend")
    assert [(r.name, r.rps) for r in backend] == [("default/x", 50.0)]


def test_sorting() -> None:
    prev = _sample(0.0, a2=0, a5=0, b2=0, a_fast=0, a_all=0)
    cur = _sample(1.0, a2=1, a5=1, b2=5, a_fast=0, a_all=2)
    items = rows(prev, cur, "route")
    assert [r.name for r in sort_rows(items, "rps")] == ["default/b", "default/a"]
    assert [r.name for r in sort_rows(items, "errors")] == ["default/a", "default/b"]
    assert [r.name for r in sort_rows(items, "name")] == ["default/a", "default/b"]


def test_quantile_in_the_inf_bucket_is_the_highest_finite_bound() -> None:
    assert quantile(0.99, {0.1: 0.0, 1.0: 1.0, math.inf: 100.0}) == 1.0
    assert math.isnan(quantile(0.5, {math.inf: 0.0}))


def test_requests_without_a_route_have_their_own_row() -> None:
    prev = parse('turnout_requests_total{route="",backend="",code="4xx"} 1.0\n', 0.0)
    cur = parse('turnout_requests_total{route="",backend="",code="4xx"} 3.0\n', 1.0)
    assert [(r.name, r.rps) for r in rows(prev, cur, "pair")] == [("(no route)", 2.0)]
