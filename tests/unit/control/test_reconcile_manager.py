"""The reconcile manager on a fake clock and an in-memory control plane (no sleeps)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from tests.unit.control.memory import MemoryControl
from turnout.control.reconcile import Condition, Context, ReconcileManager, Result
from turnout.control.store.records import ObjectKey, StoredObject
from turnout.core.tasks import spawn
from turnout.testing.clock import FakeClock

T0 = 1_800_000_000.0


class Recorder:
    """Records every call; ``plan`` decides what each call returns or raises."""

    name = "recorder"
    kinds = frozenset({"Backend"})
    condition = "Recorded"

    def __init__(self) -> None:
        self.calls: list[tuple[ObjectKey, int, float]] = []  # (key, version, clock time)
        self.plan: Callable[[StoredObject, Context], Result] = lambda obj, ctx: Result()

    async def reconcile(self, obj: StoredObject, ctx: Context) -> Result:
        self.calls.append((obj.key, obj.resource_version, ctx.now))
        return self.plan(obj, ctx)


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


def setup(**kwargs: Any) -> tuple[FakeClock, MemoryControl, Recorder, ReconcileManager]:
    clock = FakeClock(T0)
    control = MemoryControl(clock)
    rec = Recorder()
    manager = ReconcileManager([rec], control, control, clock, **kwargs)
    control.manager = manager
    return clock, control, rec, manager


def test_level_triggered_on_start_on_change_and_not_on_status_or_other_kinds() -> None:
    async def main() -> None:
        _clock, control, rec, manager = setup()
        control.put("Backend", "a", {"x": 1})
        control.put("Backend", "b", {"x": 1})
        control.put("HTTPRoute", "r", {})
        assert await manager.run_due() is None  # not the leader yet: nothing runs
        assert rec.calls == []
        manager.set_leader(True)
        assert await manager.run_due() is None
        assert [c[0][2] for c in rec.calls] == ["a", "b"]  # every watched object, at start
        rec.calls.clear()
        await manager.run_due()
        assert rec.calls == []  # nothing changed: not called again
        b = control.put("Backend", "b", {"x": 2})
        await control.write_conditions(
            ("Backend", "default", "a"),
            [{"type": "Other", "status": "True", "reason": "R", "message": ""}],
        )
        control.put("HTTPRoute", "r", {"y": 1})
        await manager.run_due()
        assert rec.calls == [(b.key, b.resource_version, T0)]

    run(main())


def test_requeue_runs_at_exactly_the_requested_time() -> None:
    async def main() -> None:
        clock, control, rec, manager = setup()
        rec.plan = lambda obj, ctx: Result(requeue_at=T0 + 30) if ctx.now < T0 + 30 else Result()
        control.put("Backend", "a", {})
        manager.set_leader(True)
        assert await manager.run_due() == T0 + 30
        clock.advance(29.999)
        assert await manager.run_due() == T0 + 30
        assert len(rec.calls) == 1
        clock.advance(0.001)
        assert await manager.run_due() is None
        assert [c[2] for c in rec.calls] == [T0, T0 + 30]

    run(main())


def test_errors_back_off_exponentially_capped_logged_once_and_surface_in_a_condition(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        clock, control, rec, manager = setup(backoff_first=1.0, backoff_max=4.0)
        failing = True

        def plan(obj: StoredObject, ctx: Context) -> Result:
            if failing:
                raise RuntimeError("upstream API is down")
            return Result(conditions=[Condition("Ready", True, "Ready", "fine")])

        rec.plan = plan
        control.put("Backend", "a", {})
        manager.set_leader(True)
        times = []
        for _ in range(5):
            due = await manager.run_due()
            assert due is not None
            times.append(due - T0)
            clock.set(due)
        assert times == [1, 3, 7, 11, 15]  # 1, 2, 4, then capped at 4
        key = ("Backend", "default", "a")
        (cond,) = control.stored[key].status["conditions"]  # type: ignore[index]
        assert cond["type"] == "Recorded" and cond["status"] == "False"
        assert cond["reason"] == "ReconcileError"
        assert "upstream API is down" in cond["message"]
        assert control.saved[("recorder", key)].failures == 5
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1, warnings  # once per streak, not per retry
        failing = False
        assert await manager.run_due() is None
        conds = {c["type"]: c for c in control.stored[key].status["conditions"]}  # type: ignore[index]
        assert conds["Recorded"]["status"] == "True"
        assert conds["Ready"]["observedGeneration"] == 1
        assert control.saved[("recorder", key)].failures == 0

    with caplog.at_level(logging.DEBUG, logger="turnout.control.reconcile"):
        run(main())


def test_only_the_leader_runs_and_losing_the_lead_stops_at_once() -> None:
    async def main() -> None:
        clock, control, rec, manager = setup()
        rec.plan = lambda obj, ctx: Result(requeue_at=ctx.now + 10)
        control.put("Backend", "a", {})
        manager.set_leader(True)
        await manager.run_due()
        manager.set_leader(False)
        clock.advance(10)
        control.put("Backend", "a", {"changed": True})
        assert await manager.run_due() is None
        assert manager.next_due() is None
        assert len(rec.calls) == 1
        manager.set_leader(True)  # leads again: resumes, the change is seen
        await manager.run_due()
        assert len(rec.calls) == 2

    run(main())


def test_a_restarted_manager_resumes_from_persisted_progress() -> None:
    async def main() -> None:
        clock, control, rec, manager = setup(backoff_first=5.0)
        rec.plan = lambda obj, ctx: Result(requeue_at=T0 + 100)
        control.put("Backend", "done", {})
        control.put("Backend", "failing", {})
        first = rec.plan

        def plan(obj: StoredObject, ctx: Context) -> Result:
            if obj.name == "failing":
                raise RuntimeError("boom")
            return first(obj, ctx)

        rec.plan = plan
        manager.set_leader(True)
        await manager.run_due()
        assert len(rec.calls) == 2
        manager.set_leader(False)  # this process dies; another one takes over

        again = Recorder()
        again.plan = plan
        successor = ReconcileManager([again], control, control, clock, backoff_first=5.0)
        control.manager = successor
        control.put("Backend", "new", {})  # created while nobody led
        successor.set_leader(True)
        clock.advance(1)
        await successor.run_due()
        assert [c[0][2] for c in again.calls] == ["new"]  # the others resume on schedule
        clock.advance(4)  # T0 + 5: the failing one's back-off retry
        await successor.run_due()
        assert [c[0][2] for c in again.calls] == ["new", "failing"]
        assert control.saved[("recorder", ("Backend", "default", "failing"))].failures == 2
        clock.set(T0 + 100)
        await successor.run_due()
        assert {"done", "new"} <= {c[0][2] for c in again.calls[2:]}

    run(main())


def test_deleted_objects_are_forgotten() -> None:
    async def main() -> None:
        _clock, control, rec, manager = setup()
        rec.plan = lambda obj, ctx: Result(requeue_at=ctx.now + 10)
        control.put("Backend", "a", {})
        manager.set_leader(True)
        await manager.run_due()
        assert ("recorder", ("Backend", "default", "a")) in control.saved
        control.delete("Backend", "default", "a")
        assert await manager.run_due() is None
        assert control.saved == {}
        assert len(rec.calls) == 1

    run(main())


def test_run_sleeps_on_a_loop_timer_until_the_next_due_time() -> None:
    """The production loop wakes on ``observe`` (a change) without polling."""

    async def main() -> None:
        _clock, control, rec, manager = setup()
        manager.set_leader(True)
        task = spawn(manager.run())
        try:
            for _ in range(3):
                await asyncio.sleep(0)
            assert rec.calls == []
            control.put("Backend", "a", {})
            for _ in range(5):
                await asyncio.sleep(0)
            assert [c[0][2] for c in rec.calls] == ["a"]
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    run(main())


def test_reconciler_names_are_unique() -> None:
    clock = FakeClock(T0)
    control = MemoryControl(clock)
    with pytest.raises(ValueError, match="unique"):
        ReconcileManager([Recorder(), Recorder()], control, control, clock)


def test_a_failure_outside_the_reconciler_keeps_the_object_scheduled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        clock, control, rec, manager = setup(backoff_first=0.001)
        control.put("Backend", "a", {})
        real = control.objects
        calls = [0]

        def objects() -> dict[ObjectKey, StoredObject]:
            calls[0] += 1
            if calls[0] == 2:  # the first call resumes, the second runs the object
                raise RuntimeError("a bug")
            return real()

        control.objects = objects  # type: ignore[method-assign]
        manager.set_leader(True)
        task = spawn(manager.run())
        try:
            for _ in range(200):
                clock.advance(0.001)
                await asyncio.sleep(0.001)  # the loop timer the manager armed
                if rec.calls:
                    break
            assert [c[0][2] for c in rec.calls] == ["a"]
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    with caplog.at_level(logging.ERROR, logger="turnout.control.reconcile"):
        run(main())
    assert any("failed unexpectedly" in r.message for r in caplog.records)
