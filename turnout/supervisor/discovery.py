"""Wires DNS SRV discovery (``turnout.control.discovery``) into a file-fed supervisor.

``prepare`` reads the files once and does their first lookups before the supervisor
starts (each bounded by its ``timeout``), so the first revision already has the
endpoints, then makes the supervisor pass every revision (files and stored objects)
through ``SRVDiscovery.fill``. ``start`` spawns the refresh loop once the supervisor
serves; with no discovering Backend it only waits (a Backend gaining
``spec.discovery`` on a reload wakes it) and dnspython is never imported.
"""

from __future__ import annotations

import asyncio
from typing import Any

from turnout.control.discovery import SRVDiscovery, resolve_srv, run
from turnout.core.tasks import spawn
from turnout.supervisor.main import Supervisor


async def prepare(supervisor: Supervisor) -> SRVDiscovery:
    discovery = SRVDiscovery(resolve_srv)
    config, problems = supervisor.source.load()
    if not any(p.severity == "error" for p in problems):
        discovery.track(config)
        await discovery.refresh()  # start-up errors are the supervisor's to report
    supervisor.options.rewrite = discovery.fill
    return discovery


def start(discovery: SRVDiscovery, supervisor: Supervisor) -> asyncio.Task[Any]:
    async def reload(reason: str) -> bool:
        return await supervisor.reload(reason, files=False)

    return spawn(run(discovery, reload), name="dns-srv-discovery")
