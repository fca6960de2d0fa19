"""``WatchHub``: fans object changes out to the API's watch streams.

Each ``Watcher`` has a bounded queue. ``publish`` never blocks: a watcher that cannot
keep up is cut off (its queue gets a final ``None`` and ``overflowed`` is set) and
re-lists when it reconnects, rather than buffering without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any, Final

from turnout.control.auth import Principal
from turnout.control.objects import CLUSTER_NAMESPACE
from turnout.control.store.records import ObjectKey

WATCH_QUEUE: Final = 1024


@dataclass(slots=True)
class WatchEvent:
    type: str  # ADDED | MODIFIED | DELETED
    key: ObjectKey
    manifest: dict[str, Any]
    revision: int


@dataclass(slots=True, eq=False)
class Watcher:
    kind: str | None
    namespace: str | None
    principal: Principal
    queue: asyncio.Queue[WatchEvent | None] = field(
        default_factory=lambda: asyncio.Queue(WATCH_QUEUE)
    )
    overflowed: bool = False

    def wants(self, key: ObjectKey) -> bool:
        kind, ns, _ = key
        if self.kind is not None and kind != self.kind:
            return False
        if self.namespace is not None and ns not in (self.namespace, CLUSTER_NAMESPACE):
            return False
        return self.principal.sees_namespace(ns)


class WatchHub:
    def __init__(self) -> None:
        self.watchers: set[Watcher] = set()

    def subscribe(self, principal: Principal, kind: str | None, namespace: str | None) -> Watcher:
        w = Watcher(kind, namespace, principal)
        self.watchers.add(w)
        return w

    def unsubscribe(self, w: Watcher) -> None:
        self.watchers.discard(w)

    def publish(self, events: list[WatchEvent]) -> None:
        for w in list(self.watchers):
            for ev in events:
                if not w.wants(ev.key):
                    continue
                try:
                    w.queue.put_nowait(ev)
                except asyncio.QueueFull:
                    w.overflowed = True
                    self.watchers.discard(w)
                    with contextlib.suppress(asyncio.QueueFull):
                        w.queue.get_nowait()
                        w.queue.put_nowait(None)
                    break

    def close(self) -> None:
        """End every stream (each gets a final ``None``)."""
        for w in list(self.watchers):
            with contextlib.suppress(asyncio.QueueFull):
                w.queue.put_nowait(None)
