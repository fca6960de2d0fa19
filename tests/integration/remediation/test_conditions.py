"""A Runbook's conditions over live gateway metrics, on a fake clock: the engine reads the
data plane's counters (as internal signals do) once a second, and a run starts only when
the route's error rate over the window meets every condition; else it is skipped saying
which condition and what it saw."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.remediation.harness import Bench, alert_payload, runbook_spec
from tests.integration.remediation.test_engine import run_bench
from turnout.config.model.remediation import MetricCondition
from turnout.control.remediation.conditions import MetricHistory, unmet
from turnout.observe.metrics import Aggregate, RouteTotals

CONDITION = {"route": "{route}", "errorRateAbove": 0.05, "window": "30s", "minRequests": 10}


def counts(b: Bench, errors: int, ok: int) -> None:
    b.observed.routes[("default/checkout", "default/svc")] = RouteTotals(
        codes=[0, 0, ok, 0, 0, errors]
    )


async def run_with(b: Bench, errors: int, ok: int, **spec: Any) -> Any:
    b.control.put("Runbook", "rb", runbook_spec(conditions=[CONDITION], **spec))
    counts(b, 0, 0)
    await b.tick()
    b.clock.advance(10)
    counts(b, errors, ok)
    await b.deliver(alert_payload(b.ago(1)))
    await b.tick()
    (run,) = await b.runs()
    return run


def test_a_run_starts_when_the_route_error_rate_is_above(tmp_path: Path) -> None:
    async def scenario(b: Bench) -> None:
        run = await run_with(b, 20, 80)
        assert run.state == "succeeded", run.reason
        assert len(b.mitigations()) == 1

    run_bench(tmp_path, scenario)


def test_a_run_is_skipped_when_a_condition_is_not_met(tmp_path: Path) -> None:
    async def scenario(b: Bench) -> None:
        run = await run_with(b, 1, 99)
        assert run.state == "skipped" and b.mitigations() == {}
        assert run.reason == (
            "condition not met: route default/checkout error rate is 1.0% over 30s (want > 5.0%)"
        )

    run_bench(tmp_path, scenario)


def test_too_few_answers_do_not_meet_a_condition(tmp_path: Path) -> None:
    async def scenario(b: Bench) -> None:
        run = await run_with(b, 5, 0)
        assert run.state == "skipped" and "fewer than minRequests 10" in run.reason

    run_bench(tmp_path, scenario)


def test_the_window_compares_with_the_reading_that_old() -> None:
    history = MetricHistory()
    agg = Aggregate()
    cond = MetricCondition.model_validate({"route": "r", "errorRateBelow": 0.1, "window": "30s"})
    for second, (errors, ok) in enumerate(
        [(0, 0), (50, 50)] + [(50, 50 + 10 * i) for i in range(1, 61)]
    ):
        agg.routes[("default/r", "default/b")] = RouteTotals(codes=[0, 0, ok, 0, 0, errors])
        history.observe(agg, 1000.0 + second)
    # the last 30 s had 300 answers and no 5xx, whatever happened before
    assert unmet([cond], {}, "default", history, 1061.0) is None
    assert history.delta("default/r", 30.0, 1061.0) == (0, 300)
    assert unmet([cond], {}, "default", MetricHistory(), 0.0) == (
        "condition not met: no readings of route default/r yet"
    )


def test_a_condition_needs_a_bound() -> None:
    with pytest.raises(ValueError, match="errorRateAbove or errorRateBelow"):
        MetricCondition.model_validate({"route": "r"})
