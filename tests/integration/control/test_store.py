"""The store against real SQLite and PostgreSQL: migrations, commits, revisions, rollback."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from turnout.control.store import (
    Change,
    Conflict,
    Invalid,
    NotFound,
    Store,
    StoredObject,
    changes_to_reach,
    open_store,
    store_url,
)
from turnout.control.store.engine import normalise_url

Runner = Callable[..., Any]
API = "gateway.networking.k8s.io/v1"


def route(
    name: str,
    spec: Any = None,
    *,
    namespace: str = "default",
    labels: dict[str, str] | None = None,
    **meta: Any,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, **meta}
    if labels:
        metadata["labels"] = labels
    out: dict[str, Any] = {"apiVersion": API, "kind": "HTTPRoute", "metadata": metadata}
    if spec is not None:
        out["spec"] = spec
    return out


def put(name: str, spec: Any = None, **kw: Any) -> Change:
    expect = kw.pop("expect_version", None)
    must_exist = kw.pop("must_exist", None)
    return Change(
        "put",
        "HTTPRoute",
        "default",
        name,
        route(name, spec, **kw),
        expect_version=expect,
        must_exist=must_exist,
    )


def rm(name: str, **kw: Any) -> Change:
    return Change("delete", "HTTPRoute", "default", name, None, **kw)


async def counts(store: Store) -> tuple[int, int, int]:
    latest, objects = await store.load()
    return latest, len(objects), len(await store.audit(limit=1000))


# -- URLs ---------------------------------------------------------------------------------


def test_store_url_forms(tmp_path: Path) -> None:
    data = tmp_path / "data" / "turnout"
    url = store_url(None, data)
    assert url == f"sqlite+aiosqlite:///{data.resolve() / 'turnout.db'}"
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert store_url("", data) == url
    assert store_url("postgres://u:pw@db:5433/t", data) == "postgresql+asyncpg://u:pw@db:5433/t"
    assert store_url("postgresql://u@db/t", data) == "postgresql+asyncpg://u@db/t"
    assert store_url("sqlite:///x/y.db", data) == "sqlite+aiosqlite:///x/y.db"
    for bad in ("mysql://root:hunter2@h/db", "redis://h", "sqlite://", "postgresql://h"):
        with pytest.raises(ValueError) as info:
            store_url(bad, data)
        assert "hunter2" not in str(info.value)
    with pytest.raises(ValueError, match="sqlite:///PATH"):
        store_url("mysql://h/d", data)
    assert normalise_url("postgresql://a@b/c").drivername == "postgresql+asyncpg"


# -- migrations ---------------------------------------------------------------------------


def test_open_migrates_and_reopen_is_idempotent(db_url: str) -> None:
    async def main() -> None:
        store = await open_store(db_url)
        try:
            assert store.dialect in ("sqlite", "postgresql")
            assert await store.latest_revision() == 0
            assert await store.load() == (0, [])
            await store.commit([put("a", {"x": 1})], actor="t")
        finally:
            await store.close()
        for _ in range(2):  # reopening runs `upgrade head` again: a no-op
            again = await open_store(db_url)
            try:
                assert await again.latest_revision() == 1
                assert [o.name for o in (await again.load())[1]] == ["a"]
            finally:
                await again.close()
        engine = create_async_engine(normalise_url(db_url))
        try:
            async with engine.connect() as conn:
                versions = (
                    await conn.execute(text("SELECT version_num FROM turnout_schema_version"))
                ).all()
        finally:
            await engine.dispose()
        assert [tuple(v) for v in versions] == [("0003_rel",)]

    asyncio.run(main())


def test_store_url_attribute_masks_the_password(pg_url: str) -> None:
    async def main() -> None:
        url = pg_url.replace("postgres@", "postgres:not-needed@")  # trust auth ignores it
        store = await open_store(url)
        try:
            assert "not-needed" not in store.url
            assert store.url.startswith("postgresql://postgres:***@127.0.0.1")
            await store.ping()
        finally:
            await store.close()

    asyncio.run(main())


# -- commits ------------------------------------------------------------------------------


def test_create_replace_delete(with_store: Runner) -> None:
    async def body(store: Store) -> None:
        r = await store.commit([put("shop", {"rules": [1]})], actor="alice", message="first")
        assert (r.revision, r.changed) == (1, True)
        (res,) = r.results
        assert (res.action, res.before) == ("created", None)
        assert res.after is not None and res.after["metadata"]["resourceVersion"] == "1"
        obj = await store.get("HTTPRoute", "default", "shop")
        assert (obj.resource_version, obj.generation, obj.spec) == (1, 1, {"rules": [1]})
        assert obj.created_at.tzinfo is UTC and obj.updated_at.tzinfo is UTC
        assert r.objects == [obj]
        m = obj.manifest()
        assert m["apiVersion"] == API and m["kind"] == "HTTPRoute"
        assert m["metadata"]["resourceVersion"] == "1" and m["metadata"]["generation"] == 1
        assert m["metadata"]["creationTimestamp"].endswith("Z")
        assert "labels" not in m["metadata"] and "annotations" not in m["metadata"]
        assert "status" not in m

        # labels only: a new revision, same generation
        r = await store.commit([put("shop", {"rules": [1]}, labels={"team": "a"})], actor="bob")
        assert (r.revision, r.results[0].action) == (2, "configured")
        obj = await store.get("HTTPRoute", "default", "shop")
        assert (obj.resource_version, obj.generation, obj.labels) == (2, 1, {"team": "a"})

        # spec change: generation bumps, creation time stays
        created = obj.created_at
        r = await store.commit([put("shop", {"rules": [2]}, labels={"team": "a"})], actor="bob")
        obj = await store.get("HTTPRoute", "default", "shop")
        assert (r.revision, obj.resource_version, obj.generation) == (3, 3, 2)
        assert obj.created_at == created and obj.updated_at >= created

        # the same manifest again (server fields and key order ignored): nothing new
        same = route("shop", {"rules": [2]}, labels={"team": "a"}, resourceVersion="3", uid="u")
        same["status"] = {"ignored": True}
        r = await store.commit([Change("put", "HTTPRoute", "default", "shop", same)], actor="carol")
        assert (r.revision, r.changed, r.results[0].action) == (3, False, "unchanged")
        assert await store.latest_revision() == 3
        assert len(await store.revisions()) == 3
        assert len(await store.audit()) == 3  # no audit row for a no-op

        # 1 and true are different values
        r = await store.commit([put("flag", {"on": 1})], actor="t")
        r = await store.commit([put("flag", {"on": True})], actor="t")
        assert (r.changed, r.results[0].action) == (True, "configured")

        r = await store.commit([rm("shop"), rm("flag")], actor="dave")
        assert [x.action for x in r.results] == ["deleted", "deleted"]
        assert r.results[0].after is None and r.results[0].before is not None
        assert (r.revision, r.objects) == (6, [])
        with pytest.raises(NotFound, match="HTTPRoute default/shop not found"):
            await store.get("HTTPRoute", "default", "shop")

        # deleting what is not there (without must_exist) is a no-op
        r = await store.commit([rm("shop")], actor="dave")
        assert (r.changed, r.revision, r.results[0].action) == (False, 6, "unchanged")

    with_store(body)


def test_several_changes_in_one_commit_and_cluster_scoped_objects(with_store: Runner) -> None:
    async def body(store: Store) -> None:
        gc = {"apiVersion": API, "kind": "GatewayClass", "metadata": {"name": "turnout"}}
        gc["spec"] = {"controllerName": "turnout.dev/gateway"}
        r = await store.commit(
            [
                Change("put", "GatewayClass", "", "turnout", gc),
                put("b", {"n": 1}),
                put("a", {"n": 1}),
                Change("put", "HTTPRoute", "other", "a", route("a", {"n": 2}, namespace="other")),
            ],
            actor="t",
        )
        assert r.revision == 1
        assert [o.key for o in r.objects] == [
            ("GatewayClass", "", "turnout"),
            ("HTTPRoute", "default", "a"),
            ("HTTPRoute", "default", "b"),
            ("HTTPRoute", "other", "a"),
        ]
        manifest = r.objects[0].manifest()
        assert "namespace" not in manifest["metadata"]
        info, snapshot = await store.revision(1)
        assert [c["action"] for c in info.changes] == ["created"] * 4
        assert [m["metadata"]["name"] for m in snapshot] == ["turnout", "a", "b", "a"]

        # changed and changed back in one commit: no revision at all
        r = await store.commit([put("a", {"n": 9}), put("a", {"n": 1})], actor="t")
        assert [x.action for x in r.results] == ["configured", "configured"]
        assert (r.changed, r.revision) == (False, 1)
        # create and delete in one commit: nothing either
        r = await store.commit([put("c", {}), rm("c")], actor="t")
        assert (r.changed, r.revision) == (False, 1)
        assert await store.latest_revision() == 1

    with_store(body)


def test_conflicts_and_not_found_write_nothing(with_store: Runner) -> None:
    async def body(store: Store) -> None:
        await store.commit([put("a", {"v": 1})], actor="t")
        await store.commit([put("a", {"v": 2})], actor="t")
        before = await counts(store)

        with pytest.raises(Conflict, match="HTTPRoute default/a already exists"):
            await store.commit([put("a", {"v": 3}, must_exist=False)], actor="t")
        with pytest.raises(Conflict, match="resourceVersion 2, not 1"):
            await store.commit([put("a", {"v": 3}, expect_version=1)], actor="t")
        with pytest.raises(Conflict):
            await store.commit([rm("a", expect_version=1)], actor="t")
        with pytest.raises(Conflict, match="does not exist"):
            await store.commit([put("zz", {"v": 3}, expect_version=1)], actor="t")
        with pytest.raises(NotFound, match="HTTPRoute default/zz not found"):
            await store.commit([put("zz", {}, must_exist=True)], actor="t")
        with pytest.raises(NotFound):
            await store.commit([rm("zz", must_exist=True)], actor="t")
        # a failing change rolls back the ones before it in the same commit
        with pytest.raises(NotFound):
            await store.commit([put("b", {}), rm("zz", must_exist=True)], actor="t")
        assert await counts(store) == before

        # the right expectations succeed
        r = await store.commit([put("a", {"v": 3}, expect_version=2, must_exist=True)], actor="t")
        assert r.revision == 3
        r = await store.commit([put("b", {}, must_exist=False)], actor="t")
        assert r.revision == 4
        r = await store.commit([rm("a", expect_version=3, must_exist=True)], actor="t")
        assert (r.revision, [o.name for o in r.objects]) == (5, ["b"])

    with_store(body)


def test_invalid_writes_nothing(with_store: Runner) -> None:
    async def body(store: Store) -> None:
        await store.commit([put("a", {"v": 1})], actor="t")
        before = await counts(store)
        seen: list[list[StoredObject]] = []

        def validate(objects: list[StoredObject]) -> list[Any]:
            seen.append(objects)
            return (
                [{"path": "spec.v", "message": "v must be small"}]
                if any((o.spec or {}).get("v", 0) > 5 for o in objects)
                else []
            )

        with pytest.raises(Invalid) as info:
            await store.commit([put("b", {"v": 7})], actor="t", validate=validate)
        assert info.value.problems == [{"path": "spec.v", "message": "v must be small"}]
        # the callback saw the whole would-be state, with would-be versions
        assert [(o.name, o.resource_version) for o in seen[-1]] == [("a", 1), ("b", 2)]
        assert await counts(store) == before
        assert len(await store.revisions()) == 1

        with pytest.raises(Invalid):
            await store.commit([put("b", {"v": 7})], actor="t", validate=validate, dry_run=True)
        r = await store.commit([put("b", {"v": 3})], actor="t", validate=validate)
        assert (r.revision, r.changed) == (2, True)

    with_store(body)


def test_dry_run_writes_nothing(with_store: Runner) -> None:
    async def body(store: Store) -> None:
        await store.commit([put("a", {"v": 1})], actor="t")
        before = await counts(store)
        r = await store.commit([put("a", {"v": 2}), put("b", {})], actor="t", dry_run=True)
        assert (r.revision, r.changed) == (2, True)
        assert [x.action for x in r.results] == ["configured", "created"]
        assert [(o.name, o.resource_version, o.generation) for o in r.objects] == [
            ("a", 2, 2),
            ("b", 2, 1),
        ]
        assert await counts(store) == before
        assert (await store.get("HTTPRoute", "default", "a")).spec == {"v": 1}
        r = await store.commit([put("a", {"v": 1})], actor="t", dry_run=True)
        assert (r.revision, r.changed, r.results[0].action) == (1, False, "unchanged")
        with pytest.raises(Conflict):
            await store.commit([put("a", {}, must_exist=False)], actor="t", dry_run=True)

    with_store(body)


def test_revisions_are_numbered_with_snapshots(with_store: Runner) -> None:
    async def body(store: Store) -> None:
        await store.commit([put("a", {"v": 1})], actor="alice", message="one")
        await store.commit([put("b", {"v": 1})], actor="bob", message="two")
        await store.commit([put("a", {"v": 2}), rm("b")], actor="carol", message="three")

        infos = await store.revisions()
        assert [i.number for i in infos] == [3, 2, 1]
        assert [(i.actor, i.message) for i in infos] == [
            ("carol", "three"),
            ("bob", "two"),
            ("alice", "one"),
        ]
        assert infos[0].changes == [
            {"action": "configured", "kind": "HTTPRoute", "namespace": "default", "name": "a"},
            {"action": "deleted", "kind": "HTTPRoute", "namespace": "default", "name": "b"},
        ]
        assert all(i.rollback_of is None and i.created_at.tzinfo is UTC for i in infos)
        assert [i.number for i in await store.revisions(limit=1, before=3)] == [2]
        assert [i.number for i in await store.revisions(before=2)] == [1]

        info, snapshot = await store.revision(2)
        assert info.number == 2 and info.actor == "bob"
        assert [(m["metadata"]["name"], m["spec"]) for m in snapshot] == [
            ("a", {"v": 1}),
            ("b", {"v": 1}),
        ]
        assert snapshot[0]["metadata"]["resourceVersion"] == "1"
        _, snapshot = await store.revision(3)
        assert [(m["metadata"]["name"], m["spec"]) for m in snapshot] == [("a", {"v": 2})]
        with pytest.raises(NotFound, match="revision 9 not found"):
            await store.revision(9)

    with_store(body)


def test_set_status_makes_no_revision(with_store: Runner) -> None:
    async def body(store: Store) -> None:
        await store.commit([put("a", {"v": 1})], actor="t")
        status = {"conditions": [{"type": "Accepted", "status": "True"}]}
        await store.set_status("HTTPRoute", "default", "a", status)
        obj = await store.get("HTTPRoute", "default", "a")
        assert (obj.status, obj.resource_version) == (status, 1)
        assert obj.manifest()["status"] == status
        assert await store.latest_revision() == 1
        _, snapshot = await store.revision(1)
        assert "status" not in snapshot[0]
        # a configure keeps the status; it is the reconcilers' to change
        await store.commit([put("a", {"v": 2})], actor="t")
        assert (await store.get("HTTPRoute", "default", "a")).status == status
        with pytest.raises(NotFound):
            await store.set_status("HTTPRoute", "default", "nope", status)

    with_store(body)


# -- rollback -----------------------------------------------------------------------------


def _obj(name: str, spec: Any, rv: int, labels: dict[str, str] | None = None) -> StoredObject:
    from datetime import datetime

    now = datetime.now(UTC)
    return StoredObject(
        "HTTPRoute", "default", name, API, labels or {}, {}, spec, None, rv, 1, now, now
    )


def test_changes_to_reach() -> None:
    current = [_obj("a", {"v": 1}, 3), _obj("b", {"v": 1}, 4), _obj("c", {"v": 1}, 5)]
    target = [
        route("a", {"v": 1}, resourceVersion="1"),  # same content: left out
        route("b", {"v": 2}),
        route("d", {"v": 1}),
    ]
    changes = changes_to_reach(current, target)
    assert changes == [
        Change("delete", "HTTPRoute", "default", "c", None, expect_version=5, must_exist=True),
        Change("put", "HTTPRoute", "default", "b", target[1], expect_version=4, must_exist=True),
        Change("put", "HTTPRoute", "default", "d", target[2], must_exist=False),
    ]
    assert changes_to_reach(current, [o.manifest() for o in current]) == []
    assert changes_to_reach([], []) == []
    # labels count as content
    assert len(changes_to_reach(current[:1], [route("a", {"v": 1}, labels={"x": "y"})])) == 1


def test_rollback_reproduces_an_old_snapshot(with_store: Runner) -> None:
    async def body(store: Store) -> None:
        await store.commit([put("a", {"v": 1}), put("b", {"v": 1})], actor="t")
        await store.commit([put("a", {"v": 2}, labels={"l": "x"}), rm("b")], actor="t")
        await store.commit([put("c", {"v": 1})], actor="t")

        _, target = await store.revision(1)
        _, current = await store.load()
        changes = changes_to_reach(current, target)
        r = await store.commit(changes, actor="ops", action="rollback", rollback_of=1)
        assert r.revision == 4
        _, now = await store.revision(4)

        def content(ms: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
            return [(m["metadata"]["name"], m["spec"], m["metadata"].get("labels")) for m in ms]

        assert content(now) == content(target)
        info = (await store.revisions(limit=1))[0]
        assert (info.number, info.rollback_of) == (4, 1)
        entry = (await store.audit(limit=1))[0]
        assert (entry.action, entry.revision, entry.actor) == ("rollback", 4, "ops")
        _, current = await store.load()
        assert changes_to_reach(current, target) == []
        a = await store.get("HTTPRoute", "default", "a")
        assert (a.generation, a.resource_version) == (3, 4)  # v1 → v2 → v1

        # computed from a stale view, the rollback refuses to overwrite a newer change
        _, target = await store.revision(3)
        stale = changes_to_reach((await store.load())[1], target)
        await store.commit([put("a", {"v": 99})], actor="someone-else")
        with pytest.raises(Conflict):
            await store.commit(stale, actor="ops", rollback_of=3)

    with_store(body)


def test_load_is_one_consistent_read(with_store: Runner) -> None:
    async def body(store: Store) -> None:
        async def writer() -> None:
            for i in range(15):
                await store.commit([put(f"r{i % 4}", {"i": i})], actor="w")

        async def reader() -> list[tuple[int, int]]:
            seen = []
            for _ in range(30):
                latest, objects = await store.load()
                seen.append((latest, max((o.resource_version for o in objects), default=0)))
                await asyncio.sleep(0)
            return seen

        _, seen = await asyncio.gather(writer(), reader())
        # every object row a load sees belongs to a revision the same load sees
        assert all(top <= latest for latest, top in seen)

    with_store(body)
