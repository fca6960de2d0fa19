"""Which ``TrafficPolicy`` applies to a route rule, following Gateway API policy attachment.

A policy names its targets with ``targetRefs`` (a Gateway, optionally one listener by
``sectionName``; or an HTTPRoute, optionally one rule by its ``name``), in its own
namespace. For each feature (``rateLimit``, ``faultInjection``, ``retry``, ``cache``, …) the most
specific policy that sets it wins: rule, then route, then listener, then Gateway. Among
policies at the same level the oldest wins (creation time, then namespace/name), as for
route conflicts; ``validate`` warns about the losers.

``SecurityPolicy`` attaches the same way but applies whole: the most specific one (rule,
route, listener, Gateway; the oldest among equals) is the policy of the rule, compiled
once per snapshot into an ``AuthFilter`` (Envoy Gateway's SecurityPolicy precedence: a
route's policy replaces the Gateway's, it is not merged with it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from turnout.config.configset import ConfigSet
from turnout.config.model.backend import RetrySpec
from turnout.config.model.routes import HTTPRouteObject, HTTPRouteRule
from turnout.config.model.security import ConsumerObject, SecurityPolicyObject
from turnout.config.model.traffic import (
    CacheSpec,
    CompressionSpec,
    FaultInjectionSpec,
    RateLimitSpec,
    TrafficPolicyObject,
    body_limit_bytes,
)
from turnout.core.durations import parse_duration
from turnout.proxy.cache.zone import CacheStores
from turnout.proxy.filters.auth import AuthFilter
from turnout.proxy.filters.base import (
    RequestFilter,
    ResponseFilter,
    request_filter,
    response_filter,
)
from turnout.proxy.filters.cache import CacheFilter, CacheKeying
from turnout.proxy.filters.compress import (
    BROTLI,
    GZIP,
    ZSTD,
    CompressFilter,
    DecompressFilter,
)
from turnout.proxy.filters.fault import FaultInjector

ObjectId = tuple[str, str]  # (namespace, name)
Attached = list[tuple[str | None, TrafficPolicyObject]]  # (sectionName, policy), oldest first
SecurityAttached = list[tuple[str | None, SecurityPolicyObject]]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _age(policy: TrafficPolicyObject | SecurityPolicyObject) -> tuple[datetime, str, str]:
    stamp = policy.metadata.creation_timestamp
    when = _EPOCH
    if stamp:
        when = datetime.fromisoformat(stamp)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
    return (when, policy.metadata.namespace, policy.metadata.name)


@dataclass(slots=True)
class Effective:
    rate_limit: RateLimitSpec | None = None
    rate_limit_name: str = ""  # "namespace/name" of the policy that set it
    fault_injection: FaultInjectionSpec | None = None
    retry: RetrySpec | None = None
    body_limit: int = 0  # requestBodyLimit in bytes (0 = only the gateway's own limit)
    security: SecurityPolicyObject | None = None  # the SecurityPolicy of the rule
    # the TrafficPolicy cache (one per policy), compression and request decompression,
    # wrapped for the chains (their modules are not compiled)
    cache_filter: RequestFilter | None = None
    compress_filter: ResponseFilter | None = None
    decompress_filter: RequestFilter | None = None


class PolicyIndex:
    def __init__(self, config: ConfigSet, caches: CacheStores | None = None) -> None:
        self.caches = caches if caches is not None else CacheStores()
        self._cache_filters: dict[str, CacheFilter] = {}
        self.gateway: dict[ObjectId, Attached] = {}
        self.route: dict[ObjectId, Attached] = {}
        policies = sorted(
            (r.obj for r in config.resources if isinstance(r.obj, TrafficPolicyObject)),
            key=_age,
        )
        for policy in policies:
            ns = policy.metadata.namespace
            for ref in policy.spec.target_refs:
                index = self.gateway if ref.kind == "Gateway" else self.route
                index.setdefault((ns, ref.name), []).append((ref.section_name, policy))
        # SecurityPolicies, indexed the same way. A Gateway one also gets an (empty)
        # TrafficPolicy entry: that is what makes the snapshot compile rules per listener.
        self.security_gateway: dict[ObjectId, SecurityAttached] = {}
        self.security_route: dict[ObjectId, SecurityAttached] = {}
        self._filters: dict[ObjectId, AuthFilter] = {}
        self._consumers: dict[str, list[ConsumerObject]] = {}
        for r in config.resources:
            if isinstance(r.obj, ConsumerObject):
                self._consumers.setdefault(r.obj.metadata.namespace, []).append(r.obj)
        secured = sorted(
            (r.obj for r in config.resources if isinstance(r.obj, SecurityPolicyObject)),
            key=_age,
        )
        for sp in secured:
            ns = sp.metadata.namespace
            for ref in sp.spec.target_refs:
                if ref.kind == "Gateway":
                    self.gateway.setdefault((ns, ref.name), [])
                    sindex = self.security_gateway
                else:
                    sindex = self.security_route
                sindex.setdefault((ns, ref.name), []).append((ref.section_name, sp))

    def effective(
        self,
        route: HTTPRouteObject,
        rule: HTTPRouteRule,
        gateway: tuple[ObjectId, str] | None,
    ) -> Effective:
        """The policy features for ``rule`` of ``route`` reached through ``gateway``
        (its id and listener name; None: ignore Gateway-level policies)."""
        levels: list[Attached] = []
        # Policies target HTTPRoutes by name; a GRPCRoute of the same name is not one.
        on_route = (
            self.route.get((route.metadata.namespace, route.metadata.name), [])
            if route.kind == "HTTPRoute"
            else []
        )
        if rule.name is not None:
            levels.append([(s, p) for s, p in on_route if s == rule.name])
        levels.append([(s, p) for s, p in on_route if s is None])
        if gateway is not None:
            gw_id, listener = gateway
            on_gateway = self.gateway.get(gw_id, [])
            levels.append([(s, p) for s, p in on_gateway if s == listener])
            levels.append([(s, p) for s, p in on_gateway if s is None])
        out = Effective()
        for level in levels:
            for _, policy in level:
                spec = policy.spec
                if out.rate_limit is None and spec.rate_limit is not None:
                    out.rate_limit = spec.rate_limit
                    out.rate_limit_name = f"{policy.metadata.namespace}/{policy.metadata.name}"
                if out.fault_injection is None and spec.fault_injection is not None:
                    out.fault_injection = spec.fault_injection
                if out.retry is None and spec.retry is not None:
                    out.retry = spec.retry
                if out.compress_filter is None and spec.compression is not None:
                    out.compress_filter = response_filter(compress_filter(spec.compression))
                    decode = spec.compression.request_decompression
                    if decode is not None:
                        limit = body_limit_bytes(decode.max_size)
                        out.decompress_filter = request_filter(DecompressFilter(limit))
                if out.cache_filter is None and spec.cache is not None:
                    out.cache_filter = request_filter(self._cache(policy, spec.cache))
                if not out.body_limit and spec.request_body_limit is not None:
                    out.body_limit = body_limit_bytes(spec.request_body_limit)
        out.security = self._security(route, rule, gateway)
        return out

    def _security(
        self,
        route: HTTPRouteObject,
        rule: HTTPRouteRule,
        gateway: tuple[ObjectId, str] | None,
    ) -> SecurityPolicyObject | None:
        on_route = (
            self.security_route.get((route.metadata.namespace, route.metadata.name), [])
            if route.kind == "HTTPRoute"
            else []
        )
        if rule.name is not None:
            for section, sp in on_route:
                if section == rule.name:
                    return sp
        for section, sp in on_route:
            if section is None:
                return sp
        if gateway is not None:
            gw_id, listener = gateway
            on_gateway = self.security_gateway.get(gw_id, [])
            for section, sp in on_gateway:
                if section == listener:
                    return sp
            for section, sp in on_gateway:
                if section is None:
                    return sp
        return None

    def _cache(self, policy: TrafficPolicyObject, spec: CacheSpec) -> CacheFilter:
        """The policy's cache filter, once per snapshot (its zone outlives snapshots)."""
        name = f"{policy.metadata.namespace}/{policy.metadata.name}"
        compiled = self._cache_filters.get(name)
        if compiled is None:
            compiled = self._cache_filters[name] = cache_filter(spec, name, self.caches)
        return compiled

    def auth_filter(self, policy: SecurityPolicyObject) -> AuthFilter:
        """The compiled policy, once per snapshot (shared by every rule it covers)."""
        key = (policy.metadata.namespace, policy.metadata.name)
        compiled = self._filters.get(key)
        if compiled is None:
            consumers = self._consumers.get(policy.metadata.namespace, [])
            compiled = self._filters[key] = AuthFilter(policy, consumers)
        return compiled


