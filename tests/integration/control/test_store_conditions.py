"""Conditions in the store: written with a commit (status-only for untouched objects, no
new revision) and merged by a reconciler without losing the commit's, on both backends."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from turnout.control.store import Change, Store, StoredObject
from turnout.control.store.records import ObjectKey


def backend(name: str, spec: Any) -> Change:
    manifest = {"apiVersion": "turnout.dev/v1alpha1", "kind": "Backend", "metadata": {"name": name}}
    return Change("put", "Backend", "default", name, {**manifest, "spec": spec})


def ok_unless_named(
    bad: set[str],
) -> Callable[[list[StoredObject]], dict[ObjectKey, Sequence[dict[str, Any]]]]:
    def hook(objects: list[StoredObject]) -> dict[ObjectKey, Sequence[dict[str, Any]]]:
        return {
            o.key: [
                {
                    "type": "ResolvedRefs",
                    "status": "False" if o.name in bad else "True",
                    "reason": "BackendNotFound" if o.name in bad else "ResolvedRefs",
                    "message": "",
                    "observedGeneration": o.generation,
                }
            ]
            for o in objects
        }

    return hook


def test_commit_stores_conditions_and_reconcilers_merge_theirs(
    with_store: Callable[..., Any],
) -> None:
    async def body(store: Store) -> None:
        first = await store.commit(
            [backend("a", {"x": 1})], actor="t", conditions=ok_unless_named({"a"})
        )
        (a,) = first.objects
        (cond,) = a.status["conditions"]  # type: ignore[index]
        assert (cond["status"], cond["observedGeneration"]) == ("False", 1)
        since = cond["lastTransitionTime"]
        # a commit of another object flips a's condition: a status-only update of a
        second = await store.commit(
            [backend("b", {})], actor="t", conditions=ok_unless_named(set())
        )
        assert second.revision == first.revision + 1
        revision, objects = await store.load()
        assert revision == second.revision
        a = next(o for o in objects if o.name == "a")
        assert a.resource_version == first.revision  # unchanged: not part of the revision
        assert a.status["conditions"][0]["status"] == "True"  # type: ignore[index]
        # a reconciler's condition is merged, the commit's stays
        status = await store.merge_conditions(
            "Backend",
            "default",
            "a",
            [
                {
                    "type": "Expiry",
                    "status": "True",
                    "reason": "R",
                    "message": "",
                    "observedGeneration": 1,
                }
            ],
        )
        assert [c["type"] for c in status["conditions"]] == ["ResolvedRefs", "Expiry"]
        third = await store.commit([backend("c", {})], actor="t", conditions=ok_unless_named(set()))
        a = next(o for o in third.objects if o.name == "a")
        assert [c["type"] for c in a.status["conditions"]] == ["ResolvedRefs", "Expiry"]  # type: ignore[index]
        assert since  # set on the first write

    with_store(body)
