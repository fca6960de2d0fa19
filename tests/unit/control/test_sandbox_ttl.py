"""The sandbox TTL reconciler deletes a Sandbox at exactly its expiry on the fake clock."""

from __future__ import annotations

import asyncio

from tests.unit.control.memory import MemoryControl
from turnout.control.reconcile import ReconcileManager
from turnout.control.reconcile.registry import default_reconcilers
from turnout.control.reconcile.sandbox_ttl import SandboxTTLReconciler
from turnout.testing.clock import FakeClock

T0 = 1_800_000_000.0
KEY = ("Sandbox", "default", "feature-x")


def test_a_sandbox_is_deleted_at_exactly_its_expiry() -> None:
    async def main() -> None:
        clock = FakeClock(T0)
        control = MemoryControl(clock)
        manager = ReconcileManager([SandboxTTLReconciler()], control, control, clock)
        control.manager = manager
        control.put("Sandbox", "feature-x", {"ttl": "2h", "routingKey": "fx"})
        control.put("Sandbox", "forever", {"routingKey": "f"})
        manager.set_leader(True)
        assert await manager.run_due() == T0 + 7200  # asks to be called at the expiry
        clock.set(T0 + 7199.999)
        assert await manager.run_due() == T0 + 7200
        assert KEY in control.stored
        clock.set(T0 + 7200)
        assert await manager.run_due() is None
        assert KEY not in control.stored
        assert ("Sandbox", "default", "forever") in control.stored
        ((actor, action, changes),) = control.commits
        assert (actor, action) == ("system:sandbox-ttl", "expire")
        assert [(c.op, c.key, c.expect_version) for c in changes] == [("delete", KEY, 1)]
        assert ("sandbox-ttl", KEY) not in control.saved  # its progress is forgotten

    asyncio.run(main())


def test_a_longer_ttl_moves_the_expiry_and_a_restart_keeps_it() -> None:
    async def main() -> None:
        clock = FakeClock(T0)
        control = MemoryControl(clock)
        manager = ReconcileManager([SandboxTTLReconciler()], control, control, clock)
        control.manager = manager
        control.put("Sandbox", "feature-x", {"ttl": "1m"})
        manager.set_leader(True)
        assert await manager.run_due() == T0 + 60
        clock.advance(30)
        control.put("Sandbox", "feature-x", {"ttl": "10m"})  # counted from creation
        assert await manager.run_due() == T0 + 600
        manager.set_leader(False)
        successor = ReconcileManager(default_reconcilers(), control, control, clock)
        control.manager = successor
        successor.set_leader(True)
        assert await successor.run_due() == T0 + 600  # resumed, not recomputed
        clock.set(T0 + 600)
        await successor.run_due()
        assert KEY not in control.stored

    asyncio.run(main())