def fault_injector(spec: FaultInjectionSpec) -> FaultInjector:
    delay = spec.delay
    abort = spec.abort
    return FaultInjector(
        parse_duration(delay.fixed_delay) if delay is not None else 0.0,
        delay.percentage if delay is not None else 0.0,
        abort.http_status if abort is not None else 0,
        abort.percentage if abort is not None else 0.0,
        tuple((h.name.lower().encode(), h.value.encode()) for h in spec.headers),
    )


def cache_filter(spec: CacheSpec, name: str, stores: CacheStores) -> CacheFilter:
    """A policy's ``cache`` over its zone (kept across snapshots by policy name)."""
    key = spec.key
    return CacheFilter(
        stores.zone(name, body_limit_bytes(spec.memory_size)),
        CacheKeying(
            key.host,
            key.path,
            key.query,
            tuple(h.lower().encode() for h in key.headers),
            key.consumer,
        ),
        stores.redis if spec.redis else None,
        methods=frozenset(m.encode() for m in spec.methods),
        statuses=frozenset(spec.statuses),
        max_object=body_limit_bytes(spec.max_object_size),
        default_ttl=parse_duration(spec.default_ttl) if spec.default_ttl else None,
        cache_authorized=spec.cache_authorized,
        cache_set_cookie=spec.cache_set_cookie,
        tags_header=spec.tags_header.lower().encode(),
        coalesce=spec.coalesce,
        coalesce_timeout=parse_duration(spec.coalesce_timeout),
        redis_timeout=parse_duration(spec.redis_timeout),
    )


def compress_filter(spec: CompressionSpec) -> CompressFilter:
    """A policy's ``compression`` (stateless but for its negotiation memo)."""
    return CompressFilter(
        tuple(a.encode() for a in spec.algorithms),
        tuple(t.encode() for t in spec.content_types),
        body_limit_bytes(spec.min_size),
        {GZIP: spec.gzip_level, BROTLI: spec.brotli_quality, ZSTD: spec.zstd_level},
    )
