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

import ssl
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import accumulate

from turnout.config.attach import attach_route
from turnout.config.configset import ConfigSet
from turnout.config.kinds import TURNOUT_GROUP
from turnout.config.model.backend import BackendObject, EndpointSpec
from turnout.config.model.gateway import (
    L4_IDLE_TIMEOUT_ANNOTATION,
    L4_MAX_CONNECTIONS_ANNOTATION,
    TRACE_BOOLEANS,
    TRACE_KEEP_ERRORS_ANNOTATION,
    TRACE_SAMPLE_RATIO_ANNOTATION,
    GatewayObject,
    trace_ratio,
)
from turnout.config.model.routes import (
    HTTPBackendRef,
    HTTPRequestMirrorFilter,
    HTTPRouteObject,
    HTTPRouteRule,
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
from turnout.config.validate.backend import HTTP2_APP_PROTOCOLS
from turnout.config.validate.gateway import L4_PROTOCOLS
from turnout.core.durations import parse_duration
from turnout.core.netaddr import Address, parse_address
from turnout.observe.stats import WorkerStats
from turnout.observe.tracing import GatewayTracing
from turnout.proxy.cache.zone import CacheStores
from turnout.proxy.filters.base import ForwardFilter, RequestFilter, ResponseFilter
from turnout.proxy.filters.bruteforce import BruteForceGuard
from turnout.proxy.filters.fault import FaultFilter
from turnout.proxy.filters.headers import (
    HeaderModifier,
    RequestHeaderFilter,
    ResponseHeaderFilter,
)
from turnout.proxy.filters.mirror import MirrorFilter
from turnout.proxy.filters.plugin_host import PluginHost
from turnout.proxy.filters.policy import PolicyIndex, fault_injector
from turnout.proxy.filters.ratelimit import RateLimitFilter
from turnout.proxy.filters.redirect import Redirect, RedirectFilter
from turnout.proxy.filters.rewrite import RewriteFilter, UrlRewrite
from turnout.proxy.filters.security import SecurityFilter, SecurityResponseFilter
from turnout.proxy.routing.build import (
    MatchEntry,
    build_host_index,
    build_vhost,
    compile_match,
)
from turnout.proxy.routing.l4 import L4Table
from turnout.proxy.routing.table import ListenerTable, PortTable, VirtualHost
from turnout.proxy.routing.tls import CipherStringError, ListenerId, TlsTable, server_context
from turnout.proxy.snapshot.extensions import add_plugin, brute_force_guard, ext_auth_for
from turnout.proxy.snapshot.limits import LimitStores, compile_limiter
from turnout.proxy.snapshot.mitigations import MitigationIndex
from turnout.proxy.snapshot.releases import ReleaseTable
from turnout.proxy.snapshot.state import BackendState
from turnout.proxy.snapshot.tables import (
    ALPN,
    HASH_SOURCES,
    BackendChoice,
    Cluster,
    L4Route,
    RouteAction,
    Snapshot,
)
from turnout.proxy.upstream.affinity import endpoint_token, set_cookie
from turnout.proxy.upstream.balancer import build_balancer
from turnout.proxy.upstream.endpoints import Endpoint
from turnout.proxy.upstream.pool import EndpointPool
from turnout.proxy.upstream.retry import backend_policy, route_policy

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
        plugins: PluginHost | None = None,
        caches: CacheStores | None = None,
    ) -> None:
        self.config = config
        self.tunnel_dir = tunnel_dir
        self.stats = stats
        self.pool_for = pool_for
        self.state = state if state is not None else BackendState()
        self.limit_stores = limits if limits is not None else LimitStores(None, None)
        self.policies = PolicyIndex(config, caches if caches is not None else CacheStores())
        self.mitigations = MitigationIndex(config)
        # FilterPlugins by (namespace, name); a trial build stages into a scratch host
        self.plugins = (plugins or PluginHost(stats)).stage(config)
        self.limited: list[RouteAction] = []  # actions with a rateLimit to compile
        self.guards: dict[str, BruteForceGuard] = {}  # SecurityPolicy bruteForce, by policy
        self.ext_auths: dict[str, RequestFilter] = {}  # SecurityPolicy extAuth, by policy
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
        self.releases = ReleaseTable(
            config, self.backends, stats, self._cluster, self._make_cluster
        )
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
        if self.limited:
            compile_limiter(self.limited, self.limit_stores)

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
            tracing = gateway_tracing(gw)
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
                table.tracing = tracing
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
        keys.update(self.releases.preview_keys())
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
        # The rule's filters by kind, then chained in a fixed order (below).
        redirect: RequestFilter | None = None
        rewrite: RequestFilter | None = None
        request_mod: RequestFilter | None = None
        response_mod: ResponseFilter | None = None
        mirrors: list[ForwardFilter] = []
        plugin_request: list[RequestFilter] = []
        plugin_response: list[ResponseFilter] = []
        for flt in rule.filters:
            if flt.request_redirect is not None:
                redirect = RedirectFilter(Redirect(flt.request_redirect))
            elif flt.url_rewrite is not None:
                rewrite = RewriteFilter(UrlRewrite(flt.url_rewrite))
            elif flt.request_header_modifier is not None:
                request_mod = RequestHeaderFilter(HeaderModifier(flt.request_header_modifier))
            elif flt.response_header_modifier is not None:
                response_mod = ResponseHeaderFilter(HeaderModifier(flt.response_header_modifier))
            elif flt.request_mirror is not None:
                target = self._mirror(route, flt.request_mirror)
                if target is not None:
                    mirrors.append(target)
            elif flt.extension_ref is not None:
                add_plugin(self.plugins, route, flt.extension_ref, plugin_request, plugin_response)
        action.body_limit = policy.body_limit
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
        # Decompression first, security before rate limits (they may count by Consumer or
        # claim), then the redirect, fault injection, the modifications of what is
        # forwarded, and the cache last (it keys on the request as forwarded).
        request: list[RequestFilter] = [f for f in (policy.decompress_filter,) if f is not None]
        response: list[ResponseFilter] = []
        sec = policy.security
        if sec is not None:
            auth = self.policies.auth_filter(sec)
            guard = brute_force_guard(self.guards, sec, auth, self.limit_stores.local, self.stats)
            request.append(SecurityFilter(auth, guard))
            if sec.spec.ext_auth is not None:  # after the policy's own authentication
                request.append(ext_auth_for(self.ext_auths, sec, self.backends))
            response.append(SecurityResponseFilter(auth))
        if policy.rate_limit is not None:
            action.rate_limit = policy.rate_limit
            action.rate_limit_name = policy.rate_limit_name
            action.rate_limit_filter = limits = RateLimitFilter()
            request.append(limits)
            self.limited.append(action)
        if redirect is not None:
            request.append(redirect)
        fault = policy.fault_injection
        if fault is not None:
            request.append(FaultFilter(fault_injector(fault)))
        request += [f for f in (request_mod, rewrite) if f is not None]
        request.extend(plugin_request)  # plugins see the request as it will be forwarded
        if policy.cache_filter is not None:  # last: it keys on the request as forwarded
            request.append(policy.cache_filter)
        response.extend(plugin_response)
        response += [f for f in (response_mod, policy.compress_filter) if f is not None]
        action.request_filters = tuple(request)
        action.forward_filters = tuple(mirrors)
        for choice in choices:
            # the rule's response filters, then the backendRef's own
            choice.response_filters = (*response, *choice.response_filters)
        action.choices = tuple(choices)
        action.needs_context = bool(
            request or mirrors or any(c.request_filters or c.response_filters for c in choices)
        )
        if self.overridden:
            for choice, ref in zip(choices, rule.backend_refs, strict=True):
                self._add_overrides(choice, route, ref)
        if self.releases:
            for choice, ref in zip(choices, rule.backend_refs, strict=True):
                self.releases.attach(choice, label, route.metadata.namespace, ref.port)
        weights = [ref.weight for ref in rule.backend_refs]
        action.cumulative = list(accumulate(weights))
        action.total_weight = sum(weights)
        weighted = [c for c, w in zip(choices, weights, strict=True) if w > 0]
        action.single = weighted[0] if len(weighted) == 1 else None
        self.mitigations.apply(action, route.metadata.namespace, route.metadata.name)
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
        redirect: RequestFilter | None = None
        rewrite: RequestFilter | None = None
        request_mod: RequestFilter | None = None
        response_mod: ResponseFilter | None = None
        for flt in ref.filters:
            if flt.request_header_modifier is not None:
                request_mod = RequestHeaderFilter(HeaderModifier(flt.request_header_modifier))
            elif flt.response_header_modifier is not None:
                response_mod = ResponseHeaderFilter(HeaderModifier(flt.response_header_modifier))
            elif flt.url_rewrite is not None:
                rewrite = RewriteFilter(UrlRewrite(flt.url_rewrite))
            elif flt.request_redirect is not None:
                redirect = RedirectFilter(Redirect(flt.request_redirect))
        # A redirect answers before anything is modified.
        choice.request_filters = tuple(f for f in (redirect, request_mod, rewrite) if f is not None)
        if response_mod is not None:
            choice.response_filters = (response_mod,)
        return choice

    def _mirror(self, route: HTTPRouteObject, spec: HTTPRequestMirrorFilter) -> MirrorFilter | None:
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
        numerator, denominator = 1, 1
        if spec.fraction is not None:
            numerator, denominator = spec.fraction.numerator, spec.fraction.denominator
        elif spec.percent is not None:
            numerator, denominator = spec.percent, 100
        return MirrorFilter(cluster.single, cluster.balancer, numerator, denominator)

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
        cluster = self._make_cluster(backend, port, self.mitigations.endpoints(backend), label)
        self.mitigations.hold_open(cluster, backend)  # a Mitigation's openCircuit
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
        if cluster.outlier is not None and self.state.ejections is not None:
            for endpoint in endpoints:  # host-wide ejections (upstream/ejections.py)
                endpoint.health.share(self.state.ejections)
        if spec.retry is not None:
            cluster.retry = backend_policy(spec.retry)
        if lb.type == "ConsistentHash" and ch is not None:
            cluster.hash_source = HASH_SOURCES[ch.type]
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


def gateway_tracing(gw: GatewayObject) -> GatewayTracing | None:
    """The Gateway's own trace sampling from its annotations (validated: a bad value
    never gets here); None when it has neither."""
    notes = gw.metadata.annotations
    ratio = notes.get(TRACE_SAMPLE_RATIO_ANNOTATION)
    keep = notes.get(TRACE_KEEP_ERRORS_ANNOTATION)
    if ratio is None and keep is None:
        return None
    return GatewayTracing(
        trace_ratio(ratio) if ratio is not None else None,
        TRACE_BOOLEANS[keep] if keep is not None else None,
    )
