"""One resource type mirrored in memory: list once, then watch from the last resourceVersion.

The loop: list (all namespaces) → replace the cache → watch from the list's version,
applying ADDED/MODIFIED/DELETED and remembering every version seen, bookmarks included.
When the server ends a watch (its timeout) or the connection drops (API server restart),
the next watch resumes from the last version, so nothing is missed and nothing is
re-listed. Only a 410 Gone (the version fell out of the server's window) relists.
Failures back off from 0.5 s to 5 s; the cache, and so the data plane's configuration,
stays as it was meanwhile. ``on_change`` is called after every change to the cache.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import httpx

from turnout.control.kube.client import KubeAPIError, KubeClient, KubeGone, ResourceType

log = logging.getLogger("turnout.kube")

Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects


def key_of(obj: dict[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace", "")), str(meta.get("name", "")))


class Informer:
    def __init__(
        self,
        client: KubeClient,
        rt: ResourceType,
        on_change: Callable[[], None],
        backoff: tuple[float, float] = (0.5, 5.0),
    ) -> None:
        self.client = client
        self.rt = rt
        self.on_change = on_change
        self.objects: dict[Key, dict[str, Any]] = {}
        self.version = ""
        self.synced = asyncio.Event()
        self.connected = False
        self.relists = 0  # lists after the first (410 Gone): observable in tests
        self.resumes = 0  # watches re-opened from a remembered version
        self._backoff = backoff

    async def list_once(self) -> None:
        items, version = await self.client.list(self.rt)
        self.objects = {key_of(obj): obj for obj in items}
        self.version = version
        self.synced.set()
        self.on_change()

    def apply(self, event: dict[str, Any]) -> bool:
        """Apply one watch event; True when the cache changed."""
        kind = event.get("type")
        obj = event.get("object") or {}
        version = str((obj.get("metadata") or {}).get("resourceVersion", ""))
        if version:
            self.version = version
        if kind == "BOOKMARK":
            return False
        obj.setdefault("kind", self.rt.kind)
        obj.setdefault("apiVersion", self.rt.api_version)
        if kind in ("ADDED", "MODIFIED"):
            self.objects[key_of(obj)] = obj
            return True
        if kind == "DELETED":
            return self.objects.pop(key_of(obj), None) is not None
        return False

    async def run(self) -> None:
        delay = self._backoff[0]
        need_list = not self.synced.is_set()
        while True:
            try:
                if need_list:
                    await self.list_once()
                    need_list = False
                self.connected = True
                async for event in self.client.watch(self.rt, self.version):
                    delay = self._backoff[0]
                    if self.apply(event):
                        self.on_change()
                self.resumes += 1  # the server closed the watch (timeout): resume
            except KubeGone:
                log.info(
                    "%s: resourceVersion %s expired; listing again", self.rt.plural, self.version
                )
                self.relists += 1
                need_list = True
            except (httpx.HTTPError, KubeAPIError, ValueError) as exc:
                if self.connected:
                    log.warning(
                        "%s: watch failed (%s); serving the last configuration, retrying",
                        self.rt.plural,
                        _describe(exc),
                    )
                self.connected = False
                self.resumes += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._backoff[1])


def _describe(exc: Exception) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
