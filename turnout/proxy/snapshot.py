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
import ssl
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import accumulate
from typing import Final

from turnout.config.attach import attach_route
from turnout.config.configset import ConfigSet
from turnout.config.model import (
    L4_IDLE_TIMEOUT_ANNOTATION,
    L4_MAX_CONNECTIONS_ANNOTATION,
    TURNOUT_GROUP,
    BackendObject,
    CircuitBreakerSpec,
    EndpointSpec,
    GatewayObject,
    HTTPBackendRef,
    HTTPRequestMirrorFilter,
    HTTPRouteObject,
    HTTPRouteRule,
    PassiveHealthCheckSpec,
    RateLimitSpec,
    TCPRouteObject,
    TLSRouteObject,
)
from turnout.config.sandboxes import Override, tunnel_socket
from turnout.config.sandboxes import resolve as resolve_sandboxes
from turnout.config.tls import (
    Certificate,
    UpstreamTLS,
    backend_tls,
    client_ca,
    listener_certificates,
    listener_policy,
)
from turnout.config.validate import HTTP2_APP_PROTOCOLS, L4_PROTOCOLS
from turnout.core.durations import parse_duration
from turnout.core.netaddr import Address, parse_address
from turnout.observe.accesslog import json_string
from turnout.observe.stats import RouteStats, WorkerStats
from turnout.proxy.filters.auth import AuthFilter
from turnout.proxy.filters.fault import FaultInjector
from turnout.proxy.filters.headers import HeaderModifier
from turnout.proxy.filters.mirror import MirrorCounters
from turnout.proxy.filters.policy import PolicyIndex, fault_injector
from turnout.proxy.filters.redirect import Redirect
from turnout.proxy.filters.rewrite import UrlRewrite
from turnout.proxy.ratelimit.algorithms import SlidingWindow, TokenBucket
from turnout.proxy.ratelimit.limiter import RateLimiter
from turnout.proxy.ratelimit.local import LocalStore
from turnout.proxy.ratelimit.redis_store import RedisStore
from turnout.proxy.ratelimit.rules import KeyBy, KeySpec, RateLimitRule
from turnout.proxy.routing.build import (
    MatchEntry,
    build_host_index,
    build_vhost,
    compile_match,
)
from turnout.proxy.routing.l4 import L4Table
from turnout.proxy.routing.table import ListenerTable, PortTable, VirtualHost
from turnout.proxy.routing.tls import (
    CipherStringError,
    ListenerId,
    TlsTable,
    server_context,
)
from turnout.proxy.upstream.affinity import endpoint_token, set_cookie
from turnout.proxy.upstream.balancer import Balancer, build_balancer
from turnout.proxy.upstream.breaker import STATE_NAMES, BackendGuard, ErrorRateBreaker
from turnout.proxy.upstream.endpoints import Endpoint
from turnout.proxy.upstream.health import OutlierDetector
from turnout.proxy.upstream.pool import EndpointPool
from turnout.proxy.upstream.retry import RetryPolicy, backend_policy, route_policy

# ALPN offered on HTTPS listeners.
ALPN: Final = ("h2", "http/1.1")

HASH_NONE: Final = 0
HASH_SOURCE_IP: Final = 1
HASH_HEADER: Final = 2
HASH_COOKIE: Final = 3
HASH_QUERY: Final = 4
_HASH_SOURCES: Final = {
    "SourceIP": HASH_SOURCE_IP,
    "Header": HASH_HEADER,
    "Cookie": HASH_COOKIE,
    "QueryParameter": HASH_QUERY,
}


class LimitStores:
    """Where rate-limit counters live: the worker's view of the host-wide table and its
    Redis client (None in tests and trial builds: a private table / no global rules)."""

    __slots__ = ("local", "redis")

    def __init__(self, local: LocalStore | None, redis: RedisStore | None) -> None:
        self.local = local
        self.redis = redis


_UNIT_SECONDS: Final = {"Second": 1.0, "Minute": 60.0, "Hour": 3600.0, "Day": 86400.0}
_KEY_BY: Final = {
    "ClientIP": KeyBy.CLIENT_IP,
    "Header": KeyBy.HEADER,
    "Route": KeyBy.ROUTE,
    "Consumer": KeyBy.CONSUMER,
    "JWTClaim": KeyBy.JWT_CLAIM,
}


