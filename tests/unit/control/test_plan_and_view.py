"""Pure parts of the control plane: commit planning with conditions, status in the view."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from turnout.control.desired import DesiredState
from turnout.control.store.plan import Plan, merged_status
from turnout.control.store.records import Change, StoredObject
from turnout.control.watch import WatchEvent

NOW = datetime(2027, 1, 1, tzinfo=UTC)


def obj(name: str, version: int, status: dict[str, Any] | None = None) -> StoredObject:
    return StoredObject(
        "Backend", "default", name, "turnout.dev/v1alpha1", {}, {}, {}, status, version, 1, NOW, NOW
    )


def cond(type_: str, status: str) -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": type_,
        "message": "",
        "observedGeneration": 1,
    }


def test_merged_status_keeps_other_types_and_transition_times() -> None:
    first = merged_status(None, [cond("A", "True")], "t1")
    assert first == {"conditions": [{**cond("A", "True"), "lastTransitionTime": "t1"}]}
    second = merged_status(first, [cond("A", "True"), cond("B", "False")], "t2")
    assert [c["lastTransitionTime"] for c in second["conditions"]] == ["t1", "t2"]
    third = merged_status(second, [cond("A", "False")], "t3")
    assert [(c["type"], c["lastTransitionTime"]) for c in third["conditions"]] == [
        ("A", "t3"),
        ("B", "t2"),
    ]


def test_plan_writes_conditions_status_only_for_untouched_objects() -> None:
    a, b = obj("a", 1), obj("b", 1)
    current = {a.key: a, b.key: b}
    plan = Plan(revision=2, current=current, working=dict(current))
    manifest = {"apiVersion": "turnout.dev/v1alpha1", "kind": "Backend", "metadata": {"name": "a"}}
    plan.apply([Change("put", *a.key, {**manifest, "spec": {"x": 1}})], NOW)
    plan.finish()
    plan.set_conditions(
        {a.key: [cond("Accepted", "True")], b.key: [cond("Accepted", "False")]}, "t"
    )
    assert plan.touched == [a.key]  # b is not part of the revision
    assert list(plan.statuses) == [b.key]
    (upsert,) = plan.upserts
    assert upsert.status is not None and upsert.status["conditions"][0]["status"] == "True"
    assert {o.name: o.status is not None for o in plan.objects} == {"a": True, "b": True}


def test_a_status_change_is_a_modified_watch_event() -> None:
    events: list[WatchEvent] = []
    state = DesiredState(events.extend)
    state.set_stored(1, [obj("a", 1)])
    state.refresh_view()
    assert [e.type for e in events] == ["ADDED"]
    state.set_status(("Backend", "default", "a"), {"conditions": [cond("Expiry", "False")]})
    assert [e.type for e in events] == ["ADDED", "MODIFIED"]
    state.set_status(("Backend", "default", "a"), {"conditions": [cond("Expiry", "False")]})
    assert len(events) == 2  # unchanged: no event
