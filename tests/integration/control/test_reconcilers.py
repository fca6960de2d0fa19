"""Reconcilers over the real store (SQLite and PostgreSQL), driven by a fake clock.

A ControlPlane with the registered reconcilers expires a Sandbox at exactly its ``ttl``
(deleted as ``system:sandbox-ttl``, audited), and a second ControlPlane on the same store,
standing in for a restart or a new leader, resumes from the persisted progress instead of
starting over. Stored ``Accepted``/``ResolvedRefs`` conditions follow commits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import yaml

from turnout.config.parse import parse_text
from turnout.control.auth import Principal, Role
from turnout.control.service import ControlPlane
from turnout.control.store import Change, open_store
from turnout.testing.clock import FakeClock
from turnout.testing.manifests import backend

ADMIN = Principal("t", "test", Role.ADMIN, ())
KEY = ("Sandbox", "default", "fx")
T0 = 1_800_000_000.0


async def _reload(reason: str) -> bool:
    return True


async def control_plane(url: str, clock: FakeClock) -> ControlPlane:
    control = ControlPlane(
        await open_store(url, clock=clock),  # the store's timestamps on the fake clock too
        data_dir=None,
        on_change=_reload,
        runtime=lambda: {"workers": []},
        clock=clock,
    )
    await control.start()
    control.desired()
    return control


def sandbox(ttl: str) -> dict[str, Any]:
    return {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "Sandbox",
        "metadata": {"name": "fx"},
        "spec": {
            "ttl": ttl,
            "overrides": [{"backend": "orders", "endpoints": [{"address": "127.0.0.1:9"}]}],
        },
    }


def put(manifest: dict[str, Any]) -> Change:
    meta = manifest["metadata"]
    return Change("put", manifest["kind"], meta.get("namespace", "default"), meta["name"], manifest)


def test_sandbox_ttl_expires_exactly_and_resumes_after_a_restart(db_url: str) -> None:
    async def main() -> None:
        clock = FakeClock(T0)
        first = await control_plane(db_url, clock)
        try:
            await first.write([put(backend("orders", 9)), put(sandbox("1h"))], ADMIN)
            assert first.stored[KEY].created_at.timestamp() == T0
            expires = T0 + 3600
            first.reconcile.set_leader(True)
            assert await first.reconcile.run_due() == expires
            (saved,) = await first.store.progress("sandbox-ttl")
            assert (saved.key, saved.requeue_at) == (KEY, expires)
            first.reconcile.set_leader(False)
        finally:
            await first.close()

        second = await control_plane(db_url, clock)  # a restart, or another replica
        try:
            second.reconcile.set_leader(True)
            assert await second.reconcile.run_due() == expires  # resumed, not redone
            clock.set(expires - 0.001)
            assert await second.reconcile.run_due() == expires
            assert KEY in second.stored
            clock.set(expires)
            await second.reconcile.run_due()
            assert KEY not in second.stored
            _, objects = await second.store.load()
            assert [o.name for o in objects] == ["orders"]
            entry = (await second.store.audit(limit=1))[0]
            assert (entry.actor, entry.action, entry.message) == (
                "system:sandbox-ttl",
                "expire",
                "ttl expired",
            )
            assert await second.store.progress("sandbox-ttl") == []
        finally:
            await second.close()

    asyncio.run(main())


def test_conditions_are_stored_with_commits_and_rendered(db_url: str) -> None:
    async def main() -> None:
        control = await control_plane(db_url, FakeClock(T0))
        try:
            await control.write([put(sandbox("1h"))], ADMIN)  # names a missing Backend
            control.desired()

            def conditions(where: dict[str, Any] | None) -> dict[str, str]:
                assert where is not None
                return {c["type"]: c["status"] for c in where["conditions"]}

            assert conditions(control.stored[KEY].status)["ResolvedRefs"] == "False"
            watcher = control.subscribe(ADMIN, "Sandbox", None)
            await control.write([put(backend("orders", 9))], ADMIN)  # fixes the Sandbox
            control.desired()
            event = watcher.queue.get_nowait()  # its status changed: a watch event
            assert event is not None and (event.type, event.key) == ("MODIFIED", KEY)
            assert watcher.queue.empty()
            _, objects = await control.store.load()
            fx = next(o for o in objects if o.key == KEY)
            assert fx.resource_version == 1  # a status-only update: not in revision 2
            assert conditions(fx.status) == {"Accepted": "True", "ResolvedRefs": "True"}
            rendered = control.render(control.view[KEY])["status"]
            assert conditions(rendered) == {
                "Accepted": "True",
                "ResolvedRefs": "True",
                "Programmed": "False",  # no workers here: computed at read
            }
            assert all(c["observedGeneration"] == 1 for c in rendered["conditions"])
        finally:
            await control.close()

    asyncio.run(main())


def test_the_leader_stores_conditions_a_files_reload_changed(db_url: str) -> None:
    async def main() -> None:
        control = await control_plane(db_url, FakeClock(T0))
        try:
            await control.write([put(sandbox("1h"))], ADMIN)  # its Backend is missing
            control.desired()
            resolved = control.stored[KEY].status["conditions"][1]  # type: ignore[index]
            assert (resolved["type"], resolved["status"]) == ("ResolvedRefs", "False")
            files, problems = parse_text(yaml.safe_dump(backend("orders", 9)), "files.yaml")
            assert problems == []
            control.set_files(files)  # a `serve -f` reload brings the Backend
            control.reconcile.set_leader(True)
            control.desired()
            for _ in range(500):
                await asyncio.sleep(0.01)
                _, objects = await control.store.load()
                fx = next(o for o in objects if o.key == KEY)
                if fx.status["conditions"][1]["status"] == "True":  # type: ignore[index]
                    break
            else:
                raise AssertionError(f"conditions not stored: {fx.status}")
            assert control.stored[KEY].status == fx.status
            assert control.writes.conditions_drift() == {}
        finally:
            await control.close()

    asyncio.run(main())


def test_a_new_leader_expires_the_sandbox_its_predecessor_scheduled(
    pg_url: str, wait_for: Callable[..., Awaitable[float]]
) -> None:
    """Two replicas on PostgreSQL: the leader schedules the expiry, steps down before it;
    the other takes the advisory lock, resumes from the stored progress and deletes the
    Sandbox once (real clock, real leader election)."""

    async def main() -> None:
        a = ControlPlane(await open_store(pg_url), data_dir=None, on_change=_reload, runtime=dict)
        b = ControlPlane(await open_store(pg_url), data_dir=None, on_change=_reload, runtime=dict)
        await a.start()
        await b.start()
        closed = False
        try:
            a.start_background()
            await wait_for(lambda: a.is_leader, 5)
            b.start_background()
            await a.write([put(backend("orders", 9)), put(sandbox("4s"))], ADMIN)
            await wait_for(lambda: KEY in b.stored, 5)  # b hears of it through the feed
            for _ in range(250):  # the leader scheduled the expiry and saved it
                if [p.key for p in await a.store.progress("sandbox-ttl")] == [KEY]:
                    break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError("the leader saved no progress")
            await a.close()  # the leader goes away before the expiry
            closed = True
            await wait_for(lambda: b.is_leader, 5)
            await wait_for(lambda: KEY not in b.stored, 10)
            expired = [e for e in await b.store.audit() if e.action == "expire"]
            assert [(e.actor, e.target) for e in expired] == [
                ("system:sandbox-ttl", "Sandbox default/fx")
            ]
        finally:
            await b.close()
            if not closed:
                await a.close()

    asyncio.run(main())
