"""Which ``TrafficPolicy`` applies to a route rule, following Gateway API policy attachment.

A policy names its targets with ``targetRefs`` (a Gateway, optionally one listener by
``sectionName``; or an HTTPRoute, optionally one rule by its ``name``), in its own
namespace. For each feature (``rateLimit``, ``faultInjection``, ``retry``) the most
specific policy that sets it wins: rule, then route, then listener, then Gateway. Among
policies at the same level the oldest wins (creation time, then namespace/name), as for
route conflicts; ``validate`` warns about the losers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from turnout.config.model import (
    FaultInjectionSpec,
    HTTPRouteObject,
    HTTPRouteRule,
    RateLimitSpec,
    RetrySpec,
    TrafficPolicyObject,
)
from turnout.config.validate import ConfigSet
from turnout.core.durations import parse_duration
from turnout.proxy.filters.fault import FaultInjector

ObjectId = tuple[str, str]  # (namespace, name)
Attached = list[tuple[str | None, TrafficPolicyObject]]  # (sectionName, policy), oldest first

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _age(policy: TrafficPolicyObject) -> tuple[datetime, str, str]:
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


class PolicyIndex:
    def __init__(self, config: ConfigSet) -> None:
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

    def effective(
        self,
        route: HTTPRouteObject,
        rule: HTTPRouteRule,
        gateway: tuple[ObjectId, str] | None,
    ) -> Effective:
        """The policy features for ``rule`` of ``route`` reached through ``gateway``
        (its id and listener name; None: ignore Gateway-level policies)."""
        levels: list[Attached] = []
        on_route = self.route.get((route.metadata.namespace, route.metadata.name), [])
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
        return out


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