def compile_rate_limits(spec: RateLimitSpec, policy: str) -> list[RateLimitRule]:
    """A TrafficPolicy ``rateLimit`` as limiter rules named ``policy#index`` (the names
    key the counters, so they survive reloads that keep the policy)."""
    rules = []
    for i, rule in enumerate(spec.rules):
        period = _UNIT_SECONDS[rule.limit.unit]
        requests = rule.limit.requests
        algorithm: TokenBucket | SlidingWindow
        if rule.algorithm == "TokenBucket":
            algorithm = TokenBucket(requests, period, rule.burst or requests)
        else:
            algorithm = SlidingWindow(requests, period)
        rules.append(
            RateLimitRule(
                f"{policy}#{i}",
                algorithm,
                KeySpec(_KEY_BY[rule.key.type], rule.key.name or ""),
                scope=spec.type.lower(),
                failure_mode=spec.failure_mode.lower(),
                timeout=parse_duration(spec.timeout),
            )
        )
    return rules


class BackendState:
    """Per-worker state of each backend that must survive reloads: its ``BackendGuard``
    (concurrency counters, error-rate breaker) and its ``OutlierDetector``."""

    def __init__(self, stats: WorkerStats | None = None) -> None:
        self.stats = stats
        self.guards: dict[str, BackendGuard] = {}
        self.detectors: dict[str, tuple[tuple[float, ...], OutlierDetector]] = {}

    def guard(self, label: str, spec: CircuitBreakerSpec | None) -> BackendGuard:
        guard = self.guards.get(label)
        if guard is None:
            guard = self.guards[label] = BackendGuard()
        if spec is None:
            guard.max_connections = guard.max_pending = 1 << 30
            guard.max_requests = guard.max_retries = 1 << 30
            guard.breaker = None
            return guard
        guard.max_connections = spec.max_connections
        guard.max_pending = spec.max_pending_requests
        guard.max_requests = spec.max_parallel_requests
        guard.max_retries = spec.max_parallel_retries
        rate = spec.error_rate
        if rate is None:
            guard.breaker = None
        else:
            settings = (
                rate.threshold,
                rate.minimum_requests,
                parse_duration(rate.window),
                parse_duration(rate.open_duration),
                rate.half_open_requests,
            )
            if guard.breaker is None:
                guard.breaker = ErrorRateBreaker(*settings, on_transition=self._reporter(label))
            else:
                guard.breaker.configure(*settings)
        return guard

    def _reporter(self, label: str) -> Callable[[int], None]:
        stats = self.stats

        def report(state: int) -> None:
            if stats is not None:
                stats.event(label, "breaker:" + STATE_NAMES[state])

        return report

    def detector(self, label: str, spec: PassiveHealthCheckSpec | None) -> OutlierDetector | None:
        if spec is None:
            self.detectors.pop(label, None)
            return None
        settings = (
            float(spec.consecutive_5xx_errors),
            float(spec.consecutive_gateway_errors),
            parse_duration(spec.base_ejection_time),
            float(spec.max_ejection_percent),
            parse_duration(spec.max_ejection_time),
            parse_duration(spec.interval),
        )
        known = self.detectors.get(label)
        if known is not None and known[0] == settings:
            return known[1]
        detector = OutlierDetector(
            consecutive_5xx=spec.consecutive_5xx_errors,
            consecutive_gateway_errors=spec.consecutive_gateway_errors,
            base_ejection_time=settings[2],
            max_ejection_percent=spec.max_ejection_percent,
            max_ejection_time=settings[4],
            interval=settings[5],
        )
        self.detectors[label] = (settings, detector)
        return detector


