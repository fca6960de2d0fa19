"""Approvals by environment and risk, with approvers by role: the alert's ``environment``
label picks the bar (``approvals.environments``), other environments use ``approveRisk``
with the policy's roles and expiry; a step's own ``approval`` always applies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.integration.remediation.harness import Bench, alert_payload, runbook_spec
from tests.integration.remediation.test_engine import run_bench
from turnout.config.model.remediation import RunbookSpec
from turnout.control.remediation.plan import needs_approval

APPROVALS = {
    "roles": ["editor", "admin"],
    "expiry": "30m",
    "environments": {
        "production": {"risk": "low", "roles": ["admin"], "expiry": "5m"},
        "staging": {"risk": "never"},
    },
}


def spec(risk: str, **step: Any) -> RunbookSpec:
    shed = {"name": "shed", "action": "shed", "params": {"route": "r", "percent": 10}}
    return RunbookSpec.model_validate(
        runbook_spec(approvals=APPROVALS, steps=[{**shed, "risk": risk, **step}])
    )


def test_the_environment_sets_the_bar_roles_and_expiry() -> None:
    prod = {"environment": "production"}
    assert needs_approval(spec("low"), 0, prod) == {
        "roles": ["admin"],
        "expiry": "5m",
        "environment": "production",
    }
    assert needs_approval(spec("high"), 0, {"environment": "staging"}) is None
    # another environment (or none): approveRisk (high) with the policy's roles and expiry
    assert needs_approval(spec("medium"), 0, {"environment": "dev"}) is None
    assert needs_approval(spec("high"), 0, {}) == {"roles": ["editor", "admin"], "expiry": "30m"}
    # a step's own approval always applies
    own = spec("low", approval={"roles": ["editor"], "expiry": "1m"})
    assert needs_approval(own, 0, {"environment": "staging"}) == {
        "roles": ["editor"],
        "expiry": "1m",
    }


def test_a_production_alert_waits_for_an_admin_and_expires(tmp_path: Path) -> None:
    async def scenario(b: Bench) -> None:
        steps = [{"name": "shed", "action": "shed", "params": {"route": "{route}", "percent": 10}}]
        b.control.put("Runbook", "rb", runbook_spec(approvals=APPROVALS, steps=steps))
        labels = {"alertname": "HighErrorRate", "route": "checkout", "environment": "production"}
        await b.deliver(alert_payload(b.ago(5), labels=labels))
        await b.tick()
        (run,) = await b.runs()
        assert run.state == "waiting_approval" and b.mitigations() == {}
        assert run.approval is not None
        assert run.approval["roles"] == ["admin"] and run.approval["environment"] == "production"
        assert run.approval["expiresAt"] == b.clock.time() + 300
        assert run.timeline[-1]["detail"] == "step shed (production)"
        pending = await b.store.runs(active=True)
        assert [r.state for r in pending] == ["waiting_approval"]
        b.clock.advance(301)
        await b.tick()
        (run,) = await b.runs()
        assert run.state == "expired" and b.mitigations() == {}

    run_bench(tmp_path, scenario)


def test_a_staging_alert_acts_without_approval(tmp_path: Path) -> None:
    async def scenario(b: Bench) -> None:
        steps = [
            {
                "name": "shed",
                "action": "shed",
                "params": {"route": "{route}", "percent": 10},
                "risk": "high",
            }
        ]
        b.control.put("Runbook", "rb", runbook_spec(approvals=APPROVALS, steps=steps))
        labels = {"alertname": "HighErrorRate", "route": "checkout", "environment": "staging"}
        await b.deliver(alert_payload(b.ago(5), labels=labels))
        await b.tick()
        (run,) = await b.runs()
        assert run.state == "succeeded" and len(b.mitigations()) == 1

    run_bench(tmp_path, scenario)
