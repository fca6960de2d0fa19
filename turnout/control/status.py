"""``StatusRenderer``: an object's ``status`` as the API returns it.

Conditions in the store are returned as stored: ``Accepted`` and ``ResolvedRefs``
(written with every commit, ``gateway_status``) and whatever reconcilers report. What
depends on this replica's processes is computed when read: ``Programmed`` (how many of
*this* replica's workers run the revision that holds the object), ``workers``, a
Backend's endpoint health, and a Sandbox's or RouteGroup's ``routable`` (when each worker
began routing it). Objects from ``serve -f`` files are not in the store: their
``Accepted``/``ResolvedRefs`` are computed from this replica's validation, as are those of
stored objects written before conditions were stored; the ``lastTransitionTime`` of a
computed condition is remembered per object in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

from turnout.config.kinds import ROUTING_KEY_KINDS
from turnout.config.sandboxes import derived_key
from turnout.control.desired import DesiredState, Entry
from turnout.control.gateway_status import problem_conditions
from turnout.control.objects import API_SOURCE
from turnout.control.reconcile.sandbox_ttl import expiry
from turnout.control.store.plan import redacted
from turnout.control.store.records import ObjectKey, rfc3339
from turnout.core.clock import SYSTEM_CLOCK, Clock, utcnow
from turnout.core.netaddr import AddressError, parse_address

RuntimeStatus = Callable[[], dict[str, Any]]
KEYED_KINDS: Final = ROUTING_KEY_KINDS
COMPUTED: Final = ("Accepted", "ResolvedRefs", "Programmed")


class StatusRenderer:
    def __init__(
        self, state: DesiredState, runtime: RuntimeStatus, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.state = state
        self.runtime = runtime
        self.clock = clock
        # (object, condition type) -> (status, when it last changed), for lastTransitionTime
        self._transitions: dict[tuple[ObjectKey, str], tuple[str, str]] = {}

    def render(self, entry: Entry) -> dict[str, Any]:
        """The manifest with its ``status``."""
        out = redacted(dict(entry.manifest))
        out["status"] = self.status(entry)
        return out

    def _cond(
        self, entry: Entry, type_: str, ok: bool, reason: str, message: str
    ) -> dict[str, Any]:
        status = "True" if ok else "False"
        seen = self._transitions.get((entry.key, type_))
        if seen is None or seen[0] != status:
            if len(self._transitions) > 100_000:
                self._transitions.clear()
            seen = (status, rfc3339(utcnow(self.clock)))
            self._transitions[(entry.key, type_)] = seen
        return {
            "type": type_,
            "status": status,
            "reason": reason if not ok else type_,
            "message": message,
            "observedGeneration": entry.generation,
            "lastTransitionTime": seen[1],
        }

    def status(self, entry: Entry) -> dict[str, Any]:
        runtime = self.runtime()
        workers = runtime.get("workers", [])
        if entry.owner == API_SOURCE:
            done = [w for w in workers if w.get("storeRevision", 0) >= entry.resource_version]
            target = f"store revision {entry.resource_version}"
        else:
            current = runtime.get("revision", 0)
            done = [w for w in workers if w.get("revision", 0) >= current]
            target = f"revision {current}"
        programmed = bool(workers) and len(done) == len(workers)
        stored = {c.get("type"): c for c in (entry.status or {}).get("conditions") or []}
        conditions = []
        for cond in problem_conditions(self.state.problems.get(entry.key, [])):
            kept = stored.get(cond.type)
            if kept is not None:  # written with the commit (gateway_status)
                conditions.append(kept)
            else:  # a file object, or a stored one from before conditions were stored
                conditions.append(self._cond(entry, *cond))
        conditions.append(
            self._cond(
                entry,
                "Programmed",
                programmed,
                "Pending",
                f"{len(done)}/{len(workers)} workers run {target}",
            )
        )
        conditions += [c for t, c in stored.items() if t not in COMPUTED]
        status: dict[str, Any] = {"conditions": conditions}
        if entry.key[0] == "Backend":
            status["endpoints"] = endpoint_status(
                entry.manifest, runtime.get("health", {}), runtime.get("ejections", {})
            )
        elif entry.key[0] in KEYED_KINDS:
            status.update(self._keyed_status(entry, workers))
        return {
            **status,
            "workers": [
                {
                    "pid": w.get("pid"),
                    "revision": w.get("revision"),
                    "storeRevision": w.get("storeRevision"),
                }
                for w in workers
            ],
        }

    def _keyed_status(self, entry: Entry, workers: list[dict[str, Any]]) -> dict[str, Any]:
        """A Sandbox's or RouteGroup's key, expiry, and when each worker began routing it:
        the time the worker applied the first store revision that holds this version."""
        kind, ns, name = entry.key
        spec = entry.manifest.get("spec") or {}
        key = spec.get("routingKey") or derived_key(kind, ns, name)
        out: dict[str, Any] = {"routingKey": key}
        stored = self.state.stored.get(entry.key)
        at = expiry(stored) if stored is not None else None
        if at is not None:
            out["expiresAt"] = rfc3339(at)
        if entry.owner != API_SOURCE:
            return out
        since = []
        for w in workers:
            first = next(
                (t for rev, t in w.get("applied", ()) if rev >= entry.resource_version), None
            )
            since.append({"pid": w.get("pid"), "since": None if first is None else _iso(first)})
        times = [s["since"] for s in since]
        done = [t for t in times if t is not None]
        out["routable"] = {
            "workers": since,
            # ISO times with one layout sort as strings
            "allWorkersSince": max(done) if done and len(done) == len(times) else None,
        }
        return out


def _iso(timestamp: float) -> str:
    """A wall-clock time with milliseconds (routability is measured in them)."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


def endpoint_status(
    manifest: dict[str, Any], health: dict[str, Any], ejections: dict[str, float] | None = None
) -> list[dict[str, Any]]:
    """Each endpoint of a Backend with the verdict of its active health checks, if any,
    and, while outlier detection holds it out (host-wide), ``ejectedFor`` seconds."""
    out = []
    spec = manifest.get("spec") or {}
    for ep in spec.get("endpoints") or ():
        address = str(ep.get("address", ""))
        try:
            key = str(parse_address(address, allow_missing_port=True))
        except AddressError:
            key = address
        st = health.get(key)
        item: dict[str, Any] = {"address": address}
        if st is None:
            item["health"] = "Unchecked"
        else:
            item["health"] = "Healthy" if st.get("healthy") else "Unhealthy"
            item["lastError"] = st.get("lastError", "")
            item["consecutive"] = st.get("consecutive", 0)
        left = (ejections or {}).get(key)
        if left:
            item["ejectedFor"] = left
        out.append(item)
    return out
