"""Active health checks, run once per replica by the supervisor and fanned out to workers.

Checking from every worker would multiply the probe load by the worker count and let
workers disagree; instead the supervisor's ``HealthChecker`` probes each endpoint of each
``Backend`` with ``healthCheck.active`` and sends every verdict change to all workers
(``("health", {endpoint: healthy})``); a worker started later receives the whole map.
Workers apply verdicts to the endpoint's ``EndpointHealth``, which the balancers consult.

An address that several Backends list is probed once, with the settings of the first
Backend (by namespace/name) that checks it. Endpoints without a port (their port comes
from a backendRef) are probed on each port the routes use. A Backend with ``tls`` is
probed over TLS with its trust anchors, client certificate and SNI (as its requests are).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from turnout.config.configset import ConfigSet
from turnout.config.model.backend import BackendObject
from turnout.config.tls import UpstreamTLS, backend_tls
from turnout.core.durations import parse_duration
from turnout.core.netaddr import Address, parse_address
from turnout.proxy.upstream.probe import HealthChecker, ProbeTarget

log = logging.getLogger("turnout.supervisor")


def _ports_by_backend(config: ConfigSet) -> dict[tuple[str, str], set[int]]:
    from turnout.config.model.routes import HTTPRouteObject

    ports: dict[tuple[str, str], set[int]] = {}
    for res in config.resources:
        route = res.obj
        if not isinstance(route, HTTPRouteObject):
            continue
        for rule in route.spec.rules:
            for ref in rule.backend_refs:
                if ref.port is not None:
                    ns = ref.namespace or route.metadata.namespace
                    ports.setdefault((ns, ref.name), set()).add(ref.port)
    return ports


def _server_name(address: Address, tls: UpstreamTLS | None) -> str | None:
    """SNI and verified name, as the data plane's (``snapshot.builder.server_name``)."""
    if tls is None:
        return None
    return tls.sni or (address.host if not address.is_unix else None)


def probe_targets(config: ConfigSet) -> tuple[list[ProbeTarget], dict[str, str]]:
    """Targets for every actively checked endpoint, and endpoint key → backend label."""
    targets: dict[str, ProbeTarget] = {}
    owners: dict[str, str] = {}
    ports = _ports_by_backend(config)
    backends = sorted(config.backends().items())
    for (ns, name), backend in backends:
        assert isinstance(backend, BackendObject)
        hc = backend.spec.health_check
        if hc is None or hc.active is None:
            continue
        active = hc.active
        tls: UpstreamTLS | None = None
        if backend.spec.tls is not None:
            # validated with the configuration: a failure here cannot happen
            tls = backend_tls(backend.spec.tls, ns, config.secrets())
        for ep in backend.spec.endpoints:
            addr = parse_address(ep.address, allow_missing_port=True)
            if addr.is_unix or addr.port:
                addresses = [addr]
            else:
                addresses = [
                    parse_address(ep.address, default_port=p)
                    for p in sorted(ports.get((ns, name), ()))
                ]
            for address in addresses:
                key = str(address)
                if key in targets:
                    continue
                targets[key] = ProbeTarget(
                    key=key,
                    address=address,
                    kind=active.type,
                    path=active.http.path,
                    method=active.http.method,
                    expected=frozenset(active.http.expected_statuses),
                    host=active.http.hostname or "",
                    grpc_service=active.grpc.service,
                    interval=parse_duration(active.interval),
                    timeout=parse_duration(active.timeout),
                    healthy_threshold=active.healthy_threshold,
                    unhealthy_threshold=active.unhealthy_threshold,
                    jitter=min(active.jitter, 99) / 100.0,
                    tls=tls,
                    server_name=_server_name(address, tls),
                )
                owners[key] = f"{ns}/{name}"
    return list(targets.values()), owners


class HealthFanout:
    """The supervisor's checker plus the verdicts workers must know."""

    def __init__(self, send: Callable[[dict[str, bool]], None]) -> None:
        self._send = send
        self.verdicts: dict[str, bool] = {}
        self.owners: dict[str, str] = {}
        self.checker = HealthChecker(self._changed)

    def configure(self, config: ConfigSet) -> None:
        targets, owners = probe_targets(config)
        # The checker reports endpoints that are no longer checked as healthy again
        # (through _changed, so workers hear of it), then we forget them.
        self.checker.configure(targets)
        self.owners = owners
        for key in [k for k in self.verdicts if k not in owners]:
            del self.verdicts[key]

    def _changed(self, key: str, healthy: bool) -> None:
        log.info(
            "endpoint %s of %s is now %s",
            key,
            self.owners.get(key, "?"),
            "healthy" if healthy else "unhealthy",
        )
        self.verdicts[key] = healthy
        self._send({key: healthy})

    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, status in self.checker.snapshot().items():
            out[key] = {**status, "backend": self.owners.get(key, "")}
        return out

    async def close(self) -> None:
        await self.checker.close()
