"""``turnout serve --kubernetes``: the supervisor fed by the cluster (controller mode).

Connects and lists everything before the supervisor starts (a cluster that cannot be
reached at start-up is a clear start-up error, exit code 2); once serving, a lost API
server only pauses updates: the data plane keeps the last good revision. After every
reload the status of our GatewayClasses, Gateways and routes is written back, only by
the holder of the controller's Lease (``turnout-<controller name>``), which also runs
the reconcilers (the Lease replaces the store's leader lock); a failed status write is
retried two seconds later. Every replica serves traffic; only leadership is exclusive.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
from dataclasses import dataclass
from typing import Any

import httpx

from turnout.control.kube.client import KubeAPIError
from turnout.control.kube.connection import KubeConfigError, load_connection
from turnout.control.kube.lease import LeaseElector
from turnout.control.kube.source import KubernetesSource
from turnout.control.kube.status import StatusWriter
from turnout.control.remediation.k8s_actions import use_connection
from turnout.core.tasks import spawn
from turnout.supervisor.main import ServeOptions, StartupError, Supervisor

log = logging.getLogger("turnout")
STATUS_RETRY_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class KubernetesOptions:
    files: list[str]
    kubeconfig: str = ""
    controller_name: str = "turnout.dev/gateway-controller"
    address: str = ""  # written to Gateway status when spec.addresses is empty
    identity: str = ""  # Lease holder identity; default $POD_NAME, else host name and pid
    lease_duration: float = 15.0


def lease_name(controller: str) -> str:
    """One Lease per controller name, so two controllers in one namespace never share."""
    return ("turnout-" + re.sub(r"[^a-z0-9.-]+", "-", controller.lower())).strip("-.")[:253]


async def serve_kubernetes(flags: KubernetesOptions, options: ServeOptions) -> int:
    try:
        connection = load_connection(flags.kubeconfig)
    except KubeConfigError as exc:
        log.error("%s", exc)
        return 2
    use_connection(connection)  # remediation's Kubernetes actions act as the controller
    source = KubernetesSource(connection, flags.files, flags.controller_name)
    try:
        await source.connect()
    except (httpx.HTTPError, KubeAPIError, KubeConfigError) as exc:
        log.error("cannot read from the Kubernetes API server %s: %s", connection.server, exc)
        await source.close()
        return 2
    address = flags.address or os.environ.get("POD_IP", "")
    writer = StatusWriter(
        source.client,
        {inf.rt.kind: inf.rt for inf in source.informers.values()},
        flags.controller_name,
        address,
    )
    loop = asyncio.get_running_loop()
    identity = (
        flags.identity or os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    )
    elector = LeaseElector(
        source.client,
        connection.namespace,
        identity,
        name=lease_name(flags.controller_name),
        duration=flags.lease_duration,
        retry=max(0.2, flags.lease_duration / 7.5),
    )
    # the new leader writes every status at once
    elector.listeners.append(lambda leader: source.poke() if leader else None)
    options.leader = elector

    async def write_status() -> None:
        if not elector.is_leader:
            return  # status writes, like the reconcilers, are the leader's
        # an "unchanged" reload leaves the supervisor's last error in place: ask the source
        writer.serving_error = "" if source.reload_ok else supervisor.last_reload_error
        if not await writer.write(source.translation, source.problems, source.rejected):
            loop.call_later(STATUS_RETRY_SECONDS, source.poke)

    tasks: list[asyncio.Task[Any]] = []
    supervisor = Supervisor(source, options)

    def started() -> None:
        tasks.append(spawn(source.run(supervisor.reload, write_status), name="kubernetes-source"))
        log.info(
            "controller %s watching %s", flags.controller_name, ", ".join(sorted(source.informers))
        )

    try:
        return await supervisor.run(on_started=started)
    except StartupError as exc:
        log.error("%s", exc)
        return 2
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await source.close()
