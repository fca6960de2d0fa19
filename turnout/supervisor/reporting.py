"""What the supervisor reports to the admin API: summed worker counters (``aggregate``),
the data plane's state for object status (``runtime``) and readiness (``status``).

Functions of the ``Supervisor`` rather than methods, so the process model in ``main.py``
stays about processes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from turnout.config.configset import ConfigSet
from turnout.config.tls import TLSMaterialError, listener_certificates
from turnout.observe.metrics import Aggregate, RouteTotals
from turnout.supervisor.limits import ejected_endpoints
from turnout.supervisor.workers import WorkerProcess

if TYPE_CHECKING:
    from turnout.supervisor.main import Supervisor


def certificate_expiry(config: ConfigSet) -> list[tuple[str, str, str, float]]:
    """(gateway, listener, source, expiry as Unix time) of every listener certificate."""
    out = []
    secrets = config.secrets()
    for (ns, name), gw in sorted(config.gateways().items()):
        for lst in gw.spec.listeners:
            if lst.tls is None or lst.protocol != "HTTPS":
                continue
            try:
                certs = listener_certificates(lst.tls, ns, secrets)
            except (TLSMaterialError, OSError):
                continue  # the trial build reports it
            for cert in certs:
                out.append((f"{ns}/{name}", lst.name, cert.source, cert.not_after.timestamp()))
    return out


def live_workers(sup: Supervisor) -> list[WorkerProcess]:
    """Workers that are up and have applied a revision."""
    return [
        w
        for w in sup.workers.values()
        if w.ready and w.proc is not None and w.proc.returncode is None
    ]


def aggregate(sup: Supervisor) -> Aggregate:
    agg = Aggregate()
    for key, totals in sup.retired.routes.items():
        agg.routes.setdefault(key, RouteTotals()).add(totals.codes, totals.buckets, totals.sum)
    for backend, n in sup.retired.connect_errors.items():
        agg.connect_errors[backend] = n
    agg.backend_events.update(sup.retired.backend_events)
    agg.l4.update(sup.retired.l4)
    agg.refusals.update(sup.retired.refusals)
    agg.plugin_failures.update(sup.retired.plugin_failures)
    agg.cache.update(sup.retired.cache)
    agg.keyed.update(sup.retired.keyed)
    agg.consumers.update({k: list(v) for k, v in sup.retired.consumers.items()})
    agg.endpoint_health = sup.health.snapshot()
    agg.endpoint_ejections = ejected_endpoints(sup.ejections, sup.config)
    agg.counters.update(sup.retired.counters)
    for worker in sup.workers.values():
        if worker.stats:
            agg.add_worker(worker.stats)
    return agg


def runtime(sup: Supervisor) -> dict[str, Any]:
    """What the data plane runs, for the control plane's object status."""
    live = live_workers(sup)
    return {
        "revision": sup.revision,
        "health": sup.health.snapshot(),
        "ejections": ejected_endpoints(sup.ejections, sup.config),
        "workers": [
            {
                "pid": w.pid,
                "revision": w.revision,
                "storeRevision": sup.store_revision_of.get(w.revision, 0),
                "applied": list(sup.applied.get(w.pid, ())),
            }
            for w in live
        ],
    }


def certificates(sup: Supervisor) -> list[tuple[str, str, str, float]]:
    """Listener certificate expiry, read once per configuration (scrapes are often)."""
    cached = sup.certs
    if cached is None or cached[0] is not sup.config:
        cached = sup.certs = (sup.config, certificate_expiry(sup.config))
    return cached[1]


def status(sup: Supervisor) -> dict[str, Any]:
    live = live_workers(sup)
    ready = (
        not sup.stopping
        and len(live) == sup.options.workers
        and all(w.revision == sup.revision for w in live)
    )
    return {
        "ready": ready,
        "revision": sup.revision,
        "workers": [{"pid": w.pid, "revision": w.revision, "error": w.apply_error} for w in live],
        "live_workers": len(live),
        "worker_restarts": sup.worker_restarts,
        "reloads_ok": sup.reloads_ok,
        "reloads_failed": sup.reloads_failed,
        "last_reload_error": sup.last_reload_error,
        "listeners": sorted(sup.listeners.sockets),
        "storeRevision": sup.control.store_revision if sup.control is not None else None,
        "certificates": certificates(sup),
    }
