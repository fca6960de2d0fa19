"""Reconciler progress rows on SQLite and PostgreSQL: saved, replaced, listed, dropped."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from turnout.control.store import Store
from turnout.control.store.records import Progress


def test_progress_round_trips_and_survives_reopening(with_store: Callable[..., Any]) -> None:
    key = ("Sandbox", "default", "a")
    first = Progress("sandbox-ttl", key, 3, 1_800_000_123.25)

    async def write(store: Store) -> list[Progress]:
        await store.save_progress(first)
        await store.save_progress(Progress("other", key, 1, None))
        # saving again replaces the row
        await store.save_progress(Progress("sandbox-ttl", key, 4, 99.5, 2, "boom"))
        await store.save_progress(Progress("sandbox-ttl", ("Sandbox", "default", "b"), 1, None))
        await store.drop_progress("sandbox-ttl", ("Sandbox", "default", "b"))
        await store.drop_progress("sandbox-ttl", ("Sandbox", "default", "never"))
        return await store.progress("sandbox-ttl")

    assert with_store(write) == [Progress("sandbox-ttl", key, 4, 99.5, 2, "boom")]

    async def read(store: Store) -> tuple[list[Progress], list[Progress]]:
        return await store.progress("sandbox-ttl"), await store.progress("other")

    assert with_store(read) == (
        [Progress("sandbox-ttl", key, 4, 99.5, 2, "boom")],
        [Progress("other", key, 1, None)],
    )
