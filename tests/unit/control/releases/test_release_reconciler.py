"""The Release state machine run by the reconcile manager on a fake clock, fed fake
per-version counters: promotion through the steps, automatic abort, the low-traffic
pause, commands, and a restart resuming at the same step."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.unit.control.memory import MemoryControl
from turnout.config.model.release import ReleaseSpec
from turnout.control.reconcile import ReconcileManager
from turnout.control.releases.machine import command
from turnout.control.releases.reconciler import ReleaseReconciler
from turnout.control.releases.state import (
    STATE_ANNOTATION,
    ReleaseState,
    plan,
)
from turnout.observe.metrics import Aggregate, RouteTotals
from turnout.testing.clock import FakeClock

T0 = 1_800_000_000.0
KEY = ("Release", "default", "orders-v2")
SPEC: dict[str, Any] = {
    "backend": "orders",
    "candidate": {"backend": "orders-v2"},
    "strategy": {
        "canary": {
            "steps": [
                {"setWeight": 10},
                {"analysis": {"duration": "30s"}},
                {"setWeight": 50},
                {"pause": {"duration": "10s"}},
            ]
        }
    },
    "analysis": {"minSamples": 50},
}


class Traffic:
    """Cumulative counters of the two versions, as the workers would report them."""

    def __init__(self) -> None:
        self.agg = Aggregate()

    def serve(self, backend: str, ok: int, failed: int = 0) -> None:
        totals = self.agg.routes.setdefault(("default/shop", "default/" + backend), RouteTotals())
        totals.codes[2] += ok
        totals.codes[5] += failed
        totals.buckets[3] += ok + failed

    def __call__(self) -> Aggregate:
        return self.agg


class Rig:
    def __init__(self, spec: dict[str, Any] = SPEC) -> None:
        self.clock = FakeClock(T0)
        self.control = MemoryControl(self.clock)
        self.traffic = Traffic()
        self.manager = self.new_manager()
        self.control.put("Release", "orders-v2", spec)

    def new_manager(self) -> ReconcileManager:
        manager = ReconcileManager(
            [ReleaseReconciler()], self.control, self.control, self.clock, observe=self.traffic
        )
        self.control.manager = manager
        manager.set_leader(True)
        return manager

    def state(self) -> ReleaseState:
        found = ReleaseState.from_annotations(self.control.stored[KEY].annotations)
        assert found is not None
        return found

    async def run(
        self, seconds: float, *, stable: tuple[int, int], canary: tuple[int, int]
    ) -> None:
        """Advance time in 0.5 s ticks, serving this much traffic per tick."""
        for _ in range(int(seconds * 2)):
            self.traffic.serve("orders", *stable)
            self.traffic.serve("orders-v2", *canary)
            await self.manager.run_due()
            self.clock.advance(0.5)
        await self.manager.run_due()


def test_a_healthy_canary_is_promoted_through_its_steps() -> None:
    async def main() -> None:
        rig = Rig()
        await rig.manager.run_due()
        assert (rig.state().phase, rig.state().weight, rig.state().step) == ("Progressing", 10, 1)
        await rig.run(35, stable=(90, 0), canary=(10, 0))
        state = rig.state()
        assert state.phase == "Promoted" and state.weight == 100
        reasons = [
            c[2][0].manifest["metadata"]["annotations"][STATE_ANNOTATION]
            for c in rig.control.commits
        ]  # type: ignore[index]
        assert any("analysis passed" in r for r in reasons)
        assert any('"weight":50' in r for r in reasons)
        assert all(actor == "system:release" for actor, _, _ in rig.control.commits)

    asyncio.run(main())


def test_a_failing_canary_is_aborted_with_the_numbers() -> None:
    async def main() -> None:
        rig = Rig()
        await rig.manager.run_due()
        await rig.run(5, stable=(90, 0), canary=(5, 5))
        state = rig.state()
        assert state.phase == "Degraded" and state.weight == 0
        assert "analysis failed at step 1" in state.reason
        assert "exceeds tolerance" in state.reason and "failed, stable 0/" in state.reason
        status = rig.control.stored[KEY].status or {}
        ready = {c["type"]: c for c in status["conditions"]}["Ready"]
        assert ready["status"] == "False" and ready["reason"] == "Degraded"

    asyncio.run(main())


def test_low_traffic_pauses_with_a_clear_reason_and_does_not_fail() -> None:
    async def main() -> None:
        rig = Rig()
        await rig.manager.run_due()
        await rig.run(35, stable=(1, 0), canary=(0, 0))
        state = rig.state()
        assert state.phase == "Paused" and state.hold == "step"
        assert "inconclusive after 30s" in state.reason
        assert "low traffic: 0 candidate requests < minSamples 50" in state.reason
        assert state.weight == 10  # paused, not aborted

    asyncio.run(main())


def test_on_failure_pause_holds_for_a_human() -> None:
    async def main() -> None:
        spec = {**SPEC, "analysis": {"minSamples": 50, "onFailure": "pause"}}
        rig = Rig(spec)
        await rig.manager.run_due()
        await rig.run(5, stable=(90, 0), canary=(5, 5))
        assert rig.state().phase == "Paused"
        commits = len(rig.control.commits)
        await rig.run(3, stable=(90, 0), canary=(5, 5))
        assert len(rig.control.commits) == commits  # no write per tick while held

    asyncio.run(main())


def test_a_restart_resumes_at_the_same_step() -> None:
    async def main() -> None:
        rig = Rig()
        await rig.manager.run_due()
        await rig.run(3, stable=(90, 0), canary=(10, 0))
        before = rig.state()
        assert before.step == 1  # in the analysis step
        rig.manager.set_leader(False)
        rig.manager = rig.new_manager()  # a new process: fresh reconciler, no windows
        await rig.manager.run_due()
        assert rig.state().step == before.step and rig.state().run == before.run
        assert rig.state().weight == 10
        await rig.run(35, stable=(90, 0), canary=(10, 0))
        assert rig.state().phase == "Promoted"

    asyncio.run(main())


def test_every_command_is_legal_in_every_phase_and_idempotent() -> None:
    steps = plan(ReleaseSpec.model_validate(SPEC))
    phases = ["Pending", "Progressing", "Paused", "Promoted", "Aborted", "Degraded"]
    for phase in phases:
        for name in ("promote", "abort", "retry", "pause", "resume", "skip-analysis"):
            state = ReleaseState(phase=phase, step=1, weight=10, hold="human")
            once = command(name, steps, state, T0, "alice", "why")  # type: ignore[arg-type]
            twice = command(name, steps, once, T0, "alice", "why")  # type: ignore[arg-type]
            if name not in ("resume", "retry"):
                assert twice == once, (phase, name)
    aborted = command("abort", steps, ReleaseState(phase="Progressing", weight=50), T0, "bob")
    assert (aborted.phase, aborted.weight) == ("Aborted", 0)
    retried = command("retry", steps, aborted, T0, "bob")
    assert (retried.phase, retried.step, retried.weight, retried.run) == ("Progressing", 0, 0, 2)
    assert command("retry", steps, retried, T0, "bob") == retried
    skipped = command(
        "skip-analysis", steps, ReleaseState(phase="Paused", hold="step", step=1), T0, "c", "hotfix"
    )
    assert skipped.skip_analysis and skipped.phase == "Progressing" and skipped.step == 2
    assert "hotfix" in skipped.reason


def _judge_pass(scope: str) -> tuple[Any, str]:
    return "pass", "ok"


def test_webhook_gates_hold_fail_and_roll_back() -> None:
    from turnout.config.model.release import AnalysisSpec
    from turnout.control.releases.machine import tick
    from turnout.control.releases.state import Step

    steps = (Step("setWeight", weight=10), Step("setWeight", weight=50))
    analysis = AnalysisSpec()
    fresh = ReleaseState(phase="Progressing", step=0, generation=1, step_started=T0)
    closed = {"confirm-traffic-increase": (False, "webhook ok answered 403")}
    held, again = tick(steps, fresh, T0 + 1, _judge_pass, analysis, closed)
    assert (held.weight, held.step, again) == (0, 0, T0 + 1.5)
    assert "waiting for confirm-traffic-increase (webhook ok answered 403)" in held.reason
    assert tick(steps, held, T0 + 2, _judge_pass, analysis, closed)[0] == held  # no rewrite
    opened = {"confirm-traffic-increase": (True, "answered 200")}
    moved, _ = tick(steps, held, T0 + 3, _judge_pass, analysis, opened)
    assert (moved.weight, moved.step) == (10, 1)  # one increase per opened gate
    assert "waiting for confirm-traffic-increase" in moved.reason
    pre = {"pre-rollout": (False, "webhook load answered 500")}
    failed, _ = tick(steps, fresh, T0 + 1, _judge_pass, analysis, pre)
    assert failed.phase == "Degraded" and "pre-rollout failed" in failed.reason
    rollback = {"rollback": (True, "webhook pager answered 200")}
    rolled, _ = tick(steps, moved, T0 + 4, _judge_pass, analysis, rollback)
    assert (rolled.phase, rolled.weight) == ("Degraded", 0)
    last = ReleaseState(phase="Progressing", step=2, weight=50, generation=1)
    promo = {"confirm-promotion": (False, "answered 403")}
    waiting, _ = tick(steps, last, T0 + 5, _judge_pass, analysis, promo)
    assert waiting.phase == "Progressing" and "confirm-promotion" in waiting.reason
    done, _ = tick(steps, last, T0 + 5, _judge_pass, analysis, {"confirm-promotion": (True, "")})
    assert done.phase == "Promoted"
