"""Wires DNS SRV discovery (``turnout.control.discovery``) into a file-fed supervisor.

``prepare`` wraps the source so every load carries the discovered endpoints, reads the
configuration once and does the first lookups before the supervisor starts (each bounded
by its ``timeout``), so the first revision already has the endpoints. ``start`` spawns
the refresh loop once the supervisor serves; with no discovering Backend it only waits
(a Backend gaining ``spec.discovery`` on a reload wakes it) and dnspython is never
imported.
"""

from __future__ import annotations

import asyncio
from typing import Any

from turnout.config.sources import ConfigSource
from turnout.control.discovery import DiscoverySource, SRVDiscovery, resolve_srv, run
from turnout.core.tasks import spawn
from turnout.supervisor.main import Supervisor

__all__ = ["DiscoverySource", "prepare", "start"]


async def prepare(source: ConfigSource) -> DiscoverySource:
    discovery = SRVDiscovery(resolve_srv)
    config, problems = source.load()
    if not any(p.severity == "error" for p in problems):
        discovery.track(config)
        await discovery.refresh()  # start-up errors are the supervisor's to report
    return DiscoverySource(source, discovery)


def start(source: DiscoverySource, supervisor: Supervisor) -> asyncio.Task[Any]:
    async def reload(reason: str) -> bool:
        return await supervisor.reload(reason)

    return spawn(run(source.discovery, reload), name="dns-srv-discovery")
