"""``analysis.perRoute``: a candidate failing on one route of the released Backend is
rolled back although the sum over its routes hides it; without it, it is not."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.unit.control.memory import MemoryControl
from turnout.control.reconcile import ReconcileManager
from turnout.control.releases.reconciler import ReleaseReconciler
from turnout.control.releases.state import ReleaseState
from turnout.observe.metrics import Aggregate, RouteTotals
from turnout.testing.clock import FakeClock

KEY = ("Release", "default", "orders-v2")


def spec(per_route: bool) -> dict[str, Any]:
    return {
        "backend": "orders",
        "candidate": {"backend": "orders-v2"},
        "strategy": {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}},
        "analysis": {"minSamples": 20, "perRoute": per_route, "successRate": {"tolerance": 0.05}},
    }


def serve(agg: Aggregate, route: str, backend: str, ok: int, failed: int = 0) -> None:
    totals = agg.routes.setdefault((route, "default/" + backend), RouteTotals())
    totals.codes[2] += ok
    totals.codes[5] += failed
    totals.buckets[3] += ok + failed


async def run(per_route: bool) -> ReleaseState:
    clock = FakeClock()
    control = MemoryControl(clock)
    agg = Aggregate()
    manager = ReconcileManager([ReleaseReconciler()], control, control, clock, observe=lambda: agg)
    control.manager = manager
    manager.set_leader(True)
    control.put("Release", "orders-v2", spec(per_route))
    for _ in range(60):
        # /browse: lots of healthy traffic; /checkout: a little, all failing on the candidate
        serve(agg, "default/browse", "orders", 200)
        serve(agg, "default/browse", "orders-v2", 200)
        serve(agg, "default/checkout", "orders", 5)
        serve(agg, "default/checkout", "orders-v2", 0, 2)
        await manager.run_due()
        clock.advance(0.5)
    found = ReleaseState.from_annotations(control.stored[KEY].annotations)
    assert found is not None
    return found


def test_one_failing_route_fails_the_release_with_per_route() -> None:
    state = asyncio.run(run(per_route=True))
    assert state.phase == "Degraded", state
    assert "successRate[default/checkout] fail" in state.reason


def test_the_sum_hides_it_without_per_route() -> None:
    state = asyncio.run(run(per_route=False))
    assert state.phase == "Paused", state  # 1 % of the candidate's requests fail: in tolerance
