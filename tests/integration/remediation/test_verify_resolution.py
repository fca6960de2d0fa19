"""Verification by the alert's resolution, on a fake clock over a real SQLite store: a
resolved notification received during the verify window verifies the run
(``verify_resolved``, and ``verify_error_rate`` too, without waiting for traffic); an
alert that keeps firing through the window fails the run "not resolved"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.integration.remediation.harness import Bench, alert_payload, runbook_spec
from tests.integration.remediation.test_engine import run_bench

SHED = {"name": "shed", "action": "shed", "params": {"route": "{route}", "percent": 10}}


def verify(action: str, **params: Any) -> dict[str, Any]:
    return {"name": "verify", "action": action, "params": params, "retries": 3, "backoff": "10s"}


async def start(b: Bench, step: dict[str, Any]) -> Any:
    b.control.put("Runbook", "rb", runbook_spec(steps=[SHED, step]))
    starts = b.ago(5)
    await b.deliver(alert_payload(starts))
    await b.tick()
    (run,) = await b.runs()
    assert (run.state, run.step) == ("running", 1), run.timeline
    return starts


def test_a_resolution_within_the_window_verifies_the_run(tmp_path: Path) -> None:
    async def scenario(b: Bench) -> None:
        starts = await start(b, verify("verify_resolved"))
        b.clock.advance(10)
        await b.tick()
        (run,) = await b.runs()
        assert run.state == "running" and "still fires" in run.timeline[-1]["detail"]
        await b.deliver(alert_payload(starts, status="resolved"))
        b.clock.advance(20)
        await b.tick()
        (run,) = await b.runs()
        assert run.state == "succeeded", run.reason
        assert "verified: the alert resolved" in run.timeline[-2]["detail"]

    run_bench(tmp_path, scenario)


def test_an_alert_firing_through_the_window_fails_the_run(tmp_path: Path) -> None:
    async def scenario(b: Bench) -> None:
        await start(b, verify("verify_resolved"))
        for _ in range(4):
            b.clock.advance(80)
            await b.tick()
        (run,) = await b.runs()
        assert run.state == "failed" and "not resolved" in run.reason

    run_bench(tmp_path, scenario)


def test_a_resolution_also_verifies_an_error_rate_check(tmp_path: Path) -> None:
    async def scenario(b: Bench) -> None:
        starts = await start(b, verify("verify_error_rate", route="{route}"))
        await b.deliver(alert_payload(starts, status="resolved"))
        b.clock.advance(10)
        await b.tick()
        (run,) = await b.runs()
        assert run.state == "succeeded", run.reason
        assert "the alert resolved" in run.timeline[-2]["detail"]

    run_bench(tmp_path, scenario)


def test_another_alerts_resolution_does_not_count(tmp_path: Path) -> None:
    async def scenario(b: Bench) -> None:
        starts = await start(b, verify("verify_resolved"))
        await b.deliver(alert_payload(starts, status="resolved", fingerprint="other"))
        b.clock.advance(10)
        await b.tick()
        (run,) = await b.runs()
        assert run.state == "running" and "still fires" in run.timeline[-1]["detail"]

    run_bench(tmp_path, scenario)
