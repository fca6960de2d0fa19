"""Worked example: writing, registering and testing a reconciler (docs/architecture.md,
"Where do I add a reconciler").

``OwnerLabelReconciler`` reports on every Backend whether it names an owning team in the
label ``team``, and re-checks once a day. A real reconciler lives in its own module under
``turnout/control/reconcile/`` and gets one entry in ``registry.RECONCILERS``; its test
drives a ``ReconcileManager`` over the in-memory control plane with a ``FakeClock``.
"""

from __future__ import annotations

import asyncio

from tests.unit.control.memory import MemoryControl
from turnout.control.reconcile import Condition, Context, ReconcileManager, Result
from turnout.control.store.records import StoredObject
from turnout.testing.clock import FakeClock

DAY = 86_400.0


class OwnerLabelReconciler:
    name = "owner-label"  # unique; its writes are audited as "system:owner-label"
    kinds = frozenset({"Backend"})  # it is called for every Backend
    condition = "Owned"  # where its own errors would be reported

    async def reconcile(self, obj: StoredObject, ctx: Context) -> Result:
        team = obj.labels.get("team")
        owned = Condition(
            "Owned",
            bool(team),
            "Owned" if team else "NoOwner",
            f"owned by {team}" if team else "set the label 'team'",
        )
        return Result(conditions=[owned], requeue_at=ctx.now + DAY)


def test_owner_label_reconciler() -> None:
    async def main() -> None:
        clock = FakeClock(1_800_000_000.0)
        control = MemoryControl(clock)
        manager = ReconcileManager([OwnerLabelReconciler()], control, control, clock)
        control.manager = manager  # the control plane tells it about every change
        control.put("Backend", "orders", {"endpoints": []})
        manager.set_leader(True)  # reconcilers run on the leader only

        await manager.run_due()
        key = ("Backend", "default", "orders")
        (cond,) = control.stored[key].status["conditions"]  # type: ignore[index]
        assert (cond["type"], cond["status"], cond["reason"]) == ("Owned", "False", "NoOwner")
        assert cond["observedGeneration"] == 1
        assert manager.next_due() == clock.time() + DAY

        control.put("Backend", "orders", {"endpoints": []}, team="checkout")  # level-triggered
        await manager.run_due()
        (cond,) = control.stored[key].status["conditions"]  # type: ignore[index]
        assert (cond["status"], cond["message"]) == ("True", "owned by checkout")

    asyncio.run(main())
