"""The remediation engine over a real SQLite store, on a fake clock (no sleeping).

Duplicates act once; a resolved alert does not act; a restart in the middle of a run
resumes it at its step without applying twice; approvals run or expire; cooldown, one
run per target and blast-radius limits refuse; a dead webhook opens its breaker and the
run says so; a deadline ends a retrying run; a mitigation's lease ends and it is deleted.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.remediation.harness import Bench, Commit, alert_payload, runbook_spec
from turnout.control.remediation import decisions
from turnout.control.remediation.decisions import DecisionError
from turnout.control.remediation.engine import RemediationReconciler
from turnout.control.store.records import Change

Scenario = Callable[[Bench], Awaitable[None]]


def run_bench(tmp_path: Path, scenario: Scenario) -> None:
    async def main() -> None:
        bench = await Bench.open(tmp_path)
        try:
            await scenario(bench)
        finally:
            await bench.store.close()

    asyncio.run(main())


def states(runs: list[Any]) -> list[str]:
    return [r.state for r in runs]


def test_duplicate_deliveries_act_once(tmp_path: Path) -> None:
    async def scenario(b: Bench) -> None:
        b.control.put("Runbook", "shed-errors", runbook_spec())
        payload = alert_payload(b.ago(30))
        first = await b.deliver(payload)
        again = await b.deliver(payload)  # a retry storm / the HA peer
        other_group = {**payload, "groupKey": "peer-group"}
        peer = await b.deliver(other_group)  # same alert, another group: no second run
        assert (first.received, len(first.runs)) == (1, 1)
        assert (again.received, again.duplicates, again.runs) == (0, 1, [])
        assert (peer.received, len(peer.runs)) == (1, 1)
        await b.tick()
        await b.tick()
        assert states(await b.runs()) == ["succeeded"]
        (name,) = b.mitigations()
        assert b.mitigations()[name]["shed"] == {"percent": 30}
        assert b.mitigations()[name]["targetRef"]["name"] == "checkout"
        assert len(b.control.commits) == 1
        alert = await b.store.alert(first.runs[0].alert_id)
        assert alert.deliveries == 2

    run_bench(tmp_path, scenario)


def test_a_resolved_alert_does_not_run_the_actions_again(tmp_path: Path) -> None:
    async def scenario(b: Bench) -> None:
        b.control.put("Runbook", "shed-errors", runbook_spec())
        starts = b.ago(30)
        await b.deliver(alert_payload(starts))
        await b.tick()
        resolved = await b.deliver(alert_payload(starts, status="resolved"))
        assert resolved.received == 1 and resolved.runs == []
        assert "resolved" in resolved.unmatched[0]["reason"]
        await b.tick()
        assert states(await b.runs()) == ["succeeded"]
        assert len(b.control.commits) == 1

    run_bench(tmp_path, scenario)


class Crash(BaseException):
    """The process dies (not an error the engine could handle)."""


def test_a_restart_mid_run_resumes_at_its_step_and_applies_once(tmp_path: Path) -> None:
    async def scenario(b: Bench) -> None:
        steps = [
            {"name": "shed", "action": "shed", "params": {"route": "{route}", "percent": 20}},
            {
                "name": "block",
                "action": "block_clients",
                "params": {"route": "{route}", "clients": ["10.1.2.3", "192.0.2.0/24"]},
            },
        ]
        b.control.put("Runbook", "two-steps", runbook_spec(steps=steps))
        await b.deliver(alert_payload(b.ago(10)))
        real = Commit(b.control, "remediation")
        calls = 0

        async def dies_after_the_second_write(
            changes: list[Change], *, message: str, action: str
        ) -> None:
            nonlocal calls
            calls += 1
            await real(changes, message=message, action=action)
            if calls == 2:
                raise Crash  # the write is done; the run's progress is not saved

        ctx = b.context()
        crashing = type(ctx)(
            ctx.clock, dies_after_the_second_write, ctx.observe, ctx.objects, ctx.runs
        )
        (obj,) = [o for k, o in b.control.stored.items() if k[0] == "Runbook"]
        with pytest.raises(Crash):
            await b.engine.reconcile(obj, crashing)
        (run,) = await b.runs()
        assert (run.state, run.step) == ("running", 1)  # stored: step 2 had started
        b.engine = RemediationReconciler(b.breakers)  # the restarted (or new) leader
        await b.tick()
        (run,) = await b.runs()
        assert run.state == "succeeded"
        assert len(b.control.commits) == 2  # the block was not written twice
        assert "already applied" in run.timeline[-2]["detail"]
        assert sorted(len(m.get("blockClients", [])) for m in b.mitigations().values()) == [0, 2]

    run_bench(tmp_path, scenario)


def approval_steps(expiry: str = "1m") -> list[dict[str, Any]]:
    return [
        {
            "name": "shed",
            "action": "shed",
            "params": {"route": "{route}", "percent": 30},
            "approval": {"roles": ["admin"], "expiry": expiry},
        }
    ]


def test_an_approved_step_runs_and_an_unanswered_one_expires(tmp_path: Path) -> None:
    async def scenario(b: Bench) -> None:
        b.control.put("Runbook", "careful", runbook_spec(steps=approval_steps()))
        await b.deliver(alert_payload(b.ago(5)))
        await b.tick()
        (run,) = await b.runs()
        assert run.state == "waiting_approval" and b.mitigations() == {}
        assert run.approval is not None and run.approval["expiresAt"] == b.clock.time() + 60
        b.clock.advance(30)
        expect = decisions.approve(run, "token:alice", b.clock.time())
        await b.store.save_run(run, expect_state=expect)
        await b.tick()
        (run,) = await b.runs()
        assert run.state == "succeeded" and len(b.mitigations()) == 1
        # a second incident on another route: nobody answers
        b.clock.advance(600)  # past the first run's cooldown too
        labels = {"alertname": "HighErrorRate", "route": "search"}
        await b.deliver(alert_payload(b.ago(5), labels=labels, fingerprint="fp2"))
        await b.tick()
        b.clock.advance(60)
        await b.tick()
        latest = (await b.runs())[0]
        assert latest.state == "expired"
        assert "approval for step shed expired" in latest.reason
        with pytest.raises(DecisionError, match="not waiting"):
            decisions.approve(latest, "token:alice", b.clock.time())
        assert len(b.mitigations()) == 1

    run_bench(tmp_path, scenario)


def test_cooldown_and_one_run_per_target_refuse_with_reasons(tmp_path: Path) -> None:
    async def scenario(b: Bench) -> None:
        b.control.put("Runbook", "shed-errors", runbook_spec(cooldown="5m"))
        await b.deliver(alert_payload(b.ago(5)))
        await b.tick()
        b.clock.advance(60)
        await b.deliver(alert_payload(b.ago(5)))  # fires again (new startsAt)
        await b.tick()
        newest, first = await b.runs()
        assert (first.state, newest.state) == ("succeeded", "skipped")
        assert newest.reason.startswith("cooldown: target default/checkout was remediated")
        b.clock.advance(300)
        b.control.delete("Runbook", "default", "shed-errors")
        for name in ("careful-a", "careful-b"):
            b.control.put("Runbook", name, runbook_spec(steps=approval_steps("10m")))
        await b.deliver(alert_payload(b.ago(5)))  # both runbooks match: same target
        await b.tick()
        got = {r.runbook: r for r in (await b.runs())[:2]}
        assert got["default/careful-a"].state == "waiting_approval"
        assert got["default/careful-b"].state == "skipped"
        assert f"is busy: run {got['default/careful-a'].id}" in got["default/careful-b"].reason

    run_bench(tmp_path, scenario)


def test_blast_radius_refuses_a_step_and_fails_the_run(tmp_path: Path) -> None:
    async def scenario(b: Bench) -> None:
        steps = [
            {"name": "a", "action": "shed", "params": {"route": "{route}", "percent": 30}},
            {"name": "b", "action": "shed", "params": {"route": "{route}", "percent": 20}},
        ]
        spec = runbook_spec(steps=steps, limits={"maxShedPercent": 40})
        b.control.put("Runbook", "greedy", spec)
        await b.deliver(alert_payload(b.ago(5)))
        await b.tick()
        (run,) = await b.runs()
        assert run.state == "failed"
        assert "blast radius: shedding 20% more of route checkout (30% already)" in run.reason
        assert len(b.mitigations()) == 1  # the refused step wrote nothing

    run_bench(tmp_path, scenario)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_dead_webhook_opens_its_breaker_and_the_run_reports_it(tmp_path: Path) -> None:
    async def scenario(b: Bench) -> None:
        url = f"http://127.0.0.1:{closed_port()}/hook?token=s3cret-value"
        steps = [
            {"name": "page", "action": "notify_webhook", "params": {"url": url, "message": "x"}}
        ]
        b.control.put("Runbook", "notify", runbook_spec(steps=steps, target="{instance}"))
        for i in range(3):
            labels = {"alertname": "HighErrorRate", "instance": f"i{i}"}
            await b.deliver(alert_payload(b.ago(5), labels=labels, fingerprint=f"fp{i}"))
            await b.tick()
            b.clock.advance(1)
        runs = list(reversed(await b.runs()))
        assert states(runs) == ["failed", "failed", "failed"]
        assert "ConnectError" in runs[0].reason
        assert "circuit breaker 'webhook:127.0.0.1:" in runs[2].reason
        assert "is open after 2 failures" in runs[2].reason
        (breaker,) = b.breakers.snapshot()
        assert breaker["state"] == "open"
        assert breaker["transitions"] == {"closed->open": 1}
        for run in runs:
            assert "s3cret" not in run.reason + str(run.timeline)

    run_bench(tmp_path, scenario)


def test_retries_back_off_persistently_until_the_deadline(tmp_path: Path) -> None:
    async def scenario(b: Bench) -> None:
        url = f"http://127.0.0.1:{closed_port()}/hook"
        steps = [
            {
                "name": "page",
                "action": "notify_webhook",
                "params": {"url": url, "message": "x"},
                "retries": 10,
                "backoff": "20s",
            }
        ]
        b.breakers.failure_threshold = 100
        b.control.put("Runbook", "notify", runbook_spec(steps=steps, deadline="1m"))
        await b.deliver(alert_payload(b.ago(5)))
        await b.tick()
        (run,) = await b.runs()
        assert (run.state, run.attempt, run.next_at) == ("running", 1, b.clock.time() + 20)
        await b.tick()  # not due yet: nothing happens
        assert (await b.runs())[0].attempt == 1
        b.clock.advance(20)
        await b.tick()
        (run,) = await b.runs()
        assert (run.attempt, run.next_at) == (2, b.clock.time() + 40)
        b.clock.advance(40)
        await b.tick()
        (run,) = await b.runs()
        assert run.state == "failed" and run.reason == "deadline passed at step 1"

    run_bench(tmp_path, scenario)


def test_a_mitigation_expires_and_is_deleted(tmp_path: Path) -> None:
    async def scenario(b: Bench) -> None:
        steps = [
            {
                "name": "shed",
                "action": "shed",
                "params": {"route": "{route}", "percent": 30, "ttl": "2m"},
            }
        ]
        b.control.put("Runbook", "shed-errors", runbook_spec(steps=steps))
        await b.deliver(alert_payload(b.ago(5)))
        await b.tick()
        assert len(b.mitigations()) == 1
        b.clock.advance(119)
        await b.expire()
        assert len(b.mitigations()) == 1
        b.clock.advance(1)
        await b.expire()
        assert b.mitigations() == {}
        assert b.control.commits[-1][:2] == ("system:mitigation-expiry", "expire")

    run_bench(tmp_path, scenario)


def test_a_dry_run_runbook_plans_and_does_nothing(tmp_path: Path) -> None:
    async def scenario(b: Bench) -> None:
        b.control.put("Runbook", "shed-errors", runbook_spec(dryRun=True))
        await b.deliver(alert_payload(b.ago(5)))
        await b.tick()
        (run,) = await b.runs()
        assert (run.state, run.dry_run) == ("planned", True)
        assert run.plan[0]["params"] == {"route": "checkout", "percent": 30}
        assert b.mitigations() == {}

    run_bench(tmp_path, scenario)


def test_a_kubernetes_step_outside_the_runbooks_namespaces_fails_the_run(tmp_path: Path) -> None:
    """Refused before any call (no cluster here: a call would fail differently), and the
    run's reason and timeline say which namespace and what is allowed."""

    async def scenario(b: Bench) -> None:
        scale = {"deployment": "web", "namespace": "kube-system", "replicas": 0}
        steps = [{"name": "scale", "action": "k8s_scale", "params": scale, "retries": 3}]
        spec = runbook_spec(steps=steps, kubernetes={"namespaces": ["shop"]})
        b.control.put("Runbook", "scaler", spec)
        await b.deliver(alert_payload(b.ago(5)))
        await b.tick()
        (run,) = await b.runs()
        assert run.state == "failed" and run.attempt == 0  # a refusal is not retried
        refusal = "namespace 'kube-system' is not allowed to this Runbook (allowed: shop;"
        assert refusal in run.reason
        assert any(refusal in e["detail"] for e in run.timeline if e["event"] == "failed")

    run_bench(tmp_path, scenario)
