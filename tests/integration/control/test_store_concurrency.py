"""Several stores (as several replicas would have) on one database at once."""

from __future__ import annotations

import asyncio
from typing import Any

from turnout.control.store import Change, Conflict, Store, open_store


def put(name: str, spec: Any) -> Change:
    manifest = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }
    return Change("put", "HTTPRoute", "default", name, manifest)


def test_concurrent_open_on_a_fresh_database(pg_url: str) -> None:
    """Three processes starting at once: the migration lock lets exactly one migrate."""

    async def main() -> None:
        stores = await asyncio.gather(*(open_store(pg_url) for _ in range(3)))
        try:
            for store in stores:
                assert await store.latest_revision() == 0
            await stores[0].commit([put("a", {})], actor="t")
            assert [await s.latest_revision() for s in stores] == [1, 1, 1]
        finally:
            for store in stores:
                await store.close()

    asyncio.run(main())


def test_concurrent_commits_from_two_stores_number_revisions_without_gaps(db_url: str) -> None:
    async def main() -> None:
        a, b = await open_store(db_url), await open_store(db_url)
        try:

            async def commits(store: Store, who: str) -> list[int]:
                results = await asyncio.gather(
                    *(store.commit([put(f"{who}-{i}", {"i": i})], actor=who) for i in range(20))
                )
                assert all(r.changed for r in results)
                return [r.revision for r in results]

            from_a, from_b = await asyncio.gather(commits(a, "a"), commits(b, "b"))
            numbers = sorted(from_a + from_b)
            assert numbers == list(range(1, 41))  # no gaps, no duplicates
            infos = await a.revisions(limit=100)
            assert [i.number for i in infos] == list(range(40, 0, -1))
            latest, objects = await b.load()
            assert (latest, len(objects)) == (40, 40)
            # every revision's snapshot holds exactly the objects committed up to it
            for n in (1, 17, 40):
                _, snapshot = await b.revision(n)
                assert len(snapshot) == n
            audit = await a.audit(limit=100)
            assert sorted(e.revision for e in audit if e.revision is not None) == numbers
            # each object carries the revision that created it
            by_name = {o.name: o.resource_version for o in objects}
            for info in infos:
                (change,) = info.changes
                assert by_name[change["name"]] == info.number
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())


def test_concurrent_conflicting_creates(db_url: str) -> None:
    """Two replicas creating the same object: one wins, the other gets Conflict."""

    async def main() -> None:
        a, b = await open_store(db_url), await open_store(db_url)
        try:
            change = Change(
                "put",
                "HTTPRoute",
                "default",
                "x",
                put("x", {}).manifest,
                must_exist=False,
            )
            results = await asyncio.gather(
                *(s.commit([change], actor="t") for s in (a, b, a, b)), return_exceptions=True
            )
            wins = [r for r in results if not isinstance(r, BaseException)]
            assert len(wins) == 1 and wins[0].revision == 1
            assert sum(isinstance(r, Conflict) for r in results) == 3
        finally:
            await a.close()
            await b.close()

    asyncio.run(main())