class Cluster:
    """A ``Backend`` as reached through one port: what a backendRef resolves to."""

    __slots__ = (
        "balancer",
        "connect_timeout",
        "endpoints",
        "guard",
        "hash_cookie_max_age",
        "hash_name",
        "hash_source",
        "label",
        "label_json",
        "outlier",
        "retry",
        "single",
        "sticky_cookies",
        "sticky_max_age",
        "sticky_name",
        "sticky_tokens",
    )

    def __init__(
        self,
        label: str,
        balancer: Balancer,
        connect_timeout: float,
        guard: BackendGuard | None = None,
    ) -> None:
        self.label = label
        self.label_json = _json_str(label)
        self.balancer = balancer
        self.connect_timeout = connect_timeout
        self.endpoints: list[Endpoint] = balancer.endpoints
        self.guard = guard if guard is not None else BackendGuard()
        self.outlier: OutlierDetector | None = None
        self.retry: RetryPolicy | None = None
        # Consistent hashing input (HASH_*) and the header/cookie/parameter it names
        self.hash_source = HASH_NONE
        self.hash_name = b""
        self.hash_cookie_max_age = -1  # >= 0: the gateway sets the cookie when absent
        # Sticky sessions: cookie name, Max-Age (-1 = session cookie), token -> endpoint
        self.sticky_name = b""
        self.sticky_max_age = -1
        self.sticky_tokens: dict[bytes, Endpoint] = {}
        self.sticky_cookies: dict[str, bytes] = {}  # endpoint key -> its Set-Cookie value
        # The one endpoint when there is exactly one: no balancing to do.
        eps = balancer.endpoints
        self.single = eps[0] if len(eps) == 1 else None


