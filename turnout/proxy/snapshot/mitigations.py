"""The live Mitigations of a revision, summed per HTTPRoute and per Backend for the build.

On a route: shed shares add up (capped at 100 %), blocked clients and Consumers are
joined, weight shifts apply in name order, the tightest rate-limit percentage wins and
pinned routing keys are joined. On a Backend: ejected endpoints are joined and one
``openCircuit`` holds it open. A Mitigation already past its ``expiresAt`` is left out,
so a replica that recompiles after the lease ended reverts even before the control
plane's expiry deletes it. Everything is resolved here, once per snapshot: the request
path sees only the compiled filters, weights, clusters and limits.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from itertools import accumulate

from turnout.config.configset import ConfigSet
from turnout.config.model.backend import BackendObject, EndpointSpec
from turnout.config.model.remediation import MitigationObject, WeightShift
from turnout.config.model.traffic import RateLimitSpec
from turnout.core.netaddr import parse_address
from turnout.proxy.filters.mitigation import ConsumerBlockFilter, MitigationFilter
from turnout.proxy.filters.security import SecurityFilter
from turnout.proxy.snapshot.tables import Cluster, RouteAction
from turnout.proxy.upstream.breaker import OPEN, BackendGuard, ErrorRateBreaker

Key = tuple[str, str]  # (namespace, name)


@dataclass
class RouteMitigations:
    shed: int = 0
    clients: list[str] = field(default_factory=list)
    consumers: set[str] = field(default_factory=set)
    shifts: list[WeightShift] = field(default_factory=list)
    rate_limit_percent: int | None = None
    pinned: set[str] = field(default_factory=set)

    def request_filter(self) -> MitigationFilter | None:
        if not self.shed and not self.clients:
            return None
        return MitigationFilter(min(self.shed, 100), tuple(self.clients))

    def consumer_filter(self) -> ConsumerBlockFilter | None:
        return ConsumerBlockFilter(frozenset(self.consumers)) if self.consumers else None

    def weights(self, names: list[str], weights: list[int]) -> list[int]:
        """The rule's backendRef weights (refs named ``names``) after the shifts."""
        out = list(weights)
        for shift in self.shifts:
            if shift.from_backend not in names or shift.to_backend not in names:
                continue
            src, dst = names.index(shift.from_backend), names.index(shift.to_backend)
            moved = min(out[src], math.ceil(sum(out) * shift.percent / 100))
            out[src] -= moved
            out[dst] += moved
        return out

    def rate_limit(self, spec: RateLimitSpec) -> RateLimitSpec:
        """``spec`` with every rule's requests (and burst) cut to the percentage."""
        percent = self.rate_limit_percent
        if percent is None:
            return spec

        def cut(n: int) -> int:
            return max(1, n * percent // 100)

        rules = tuple(
            r.model_copy(
                update={
                    "limit": r.limit.model_copy(update={"requests": cut(r.limit.requests)}),
                    "burst": cut(r.burst) if r.burst is not None else None,
                }
            )
            for r in spec.rules
        )
        return spec.model_copy(update={"rules": rules})


@dataclass
class BackendMitigations:
    ejected: set[str] = field(default_factory=set)  # endpoint addresses, normalised
    open_circuit: bool = False


def endpoint_id(address: str) -> str:
    """An endpoint address as the mitigation compares it (``host:port``, normalised)."""
    try:
        return str(parse_address(address, allow_missing_port=True))
    except ValueError:
        return address


def open_guard() -> BackendGuard:
    """A guard of its own (not the backend's, which keeps its counters across reloads)
    whose breaker stays open: every request to the backend fails fast as "error-rate"."""
    guard = BackendGuard()
    breaker = ErrorRateBreaker(1, 1, 1.0, math.inf, 0)
    breaker.state = OPEN
    breaker.open_until = math.inf
    guard.breaker = breaker
    return guard


class MitigationIndex:
    def __init__(self, config: ConfigSet, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self.routes: dict[Key, RouteMitigations] = {}
        self.backends: dict[Key, BackendMitigations] = {}
        live = [
            r.obj
            for r in config.resources
            if isinstance(r.obj, MitigationObject) and _expires(r.obj) > now
        ]
        for obj in sorted(live, key=lambda o: (o.metadata.namespace, o.metadata.name)):
            spec = obj.spec
            key = (obj.metadata.namespace, spec.target_ref.name)
            if spec.target_ref.kind == "Backend":
                b = self.backends.setdefault(key, BackendMitigations())
                b.ejected.update(endpoint_id(a) for a in spec.eject_endpoints)
                b.open_circuit = b.open_circuit or spec.open_circuit
                continue
            m = self.routes.setdefault(key, RouteMitigations())
            if spec.shed is not None:
                m.shed += spec.shed.percent
            m.clients.extend(spec.block_clients)
            m.consumers.update(spec.block_consumers)
            if spec.shift_weight is not None:
                m.shifts.append(spec.shift_weight)
            if spec.rate_limit_percent is not None:
                m.rate_limit_percent = min(m.rate_limit_percent or 100, spec.rate_limit_percent)
            m.pinned.update(spec.pin_keys)

    def apply(self, action: RouteAction, namespace: str, name: str) -> None:
        """Give a rule's compiled action its route's mitigations: the shed/block filter
        first (a shed request costs the least), the Consumer block right after the
        SecurityFilter that names the Consumer, the tightened rate limit, the shifted
        weights, and no twin for a pinned routing key."""
        m = self.routes.get((namespace, name))
        if m is None:
            return
        chain = list(action.request_filters)
        consumers = m.consumer_filter()
        if consumers is not None:
            after = next((i + 1 for i, f in enumerate(chain) if isinstance(f, SecurityFilter)), 0)
            chain.insert(after, consumers)
        first = m.request_filter()
        if first is not None:
            chain.insert(0, first)
        if chain:
            action.request_filters = tuple(chain)
            action.needs_context = True
        if action.rate_limit is not None and m.rate_limit_percent is not None:
            action.rate_limit = m.rate_limit(action.rate_limit)
            action.rate_limit_name += f"~{m.rate_limit_percent}%"  # its own counters
        if m.shifts:
            names = [c.label.partition("/")[2] for c in action.choices]
            before = [
                b - a for a, b in zip([0, *action.cumulative[:-1]], action.cumulative, strict=True)
            ]
            weights = m.weights(names, before)
            action.cumulative = list(accumulate(weights))
            action.total_weight = sum(weights)
            weighted = [c for c, w in zip(action.choices, weights, strict=True) if w > 0]
            action.single = weighted[0] if len(weighted) == 1 else None
        if m.pinned:
            for choice in action.choices:
                if choice.overrides:
                    choice.overrides = {
                        k: v for k, v in choice.overrides.items() if k.decode() not in m.pinned
                    }

    def endpoints(self, backend: BackendObject) -> tuple[EndpointSpec, ...]:
        """The Backend's endpoints less the ejected ones (all of them if none would stay:
        a backend with no endpoint serves nobody, so ejecting the last is never done)."""
        specs = backend.spec.endpoints
        b = self.backends.get((backend.metadata.namespace, backend.metadata.name))
        if b is None or not b.ejected:
            return specs
        kept = tuple(e for e in specs if endpoint_id(e.address) not in b.ejected)
        return kept or specs

    def hold_open(self, cluster: Cluster, backend: BackendObject) -> None:
        b = self.backends.get((backend.metadata.namespace, backend.metadata.name))
        if b is not None and b.open_circuit:
            cluster.guard = open_guard()


def _expires(obj: MitigationObject) -> float:
    return datetime.fromisoformat(obj.spec.expires_at.replace("Z", "+00:00")).timestamp()


def mitigation_filters(config: ConfigSet, now: float | None = None) -> dict[Key, MitigationFilter]:
    """(namespace, route name) -> the filter answering for its live shed and blocks."""
    out = {}
    for key, m in MitigationIndex(config, now).routes.items():
        flt = m.request_filter()
        if flt is not None:
            out[key] = flt
    return out
