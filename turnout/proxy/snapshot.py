"""Compile a validated ``ConfigSet`` into an immutable ``Snapshot`` of lookup tables.

A worker builds one snapshot per revision and swaps a single reference; requests in
flight keep the snapshot they started with. Everything a request needs is resolved
here: listeners per bound socket, route candidates in precedence order, filters as
objects with ``apply``, backendRefs resolved to clusters (``Backend`` + port) with their
balancer and per-endpoint pools, cumulative weights for the split, timeouts in seconds,
and the stats cell each outcome is counted in.

Backend references follow the Gateway API: an unresolvable ref keeps its weight and its
share of traffic answers 500; a rule with no backendRefs and no redirect answers 500.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import accumulate

from turnout.config.attach import attach_route
from turnout.config.model import (
    TURNOUT_GROUP,
    BackendObject,
    GatewayObject,
    HTTPBackendRef,
    HTTPRouteObject,
    HTTPRouteRule,
)
from turnout.config.validate import ConfigSet
from turnout.core.durations import parse_duration
from turnout.core.netaddr import Address, parse_address
from turnout.observe.accesslog import json_string
from turnout.observe.stats import RouteStats, WorkerStats
from turnout.proxy.filters.headers import HeaderModifier
from turnout.proxy.filters.redirect import Redirect
from turnout.proxy.filters.rewrite import UrlRewrite
from turnout.proxy.routing.build import (
    MatchEntry,
    build_host_index,
    build_vhost,
    compile_match,
)
from turnout.proxy.routing.table import ListenerTable, PortTable, VirtualHost
from turnout.proxy.upstream.balancer import RoundRobinBalancer
from turnout.proxy.upstream.endpoints import Endpoint
from turnout.proxy.upstream.pool import EndpointPool


class Cluster:
    """A ``Backend`` as reached through one port: what a backendRef resolves to."""

    __slots__ = ("balancer", "connect_timeout", "label", "label_json", "single")

    def __init__(self, label: str, balancer: RoundRobinBalancer, connect_timeout: float) -> None:
        self.label = label
        self.label_json = _json_str(label)
        self.balancer = balancer
        self.connect_timeout = connect_timeout
        # The one endpoint when there is exactly one: no balancing to do.
        eps = balancer.endpoints
        self.single = eps[0] if len(eps) == 1 else None


class BackendChoice:
    """One backendRef of a rule."""

    __slots__ = (
        "cluster",
        "label",
        "label_json",
        "redirect",
        "request_mod",
        "response_mod",
        "response_mods",
        "rewrite",
        "stats",
    )

    def __init__(self, cluster: Cluster | None, label: str, stats: RouteStats) -> None:
        self.cluster = cluster  # None: invalid reference, answers 500
        self.label = label
        self.label_json = _json_str(label)
        self.stats = stats
        # backendRef-level filters (Gateway API extended features)
        self.request_mod: HeaderModifier | None = None
        self.response_mod: HeaderModifier | None = None
        self.rewrite: UrlRewrite | None = None
        self.redirect: Redirect | None = None
        # the route's then this backendRef's ResponseHeaderModifier, in order
        self.response_mods: tuple[HeaderModifier, ...] = ()


class RouteAction:
    """A compiled ``HTTPRouteRule``: what to do with a request that matched it."""

    __slots__ = (
        "backend_timeout",
        "choices",
        "cumulative",
        "redirect",
        "request_mod",
        "request_timeout",
        "response_mod",
        "rewrite",
        "route_json",
        "route_label",
        "single",
        "stats",
        "total_weight",
    )

    def __init__(self, route_label: str, stats: RouteStats) -> None:
        self.route_label = route_label
        self.route_json = _json_str(route_label)
        self.stats = stats  # for responses made without a backend (redirects, 500)
        self.redirect: Redirect | None = None
        self.rewrite: UrlRewrite | None = None
        self.request_mod: HeaderModifier | None = None
        self.response_mod: HeaderModifier | None = None
        self.choices: tuple[BackendChoice, ...] = ()
        self.cumulative: list[int] = []
        self.total_weight = 0
        self.request_timeout = 0.0  # 0 = none
        self.backend_timeout = 0.0
        self.single: BackendChoice | None = None  # the only backendRef with weight > 0

    def choose(self, rand: Callable[[], float] = random.random) -> BackendChoice | None:
        choices = self.choices
        if len(choices) == 1:
            return choices[0] if self.total_weight else None
        if not self.total_weight:
            return None
        return choices[bisect_right(self.cumulative, rand() * self.total_weight)]


@dataclass(slots=True)
class Snapshot:
    revision: int
    sockets: dict[str, PortTable[RouteAction]]
    # (ip, port) of every socket the snapshot serves, keyed like ``sockets``
    bindings: dict[str, tuple[str, int]]
    pools: dict[str, EndpointPool] = field(default_factory=dict)  # the endpoints it uses


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def creation_time(stamp: str | None) -> datetime:
    """A ``creationTimestamp`` as an aware datetime (validated at parse time)."""
    if not stamp:
        return _EPOCH
    parsed = datetime.fromisoformat(stamp)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def socket_key(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def gateway_bindings(gw: GatewayObject) -> list[tuple[str, int, str]]:
    """(ip, port, listener name) for each listener × address of a Gateway."""
    ips = [a.value for a in gw.spec.addresses if a.type == "IPAddress"] or ["0.0.0.0"]
    return [(ip, lst.port, lst.name) for lst in gw.spec.listeners for ip in ips]


PoolFactory = Callable[[Address, int, float], EndpointPool]


class SnapshotBuilder:
    def __init__(self, config: ConfigSet, stats: WorkerStats, pool_for: PoolFactory) -> None:
        self.config = config
        self.stats = stats
        self.pool_for = pool_for
        self.backends = config.backends()
        self.clusters: dict[tuple[str, str, int | None], Cluster] = {}
        self.pools: dict[str, EndpointPool] = {}

    def build(self, revision: int) -> Snapshot:
        gateways = self.config.gateways()
        namespaces = self.config.namespace_labels()
        # (gateway ns/name, listener name) -> hostname -> match entries
        entries: dict[tuple[str, str], dict[str | None, list[MatchEntry[RouteAction]]]] = {}
        # Gateway API tie-breaks: the oldest route, then "{namespace}/{name}". Objects read
        # from files carry no timestamp: they were all created together, so names decide.
        routes = sorted(
            (r for r in self.config.resources if isinstance(r.obj, HTTPRouteObject)),
            key=lambda r: (
                creation_time(r.obj.metadata.creation_timestamp),
                r.obj.metadata.namespace,
                r.obj.metadata.name,
            ),
        )
        for age, res in enumerate(routes):
            route = res.obj
            assert isinstance(route, HTTPRouteObject)
            outcome = attach_route(route, gateways, namespaces)
            if not outcome.attached:
                continue
            ns_name = f"{route.metadata.namespace}/{route.metadata.name}"
            actions = [self._action(route, rule) for rule in route.spec.rules]
            for att in outcome.attached:
                gw_key = f"{att.gateway.metadata.namespace}/{att.gateway.metadata.name}"
                by_host = entries.setdefault((gw_key, att.listener.name), {})
                hosts: tuple[str | None, ...] = (
                    att.hostnames if att.hostnames is not None else (None,)
                )
                for r_idx, rule in enumerate(route.spec.rules):
                    for m_idx, match in enumerate(rule.matches):
                        for host in hosts:
                            precedence = (age, ns_name, r_idx, m_idx)
                            by_host.setdefault(host, []).append(
                                compile_match(match, actions[r_idx], precedence)
                            )
        return self._assemble(revision, gateways, entries)

    def _assemble(
        self,
        revision: int,
        gateways: dict[tuple[str, str], GatewayObject],
        entries: dict[tuple[str, str], dict[str | None, list[MatchEntry[RouteAction]]]],
    ) -> Snapshot:
        per_socket: dict[str, dict[str | None, ListenerTable[RouteAction]]] = {}
        bindings: dict[str, tuple[str, int]] = {}
        for (gw_ns, gw_name), gw in sorted(gateways.items()):
            gw_key = f"{gw_ns}/{gw_name}"
            listeners = {lst.name: lst for lst in gw.spec.listeners}
            for ip, port, lname in gateway_bindings(gw):
                lst = listeners[lname]
                hosts = entries.get((gw_key, lname), {})
                vhosts: dict[str | None, VirtualHost[RouteAction]] = {
                    h: build_vhost(e) for h, e in hosts.items()
                }
                table = ListenerTable(gw_key, lname, port, build_host_index(vhosts))
                key = socket_key(ip, port)
                bindings[key] = (ip, port)
                # Listeners of several Gateways on one socket share it, split by hostname;
                # the first declared wins a clash (validate reports same-Gateway clashes).
                per_socket.setdefault(key, {}).setdefault(lst.hostname, table)
        sockets = {k: PortTable(build_host_index(v)) for k, v in per_socket.items()}
        return Snapshot(revision, sockets, bindings, self.pools)

    # -- rules -----------------------------------------------------------------------------

    def _action(self, route: HTTPRouteObject, rule: HTTPRouteRule) -> RouteAction:
        label = f"{route.metadata.namespace}/{route.metadata.name}"
        action = RouteAction(label, self.stats.cell(label, ""))
        for flt in rule.filters:
            if flt.request_redirect is not None:
                action.redirect = Redirect(flt.request_redirect)
            elif flt.url_rewrite is not None:
                action.rewrite = UrlRewrite(flt.url_rewrite)
            elif flt.request_header_modifier is not None:
                action.request_mod = HeaderModifier(flt.request_header_modifier)
            elif flt.response_header_modifier is not None:
                action.response_mod = HeaderModifier(flt.response_header_modifier)
        if rule.timeouts is not None:
            if rule.timeouts.request:
                action.request_timeout = parse_duration(rule.timeouts.request)
            if rule.timeouts.backend_request:
                action.backend_timeout = parse_duration(rule.timeouts.backend_request)
        choices = [self._choice(route, label, ref) for ref in rule.backend_refs]
        action.choices = tuple(choices)
        self._link_response_mods(action)
        weights = [ref.weight for ref in rule.backend_refs]
        action.cumulative = list(accumulate(weights))
        action.total_weight = sum(weights)
        weighted = [c for c, w in zip(choices, weights, strict=True) if w > 0]
        action.single = weighted[0] if len(weighted) == 1 else None
        return action

    def _choice(
        self, route: HTTPRouteObject, route_label: str, ref: HTTPBackendRef
    ) -> BackendChoice:
        ns = ref.namespace or route.metadata.namespace
        label = f"{ns}/{ref.name}"
        cluster = None
        supported = (ref.group, ref.kind) in (("", "Service"), (TURNOUT_GROUP, "Backend"))
        if supported and ns == route.metadata.namespace:
            backend = self.backends.get((ns, ref.name))
            if backend is not None:
                cluster = self._cluster(backend, ref.port)
        choice = BackendChoice(cluster, label, self.stats.cell(route_label, label))
        for flt in ref.filters:
            if flt.request_header_modifier is not None:
                choice.request_mod = HeaderModifier(flt.request_header_modifier)
            elif flt.response_header_modifier is not None:
                choice.response_mod = HeaderModifier(flt.response_header_modifier)
            elif flt.url_rewrite is not None:
                choice.rewrite = UrlRewrite(flt.url_rewrite)
            elif flt.request_redirect is not None:
                choice.redirect = Redirect(flt.request_redirect)
        return choice

    @staticmethod
    def _link_response_mods(action: RouteAction) -> None:
        for choice in action.choices:
            mods = [m for m in (action.response_mod, choice.response_mod) if m is not None]
            choice.response_mods = tuple(mods)

    def _cluster(self, backend: BackendObject, port: int | None) -> Cluster | None:
        key = (backend.metadata.namespace, backend.metadata.name, port)
        cluster = self.clusters.get(key)
        if cluster is not None:
            return cluster
        spec = backend.spec
        endpoints: list[Endpoint] = []
        pool_spec = spec.connection_pool
        max_idle = pool_spec.max_idle_per_endpoint
        idle_timeout = parse_duration(pool_spec.idle_timeout)
        for ep in spec.endpoints:
            addr = parse_address(ep.address, allow_missing_port=True)
            if not addr.is_unix and addr.port == 0:
                if port is None:
                    continue  # no port anywhere: this endpoint cannot be reached
                addr = parse_address(ep.address, default_port=port)
            pool = self.pools.get(str(addr))
            if pool is None:
                pool = self.pools[str(addr)] = self.pool_for(addr, max_idle, idle_timeout)
            endpoints.append(Endpoint(pool, ep.weight))
        label = f"{backend.metadata.namespace}/{backend.metadata.name}"
        cluster = Cluster(
            label, RoundRobinBalancer(endpoints), parse_duration(spec.timeout.connect)
        )
        self.clusters[key] = cluster
        return cluster


def _json_str(text: str) -> bytes:
    return json_string(text)
