"""Manual gate approvals on the reconcile manager with a fake clock: a release holds at
each approval gate until approved (once per step), ``approve`` without a gate approves
what is due (or resumes an untimed pause), unknown gates and nothing-due are errors."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.unit.control.releases.test_queue import Rig
from turnout.config.model.release import ReleaseSpec
from turnout.control.releases import approvals
from turnout.control.releases.state import STATE_ANNOTATION, plan

SPEC: dict[str, Any] = {
    "backend": "orders",
    "candidate": {"backend": "orders-v2"},
    "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}]}},
    "approvals": [
        {"name": "lead", "type": "confirm-traffic-increase"},
        {"name": "qa", "type": "confirm-promotion"},
    ],
}


def approve(rig: Rig, gate: str | None = None) -> None:
    obj = rig.control.stored[("Release", "default", "r")]
    spec = ReleaseSpec.model_validate(obj.spec)
    state = rig.state("r", "default")
    new = approvals.approve(spec, plan(spec), state, gate, rig.clock.time(), "alice", "ok")
    rig.control.put(
        "Release",
        "r",
        obj.spec,
        annotations={**obj.annotations, STATE_ANNOTATION: new.to_json()},
    )


def test_each_gate_holds_until_approved_once_per_step() -> None:
    async def main() -> None:
        rig = Rig()
        rig.release("r", SPEC, ns="default")
        await rig.settle()
        state = rig.state("r", "default")
        assert (state.phase, state.step, state.weight) == ("Progressing", 0, 0)
        assert "waiting for confirm-traffic-increase (approval lead:" in state.reason
        assert "turnout release approve r --gate lead" in state.reason
        approve(rig)  # what is due: lead at step 0
        await rig.settle()
        state = rig.state("r", "default")
        assert (state.phase, state.step, state.weight) == ("Paused", 1, 20)
        approve(rig)  # an untimed pause step: resume
        await rig.settle()
        state = rig.state("r", "default")
        assert (state.step, state.weight) == (2, 20)  # lead again before the next setWeight
        assert "approval lead" in state.reason
        approve(rig, "lead")
        await rig.settle()
        state = rig.state("r", "default")
        assert (state.phase, state.step, state.weight) == ("Progressing", 3, 60)
        assert "waiting for confirm-promotion (approval qa" in state.reason
        with pytest.raises(approvals.ApprovalError, match="no approval gate 'nope'"):
            approve(rig, "nope")
        approve(rig, "qa")
        same = rig.state("r", "default")
        approve(rig, "qa")  # idempotent
        assert rig.state("r", "default") == same
        await rig.settle()
        assert rig.state("r", "default").phase == "Promoted"
        with pytest.raises(approvals.ApprovalError, match="nothing waits"):
            approve(rig)

    asyncio.run(main())