class BackendChoice:
    """One backendRef of a rule."""

    __slots__ = (
        "cluster",
        "label",
        "label_json",
        "overrides",
        "redirect",
        "request_mod",
        "response_mod",
        "response_mods",
        "retry",
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
        # the rule's retry (Gateway API) over the backend's, or the backend's alone
        self.retry: RetryPolicy | None = cluster.retry if cluster is not None else None
        # routing key -> this choice with a Sandbox's endpoints instead of the baseline's
        self.overrides: dict[bytes, BackendChoice] | None = None

    def overridden(self, cluster: Cluster) -> BackendChoice:
        """This choice, filters and all, with ``cluster`` in place of the baseline."""
        twin = BackendChoice(cluster, self.label, self.stats)
        twin.request_mod = self.request_mod
        twin.response_mod = self.response_mod
        twin.rewrite = self.rewrite
        twin.redirect = self.redirect
        twin.response_mods = self.response_mods
        twin.retry = self.retry
        return twin


class MirrorTarget:
    """One ``RequestMirror`` filter of a rule: where copies go, and how often."""

    __slots__ = ("cluster", "counters", "denominator", "numerator")

    def __init__(self, cluster: Cluster, numerator: int, denominator: int) -> None:
        self.cluster = cluster
        self.numerator = numerator
        self.denominator = denominator
        self.counters = MirrorCounters()


class RouteAction:
    """A compiled ``HTTPRouteRule``: what to do with a request that matched it."""

    __slots__ = (
        "backend_timeout",
        "choices",
        "cumulative",
        "fault",
        "limiter",
        "limits",
        "mirrors",
        "rate_limit",
        "rate_limit_name",
        "redirect",
        "request_mod",
        "request_timeout",
        "response_mod",
        "rewrite",
        "route_json",
        "route_label",
        "security",
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
        self.fault: FaultInjector | None = None  # TrafficPolicy faultInjection
        self.mirrors: tuple[MirrorTarget, ...] = ()  # RequestMirror filters
        # TrafficPolicy rateLimit (compiled into the worker's limiter) and the policy's name
        self.rate_limit: RateLimitSpec | None = None
        self.rate_limit_name = ""
        # compiled: the snapshot's limiter and (rule index, key) of each of this rule's limits
        self.limiter: RateLimiter | None = None
        self.limits: tuple[tuple[int, KeySpec], ...] = ()
        # SecurityPolicy: authentication, authorization, IP rules, CORS (None: no policy)
        self.security: AuthFilter | None = None

    def choose(self, rand: Callable[[], float] = random.random) -> BackendChoice | None:
        choices = self.choices
        if len(choices) == 1:
            return choices[0] if self.total_weight else None
        if not self.total_weight:
            return None
        return choices[bisect_right(self.cumulative, rand() * self.total_weight)]


class L4Route:
    """A compiled TCPRoute / TLSRoute rule: backends by weight (``choose``), then the
    Backend's balancer picks the endpoint; a connection opens its own upstream socket."""

    __slots__ = ("choices", "cumulative", "label", "total_weight")

    def __init__(self, label: str, choices: list[tuple[Cluster | None, str, int]]) -> None:
        self.label = label  # "namespace/name", the route label of the L4 metrics
        # (cluster or None for an unresolvable ref, backend label) by weight > 0
        self.choices = tuple((c, b) for c, b, w in choices if w > 0)
        self.cumulative = list(accumulate(w for _, _, w in choices if w > 0))
        self.total_weight = self.cumulative[-1] if self.cumulative else 0

    def choose(self, rand: Callable[[], float] = random.random) -> tuple[Cluster | None, str]:
        """(cluster, backend label); the cluster is None when the ref does not resolve
        (or no backendRef has weight): the connection is closed."""
        if not self.total_weight:
            return None, ""
        if len(self.choices) == 1:
            return self.choices[0]
        return self.choices[bisect_right(self.cumulative, rand() * self.total_weight)]


@dataclass(slots=True)
class Snapshot:
    revision: int
    sockets: dict[str, PortTable[RouteAction]]
    # (ip, port) of every socket the snapshot serves, keyed like ``sockets``
    bindings: dict[str, tuple[str, int]]
    pools: dict[str, EndpointPool] = field(default_factory=dict)  # the endpoints it uses
    # routing key -> "Sandbox ns/name" / "RouteGroup ns/name" for every key in force
    keys: dict[bytes, str] = field(default_factory=dict)
    # sockets that speak TLS: their listeners by SNI, and the certificates of the default
    tls: dict[str, TlsTable] = field(default_factory=dict)
    tls_default: dict[str, list[Certificate]] = field(default_factory=dict)
    tls_client_ca: dict[str, bytes] = field(default_factory=dict)  # mutual TLS, per socket
    # L4 sockets (TCP, TLS passthrough): their route tables; never also in ``sockets``
    l4: dict[str, L4Table[L4Route]] = field(default_factory=dict)


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


# (address, max idle, idle timeout[, TLS, HTTP/2]): the last two only when the Backend
# has TLS or speaks HTTP/2, so simple factories (tests) take three arguments
PoolFactory = Callable[..., EndpointPool]


def pool_key(address: Address, tls: UpstreamTLS | None, http2: bool = False) -> str:
    """Pools are per destination: the address, the protocol and the TLS identity."""
    key = str(address) if tls is None else f"{address}#tls-{tls.fingerprint}"
    return key + "#h2c" if http2 else key


def server_name(address: Address, tls: UpstreamTLS | None) -> str | None:
    """The SNI (and verified name) for a TLS endpoint: the Backend's ``sni``, else the
    endpoint's host name."""
    if tls is None:
        return None
    return tls.sni or (address.host if not address.is_unix else None)


class SnapshotBuilder:
    def __init__(
        self,
        config: ConfigSet,
        stats: WorkerStats,
        pool_for: PoolFactory,
        state: BackendState | None = None,
        limits: LimitStores | None = None,
        tunnel_dir: str = "",
    ) -> None:
        self.config = config
        self.tunnel_dir = tunnel_dir
        self.stats = stats
        self.pool_for = pool_for
        self.state = state if state is not None else BackendState()
        self.limit_stores = limits if limits is not None else LimitStores(None, None)
        self.policies = PolicyIndex(config)
        self.limited: list[RouteAction] = []  # actions with a rateLimit to compile
        self.backends = config.backends()
        self.clusters: dict[tuple[str, str, int | None], Cluster] = {}
        self.upstream_tls: dict[tuple[str, str], UpstreamTLS] = {}
        # (namespace, backend) -> [(routing key, override)]
        self.key_table = resolve_sandboxes(config.resources, set(self.backends))[0]
        self.overridden: dict[tuple[str, str], list[tuple[bytes, Override]]] = {}
        for entry in self.key_table.values():
            for backend, override in entry.overrides.items():
                self.overridden.setdefault(backend, []).append((entry.key.encode(), override))
        self.pools: dict[str, EndpointPool] = {}
        # (gateway ns/name, listener) -> hostname (None: any) -> L4 routes, oldest first
        self.l4_entries: dict[tuple[str, str], dict[str | None, list[L4Route]]] = {}

    def build(self, revision: int) -> Snapshot:
        gateways = self.config.gateways()
        namespaces = self.config.namespace_labels()
        # (gateway ns/name, listener name) -> hostname -> match entries
        entries: dict[tuple[str, str], dict[str | None, list[MatchEntry[RouteAction]]]] = {}
        # Gateway API tie-breaks: the oldest route, then "{namespace}/{name}". Objects read
        # from files carry no timestamp: they were all created together, so names decide.
        routes = sorted(
            self.config.http_routes(),
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
            plain: list[RouteAction] | None = None
            for att in outcome.attached:
                gw_id = (att.gateway.metadata.namespace, att.gateway.metadata.name)
                gw_key = f"{gw_id[0]}/{gw_id[1]}"
                # Rules get their own actions per listener only when a TrafficPolicy
                # targets the Gateway; otherwise all attachments share one set.
                if gw_id in self.policies.gateway:
                    ctx = (gw_id, att.listener.name)
                    actions = [self._action(route, rule, ctx) for rule in route.spec.rules]
                else:
                    if plain is None:
                        plain = [self._action(route, rule, None) for rule in route.spec.rules]
                    actions = plain
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
        self._compile_limits()
        self._l4_routes(gateways, namespaces)
        return self._assemble(revision, gateways, entries)

    def _l4_routes(
        self, gateways: dict[tuple[str, str], GatewayObject], namespaces: dict[str, dict[str, str]]
    ) -> None:
        """TCPRoutes and TLSRoutes by (gateway, listener) and hostname, oldest first."""
        routes = sorted(
            (
                r.obj
                for r in self.config.resources
                if isinstance(r.obj, TCPRouteObject | TLSRouteObject)
            ),
            key=lambda o: (
                creation_time(o.metadata.creation_timestamp),
                o.metadata.namespace,
                o.metadata.name,
            ),
        )
        for route in routes:
            outcome = attach_route(route, gateways, namespaces)
            if not outcome.attached or not route.spec.rules:
                continue
            ns = route.metadata.namespace
            label = f"{ns}/{route.metadata.name}"
            choices: list[tuple[Cluster | None, str, int]] = []
            for ref in route.spec.rules[0].backend_refs:  # validate allows one rule
                ref_ns = ref.namespace or ns
                cluster = None
                supported = (ref.group, ref.kind) in (("", "Service"), (TURNOUT_GROUP, "Backend"))
                backend = self.backends.get((ref_ns, ref.name))
                if supported and ref_ns == ns and backend is not None:
                    cluster = self._cluster(backend, ref.port)
                choices.append((cluster, f"{ref_ns}/{ref.name}", ref.weight))
            compiled = L4Route(label, choices)
            for att in outcome.attached:
                gw_key = f"{att.gateway.metadata.namespace}/{att.gateway.metadata.name}"
                by_host = self.l4_entries.setdefault((gw_key, att.listener.name), {})
                for host in att.hostnames if att.hostnames is not None else (None,):
                    by_host.setdefault(host, []).append(compiled)

    def _l4_table(self, gw: GatewayObject, gw_key: str, lname: str, tls: bool) -> L4Table[L4Route]:
        table: L4Table[L4Route] = L4Table(gw_key, lname, tls)
        notes = gw.metadata.annotations
        if L4_IDLE_TIMEOUT_ANNOTATION in notes:
            table.idle_timeout = parse_duration(notes[L4_IDLE_TIMEOUT_ANNOTATION])
        if L4_MAX_CONNECTIONS_ANNOTATION in notes:
            table.max_connections = int(notes[L4_MAX_CONNECTIONS_ANNOTATION])
        for host, routes in self.l4_entries.get((gw_key, lname), {}).items():
            for route in routes:
                table.add(host, route)
        return table

    def _compile_limits(self) -> None:
        """One limiter for the snapshot, over every policy's rules; each action keeps the
        indices of its own. Raises (failing the build) for global rules without Redis."""
        if not self.limited:
            return
        rules: list[RateLimitRule] = []
        first: dict[str, int] = {}
        for action in self.limited:
            assert action.rate_limit is not None
            name = action.rate_limit_name
            if name not in first:
                first[name] = len(rules)
                rules.extend(compile_rate_limits(action.rate_limit, name))
        stores = self.limit_stores
        if stores.redis is None and any(r.scope == "global" for r in rules):
            raise ValueError(
                "a TrafficPolicy has Global rate limits but Turnout runs without Redis "
                "(start it with --redis redis://HOST:PORT)"
            )
        limiter = RateLimiter(rules, local=stores.local, redis=stores.redis)
        for action in self.limited:
            assert action.rate_limit is not None
            base = first[action.rate_limit_name]
            n = len(action.rate_limit.rules)
            action.limiter = limiter
            action.limits = tuple((base + i, rules[base + i].key) for i in range(n))

    def _assemble(
        self,
        revision: int,
        gateways: dict[tuple[str, str], GatewayObject],
        entries: dict[tuple[str, str], dict[str | None, list[MatchEntry[RouteAction]]]],
    ) -> Snapshot:
        per_socket: dict[str, dict[str | None, ListenerTable[RouteAction]]] = {}
        bindings: dict[str, tuple[str, int]] = {}
        tls: dict[str, dict[str | None, tuple[ListenerId, ssl.SSLContext]]] = {}
        tls_default: dict[str, list[Certificate]] = {}
        tls_ca: dict[str, bytes] = {}  # client-certificate CAs of a socket's listeners
        required: dict[str, set[ListenerId]] = {}  # listeners that need a client certificate
        l4: dict[str, L4Table[L4Route]] = {}
        secrets = self.config.secrets()
        for (gw_ns, gw_name), gw in sorted(gateways.items()):
            gw_key = f"{gw_ns}/{gw_name}"
            listeners = {lst.name: lst for lst in gw.spec.listeners}
            contexts: dict[str, tuple[ssl.SSLContext, list[Certificate]]] = {}
            for ip, port, lname in gateway_bindings(gw):
                lst = listeners[lname]
                if lst.protocol in L4_PROTOCOLS:
                    # One table per L4 socket; a TLS socket's listeners (several
                    # hostnames, several Gateways) all route into the first's table.
                    key = socket_key(ip, port)
                    bindings[key] = (ip, port)
                    if key not in l4:
                        l4[key] = self._l4_table(gw, gw_key, lname, lst.protocol == "TLS")
                    elif l4[key].passthrough and lst.protocol == "TLS":
                        for host, routes in self.l4_entries.get((gw_key, lname), {}).items():
                            for route in routes:
                                l4[key].add(host, route)
                    continue
                hosts = entries.get((gw_key, lname), {})
                vhosts: dict[str | None, VirtualHost[RouteAction]] = {
                    h: build_vhost(e) for h, e in hosts.items()
                }
                table = ListenerTable(gw_key, lname, port, build_host_index(vhosts))
                key = socket_key(ip, port)
                bindings[key] = (ip, port)
                # Listeners of several Gateways on one socket share it, split by hostname;
                # the first declared wins a clash (validate reports same-Gateway clashes).
                if per_socket.setdefault(key, {}).setdefault(lst.hostname, table) is not table:
                    continue
                if lst.protocol == "HTTPS" and lst.tls is not None:
                    table.scheme = b"https"
                    if lname not in contexts:
                        certs = listener_certificates(lst.tls, gw_ns, secrets)
                        policy = listener_policy(lst.tls)
                        try:
                            contexts[lname] = (server_context(certs, ALPN, policy), certs)
                        except CipherStringError as exc:
                            raise CipherStringError(str(exc), (gw_key, lname)) from None
                    ctx, certs = contexts[lname]
                    tls.setdefault(key, {})[lst.hostname] = ((gw_key, lname), ctx)
                    tls_default.setdefault(key, certs)
                    ca = client_ca(lst.tls, gw_ns, secrets)
                    if ca is not None:
                        tls_ca[key] = tls_ca.get(key, b"") + ca
                        validation = lst.tls.frontend_validation
                        if validation is not None and validation.mode == "AllowValidOnly":
                            required.setdefault(key, set()).add((gw_key, lname))
        keys = {e.key.encode(): f"{e.kind} {e.namespace}/{e.name}" for e in self.key_table.values()}
        sockets = {k: PortTable(build_host_index(v), keys) for k, v in per_socket.items()}
        for key, ca in tls_ca.items():
            # Verification after an SNI swap uses the chosen context's trust store (and
            # the socket context's verify mode): every listener of the port gets the CAs.
            for _, ctx in tls[key].values():
                ctx.load_verify_locations(cadata=ca.decode("ascii", "replace"))
                ctx.verify_mode = ssl.CERT_OPTIONAL  # else getpeercert() hides the subject
        tables = {k: TlsTable(v, frozenset(required.get(k, ()))) for k, v in tls.items()}
        return Snapshot(
            revision,
            sockets,
            bindings,
            self.pools,
            keys,
            tls=tables,
            tls_default=tls_default,
            tls_client_ca=tls_ca,
            l4=l4,
        )

    # -- rules -----------------------------------------------------------------------------

    def _action(
        self,
        route: HTTPRouteObject,
        rule: HTTPRouteRule,
        gateway: tuple[tuple[str, str], str] | None,
    ) -> RouteAction:
        label = f"{route.metadata.namespace}/{route.metadata.name}"
        action = RouteAction(label, self.stats.cell(label, ""))
        policy = self.policies.effective(route, rule, gateway)
        for flt in rule.filters:
            if flt.request_redirect is not None:
                action.redirect = Redirect(flt.request_redirect)
            elif flt.url_rewrite is not None:
                action.rewrite = UrlRewrite(flt.url_rewrite)
            elif flt.request_header_modifier is not None:
                action.request_mod = HeaderModifier(flt.request_header_modifier)
            elif flt.response_header_modifier is not None:
                action.response_mod = HeaderModifier(flt.response_header_modifier)
            elif flt.request_mirror is not None:
                target = self._mirror(route, flt.request_mirror)
                if target is not None:
                    action.mirrors = (*action.mirrors, target)
        if rule.timeouts is not None:
            if rule.timeouts.request:
                action.request_timeout = parse_duration(rule.timeouts.request)
            if rule.timeouts.backend_request:
                action.backend_timeout = parse_duration(rule.timeouts.backend_request)
        choices = [self._choice(route, label, ref) for ref in rule.backend_refs]
        if rule.retry is not None:
            for choice in choices:
                backend = choice.cluster.retry if choice.cluster is not None else None
                choice.retry = route_policy(rule.retry, backend)
        elif policy.retry is not None:
            compiled = backend_policy(policy.retry)
            for choice in choices:
                choice.retry = compiled
        fault = policy.fault_injection
        if fault is not None:
            action.fault = fault_injector(fault)
        if policy.rate_limit is not None:
            action.rate_limit = policy.rate_limit
            action.rate_limit_name = policy.rate_limit_name
            self.limited.append(action)
        if policy.security is not None:
            action.security = self.policies.auth_filter(policy.security)
        action.choices = tuple(choices)
        self._link_response_mods(action)
        if self.overridden:
            for choice, ref in zip(choices, rule.backend_refs, strict=True):
                self._add_overrides(choice, route, ref)
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

    def _mirror(self, route: HTTPRouteObject, spec: HTTPRequestMirrorFilter) -> MirrorTarget | None:
        ref = spec.backend_ref
        ns = ref.namespace or route.metadata.namespace
        if (ref.group, ref.kind) not in (("", "Service"), (TURNOUT_GROUP, "Backend")):
            return None
        if ns != route.metadata.namespace:
            return None  # cross-namespace needs a ReferenceGrant (validate warns)
        backend = self.backends.get((ns, ref.name))
        cluster = self._cluster(backend, ref.port) if backend is not None else None
        if cluster is None:
            return None
        if spec.fraction is not None:
            return MirrorTarget(cluster, spec.fraction.numerator, spec.fraction.denominator)
        if spec.percent is not None:
            return MirrorTarget(cluster, spec.percent, 100)
        return MirrorTarget(cluster, 1, 1)

    @staticmethod
    def _link_response_mods(action: RouteAction) -> None:
        for choice in action.choices:
            mods = [m for m in (action.response_mod, choice.response_mod) if m is not None]
            choice.response_mods = tuple(mods)

    def _add_overrides(
        self, choice: BackendChoice, route: HTTPRouteObject, ref: HTTPBackendRef
    ) -> None:
        """Give a backendRef to an overridden Backend one twin per routing key."""
        if choice.cluster is None:
            return
        ns = ref.namespace or route.metadata.namespace
        keyed = self.overridden.get((ns, ref.name))
        backend = self.backends.get((ns, ref.name))
        if not keyed or backend is None:
            return
        overrides: dict[bytes, BackendChoice] = {}
        for key, override in keyed:
            cluster = self._override_cluster(backend, ref.port, key, override)
            overrides[key] = choice.overridden(cluster)
        choice.overrides = overrides

    def _override_cluster(
        self, backend: BackendObject, port: int | None, key: bytes, override: Override
    ) -> Cluster:
        """The Backend's policies over the override's endpoints, under its own label (so
        a broken sandbox never trips the baseline's breaker or outlier detection)."""
        ckey = (backend.metadata.namespace, backend.metadata.name + "@" + key.decode(), port)
        cluster = self.clusters.get(ckey)
        if cluster is not None:
            return cluster
        if override.local:
            path = tunnel_socket(self.tunnel_dir, override.sandbox, backend.metadata.name)
            endpoints: tuple[EndpointSpec, ...] = (EndpointSpec(address="unix:" + path),)
        else:
            endpoints = override.endpoints
        label = f"{backend.metadata.namespace}/{backend.metadata.name}@{key.decode()}"
        cluster = self._make_cluster(backend, port, endpoints, label)
        self.clusters[ckey] = cluster
        return cluster

    def _backend_tls(self, backend: BackendObject) -> UpstreamTLS | None:
        spec = backend.spec.tls
        if spec is None:
            return None
        key = (backend.metadata.namespace, backend.metadata.name)
        tls = self.upstream_tls.get(key)
        if tls is None:
            tls = self.upstream_tls[key] = backend_tls(
                spec, backend.metadata.namespace, self.config.secrets()
            )
        return tls

    def _cluster(self, backend: BackendObject, port: int | None) -> Cluster | None:
        key = (backend.metadata.namespace, backend.metadata.name, port)
        cluster = self.clusters.get(key)
        if cluster is not None:
            return cluster
        label = f"{backend.metadata.namespace}/{backend.metadata.name}"
        cluster = self._make_cluster(backend, port, backend.spec.endpoints, label)
        self.clusters[key] = cluster
        return cluster

    def _make_cluster(
        self,
        backend: BackendObject,
        port: int | None,
        endpoint_specs: tuple[EndpointSpec, ...],
        label: str,
    ) -> Cluster:
        spec = backend.spec
        endpoints: list[Endpoint] = []
        pool_spec = spec.connection_pool
        max_idle = pool_spec.max_idle_per_endpoint
        idle_timeout = parse_duration(pool_spec.idle_timeout)
        tls = self._backend_tls(backend)
        http2 = spec.app_protocol in HTTP2_APP_PROTOCOLS
        for ep in endpoint_specs:
            addr = parse_address(ep.address, allow_missing_port=True)
            if not addr.is_unix and addr.port == 0:
                if port is None:
                    continue  # no port anywhere: this endpoint cannot be reached
                addr = parse_address(ep.address, default_port=port)
            key = pool_key(addr, tls, http2)
            pool = self.pools.get(key)
            if pool is None:
                if tls is None and not http2:
                    pool = self.pool_for(addr, max_idle, idle_timeout)
                else:
                    pool = self.pool_for(addr, max_idle, idle_timeout, tls, http2)
                self.pools[key] = pool
            endpoints.append(Endpoint(pool, ep.weight))
        lb = spec.load_balancer
        ch = lb.consistent_hash
        balancer = build_balancer(
            lb.type,
            endpoints,
            slow_start_window=parse_duration(lb.slow_start.window) if lb.slow_start else 0.0,
            table_size=ch.table_size if ch is not None else 65537,
        )
        cluster = Cluster(
            label,
            balancer,
            parse_duration(spec.timeout.connect),
            self.state.guard(label, spec.circuit_breaker),
        )
        hc = spec.health_check
        cluster.outlier = self.state.detector(label, hc.passive if hc is not None else None)
        if spec.retry is not None:
            cluster.retry = backend_policy(spec.retry)
        if lb.type == "ConsistentHash" and ch is not None:
            cluster.hash_source = _HASH_SOURCES[ch.type]
            if ch.header is not None:
                cluster.hash_name = ch.header.name.lower().encode()
            elif ch.cookie is not None:
                cluster.hash_name = ch.cookie.name.encode()
                if ch.cookie.ttl is not None:
                    cluster.hash_cookie_max_age = int(parse_duration(ch.cookie.ttl))
            elif ch.query_parameter is not None:
                cluster.hash_name = ch.query_parameter.name.encode()
        sp = spec.session_persistence
        if sp is not None:
            cluster.sticky_name = sp.session_name.encode()
            if sp.cookie_config.lifetime_type == "Permanent":
                cluster.sticky_max_age = (
                    int(parse_duration(sp.absolute_timeout)) if sp.absolute_timeout else 86400
                )
            cluster.sticky_tokens = {endpoint_token(e.key): e for e in balancer.endpoints}
            # Rendered once here, not hashed and formatted on every response.
            cluster.sticky_cookies = {
                e.key: set_cookie(cluster.sticky_name, token, cluster.sticky_max_age)
                for token, e in cluster.sticky_tokens.items()
            }
        return cluster


def _json_str(text: str) -> bytes:
    return json_string(text)
