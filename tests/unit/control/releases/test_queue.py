"""Release queues per Environment on the reconcile manager with a fake clock: priority
order and one live release per Backend, the queue's pause, blackouts (queued releases
wait, live ones hold at their step) and the audited bypass, schedules, a restart in the
middle of the queue, and promotion to the next environment."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.unit.control.memory import MemoryControl
from turnout.config.model.environment import QUEUE_ANNOTATION
from turnout.config.model.release import ReleaseSpec
from turnout.control.reconcile import ReconcileManager
from turnout.control.releases import queue
from turnout.control.releases.machine import command
from turnout.control.releases.promotion import PROMOTED_FROM
from turnout.control.releases.reconciler import ReleaseReconciler
from turnout.control.releases.state import STATE_ANNOTATION, ReleaseState, plan
from turnout.testing.clock import FakeClock

T0 = 1_800_000_000.0  # Friday 2027-01-15 08:00 UTC


def spec(candidate: str, priority: int = 0, **more: Any) -> dict[str, Any]:
    return {
        "backend": "orders",
        "candidate": {"backend": candidate},
        "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}},
        "priority": priority,
        **more,
    }


class Rig:
    def __init__(self) -> None:
        self.clock = FakeClock(T0)
        self.control = MemoryControl(self.clock)
        self.manager = self.new_manager()

    def new_manager(self) -> ReconcileManager:
        manager = ReconcileManager([ReleaseReconciler()], self.control, self.control, self.clock)
        self.control.manager = manager
        manager.set_leader(True)
        return manager

    def env(self, name: str = "prod", annotations: dict[str, str] | None = None, **s: Any) -> None:
        body = {"namespaces": [name], **s}
        self.control.put("Environment", name, body, namespace="", annotations=annotations)

    def release(self, name: str, body: dict[str, Any], ns: str = "prod") -> None:
        self.control.put("Release", name, body, namespace=ns)

    def state(self, name: str, ns: str = "prod") -> ReleaseState:
        found = ReleaseState.from_annotations(
            self.control.stored[("Release", ns, name)].annotations
        )
        assert found is not None, name
        return found

    def phases(self, *names: str) -> list[str]:
        return [self.state(n).phase for n in names]

    def conditions(self, name: str) -> dict[str, dict[str, Any]]:
        status = self.control.stored[("Release", "prod", name)].status or {}
        return {c["type"]: c for c in status.get("conditions", [])}

    def command(self, name: str, verb: str, reason: str = "", ns: str = "prod") -> None:
        """What ``commands.run`` does, without the API."""
        obj = self.control.stored[("Release", ns, name)]
        state = queue.state_of(obj)
        if state.generation == 0:
            state = ReleaseState(generation=obj.generation)
        steps = plan(ReleaseSpec.model_validate(obj.spec))
        new = command(verb, steps, state, self.clock.time(), "alice", reason)  # type: ignore[arg-type]
        self.control.put(
            "Release",
            name,
            obj.spec,
            namespace=ns,
            annotations={**obj.annotations, STATE_ANNOTATION: new.to_json()},
        )

    async def settle(self, seconds: float = 2.0) -> None:
        for _ in range(int(seconds * 2)):
            await self.manager.run_due()
            self.clock.advance(0.5)
        await self.manager.run_due()


def test_one_live_release_per_backend_in_priority_order() -> None:
    async def main() -> None:
        rig = Rig()
        rig.env()
        rig.release("low", spec("v-low", priority=0))
        rig.release("first", spec("v-first", priority=0))
        rig.release("high", spec("v-high", priority=10))
        rig.release("other", {**spec("v-x"), "backend": "payments"})
        await rig.settle()
        # "high" first (priority); "other" releases another Backend and runs beside it
        assert rig.phases("high", "other", "low", "first") == [
            "Paused",
            "Paused",
            "Pending",
            "Pending",
        ]
        low = rig.state("low")
        assert "prod/high is Paused on backend orders" in low.reason
        assert low.queued_at == T0
        queued = rig.conditions("first")["Queued"]
        assert queued["status"] == "True" and queued["reason"] in ("Position1", "Position2")
        view = queue.view(queue.environments(rig.control.stored)["prod"], rig.control.stored, T0)
        assert [(q["position"], q["name"]) for q in view["queued"]] == [(1, "first"), (2, "low")]
        assert {a["name"] for a in view["active"]} == {"high", "other"}
        rig.command("high", "abort")
        await rig.settle()
        # then the one queued first among equal priorities
        assert rig.phases("first", "low") == ["Paused", "Pending"]
        assert "behind" not in rig.state("low").reason
        assert rig.conditions("first")["Queued"]["status"] == "False"
        rig.command("first", "promote")
        await rig.settle()
        assert rig.phases("low") == ["Paused"]

    asyncio.run(main())


def test_a_paused_queue_starts_nothing_until_resumed() -> None:
    async def main() -> None:
        rig = Rig()
        paused = json.dumps({"paused": True, "by": "alice", "reason": "freeze"})
        rig.env(annotations={QUEUE_ANNOTATION: paused})
        rig.release("r1", spec("v1"))
        await rig.settle()
        state = rig.state("r1")
        assert state.phase == "Pending" and "queue paused by alice: freeze" in state.reason
        rig.env(annotations={QUEUE_ANNOTATION: json.dumps({"paused": False})})
        await rig.settle()
        assert rig.phases("r1") == ["Paused"]

    asyncio.run(main())


def test_a_blackout_holds_queued_and_live_releases_and_the_bypass_passes() -> None:
    async def main() -> None:
        rig = Rig()
        # 09:00-10:00 UTC every day; T0 is 08:00
        rig.env(blackouts=[{"name": "standup", "cron": "0 9 * * *", "duration": "1h"}])
        live = spec("v1")
        live["strategy"] = {
            "canary": {
                "steps": [{"setWeight": 10}, {"pause": {"duration": "2h"}}, {"setWeight": 50}]
            }
        }
        rig.release("live", live)
        await rig.settle()
        assert (rig.state("live").phase, rig.state("live").weight) == ("Progressing", 10)
        rig.clock.set(T0 + 3600)  # 09:00: the blackout opens
        rig.release("queued", {**spec("v2"), "backend": "payments"})
        await rig.settle()
        state = rig.state("queued")
        assert state.phase == "Pending" and "blackout 'standup' until" in state.reason
        rig.clock.set(T0 + 2 * 3600 - 10)  # the pause step ended during the blackout: hold
        await rig.settle(1)
        live_state = rig.state("live")
        assert (live_state.step, live_state.weight) == (1, 10)
        assert "holding at step 1: prod blackout 'standup'" in live_state.reason
        rig.command("queued", "bypass", "hotfix for INC-7")
        await rig.settle(1)
        state = rig.state("queued")
        assert state.phase == "Paused" and state.bypass  # started, in the blackout
        rig.clock.set(T0 + 2 * 3600 + 1)  # 10:00: the blackout is over
        await rig.settle(1)
        assert (rig.state("live").phase, rig.state("live").weight) == ("Promoted", 100)

    asyncio.run(main())


def test_a_scheduled_release_waits_for_its_time() -> None:
    async def main() -> None:
        rig = Rig()
        rig.release(
            "later", spec("v1", schedule={"notBefore": "2027-01-15T09:00:00Z"}), ns="default"
        )
        await rig.settle()
        state = rig.state("later", ns="default")
        assert state.phase == "Pending" and "scheduled for 2027-01-15 09:00:00 UTC" in state.reason
        rig.clock.set(T0 + 3600)
        await rig.settle(1)
        assert rig.state("later", ns="default").phase == "Paused"

    asyncio.run(main())


def test_a_restart_in_the_middle_of_the_queue_resumes_it() -> None:
    async def main() -> None:
        rig = Rig()
        rig.env()
        rig.release("a", spec("v-a", priority=5))
        rig.release("b", spec("v-b", priority=1))
        rig.release("c", spec("v-c", priority=3))
        await rig.settle()
        assert rig.phases("a", "b", "c") == ["Paused", "Pending", "Pending"]
        rig.manager.set_leader(False)
        rig.manager = rig.new_manager()  # a new leader: fresh reconcilers, the same store
        rig.command("a", "abort")
        await rig.settle()
        assert rig.phases("a", "b", "c") == ["Aborted", "Pending", "Paused"]

    asyncio.run(main())


def test_a_promoted_release_moves_to_the_next_environment() -> None:
    async def main() -> None:
        rig = Rig()
        rig.env("staging", next="prod")
        rig.env("prod")
        rig.release("r1", spec("v1"), ns="staging")
        await rig.settle()
        rig.command("r1", "promote", ns="staging")
        await rig.settle()
        copy = rig.control.stored[("Release", "prod", "r1")]
        assert copy.spec == rig.control.stored[("Release", "staging", "r1")].spec
        assert copy.annotations[PROMOTED_FROM] == "staging/r1"
        assert rig.state("r1").phase == "Paused"  # it runs in prod now
        commits = [c for c in rig.control.commits if c[1] == "release-promote-to"]
        assert len(commits) == 1

    asyncio.run(main())


def test_a_train_runs_in_order_and_a_failure_aborts_its_dependents() -> None:
    async def main() -> None:
        rig = Rig()
        rig.release("db", {**spec("v-db"), "backend": "db"}, ns="default")
        rig.release("api", {**spec("v-api"), "backend": "api", "dependsOn": ["db"]}, ns="default")
        web = {**spec("v-web"), "backend": "web", "dependsOn": ["default/api"]}
        rig.release("web", web, ns="default")
        await rig.settle()
        assert [rig.state(n, "default").phase for n in ("db", "api", "web")] == [
            "Paused",
            "Pending",
            "Pending",
        ]
        assert "waiting for release default/db (Paused)" in rig.state("api", "default").reason
        assert "waiting for release default/api (Pending)" in rig.state("web", "default").reason
        rig.command("db", "promote", ns="default")
        await rig.settle()
        assert rig.state("api", "default").phase == "Paused"
        rig.command("api", "abort", "bad schema", ns="default")
        await rig.settle()
        web_state = rig.state("web", "default")
        assert web_state.phase == "Aborted" and web_state.weight == 0
        assert "release default/api, which this one depends on, is Aborted" in web_state.reason

    asyncio.run(main())


def test_a_live_dependent_is_aborted_when_its_dependency_rolls_back() -> None:
    async def main() -> None:
        rig = Rig()
        rig.release("db", {**spec("v-db"), "backend": "db"}, ns="default")
        rig.release("api", {**spec("v-api"), "backend": "api", "dependsOn": ["db"]}, ns="default")
        await rig.settle()
        rig.command("db", "promote", ns="default")
        await rig.settle()
        assert (rig.state("api", "default").phase, rig.state("api", "default").weight) == (
            "Paused",
            20,
        )
        rig.command("db", "abort", "rollback", ns="default")
        await rig.settle()
        assert (rig.state("api", "default").phase, rig.state("api", "default").weight) == (
            "Aborted",
            0,
        )

    asyncio.run(main())
