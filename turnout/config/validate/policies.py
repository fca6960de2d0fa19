"""Policy checks: a TrafficPolicy's targets, rate-limit keys and fault injection, and a
SecurityPolicy with the routes and Consumers of its configuration (the checks themselves
are in ``config.security``)."""

from __future__ import annotations

from turnout.config.configset import ConfigSet
from turnout.config.model.routes import HTTPRouteObject
from turnout.config.model.security import ConsumerObject, SecurityPolicyObject
from turnout.config.model.traffic import TrafficPolicyObject
from turnout.config.parse import Resource
from turnout.config.problems import Problem
from turnout.config.security import (
    check_security_policy,
    check_target_refs,
    rate_limit_key_problem,
)
from turnout.config.validate.extauth import check_ext_auth

# --- TrafficPolicy ------------------------------------------------------------------------


def validate_traffic_policy(
    res: Resource, policy: TrafficPolicyObject, cs: ConfigSet, problems: list[Problem]
) -> None:
    ns = policy.metadata.namespace
    gateways = cs.gateways()
    routes = {
        (r.obj.metadata.namespace, r.obj.metadata.name): r.obj
        for r in cs.resources
        if isinstance(r.obj, HTTPRouteObject)
    }
    check_target_refs(res, policy.spec.target_refs, ns, gateways, routes, problems)
    rl = policy.spec.rate_limit
    if rl is not None:
        for i, rule in enumerate(rl.rules):
            key_path: tuple[str | int, ...] = ("spec", "rateLimit", "rules", i, "key")
            if rule.key.type in ("Consumer", "JWTClaim"):
                security = [r.obj for r in cs.resources if isinstance(r.obj, SecurityPolicyObject)]
                message = rate_limit_key_problem(rule.key.type, policy, security, routes)
                if message is not None:
                    problems.append(res.problem((*key_path, "type"), message))
                if rule.key.type == "JWTClaim" and not rule.key.name:
                    problems.append(
                        res.problem((*key_path, "name"), "a JWTClaim key needs the claim name")
                    )
                elif rule.key.type == "Consumer" and rule.key.name:
                    problems.append(
                        res.problem((*key_path, "name"), "a Consumer key takes no name")
                    )
            elif rule.key.type == "Header" and not rule.key.name:
                problems.append(
                    res.problem((*key_path, "name"), "a Header key needs the header name")
                )
            elif rule.key.type in ("ClientIP", "Route") and rule.key.name:
                problems.append(
                    res.problem((*key_path, "name"), f"a {rule.key.type} key takes no name")
                )
    fault = policy.spec.fault_injection
    if fault is not None and fault.delay is None and fault.abort is None:
        problems.append(res.problem(("spec", "faultInjection"), "give a delay, an abort, or both"))
    if (
        rl is None
        and fault is None
        and policy.spec.retry is None
        and policy.spec.request_body_limit is None
        and policy.spec.cache is None
        and policy.spec.compression is None
    ):
        problems.append(
            res.problem(
                ("spec",),
                "the policy sets nothing "
                "(rateLimit, faultInjection, retry, requestBodyLimit, cache or compression)",
                "warning",
            )
        )


# --- SecurityPolicy -----------------------------------------------------------------------


def validate_security_policy(
    res: Resource, policy: SecurityPolicyObject, cs: ConfigSet, problems: list[Problem]
) -> None:
    routes = {
        (r.obj.metadata.namespace, r.obj.metadata.name): r.obj
        for r in cs.resources
        if isinstance(r.obj, HTTPRouteObject)
    }
    consumers = {
        (r.obj.metadata.namespace, r.obj.metadata.name): r.obj
        for r in cs.resources
        if isinstance(r.obj, ConsumerObject)
    }
    check_security_policy(res, policy, cs.gateways(), routes, consumers, problems)
    check_ext_auth(res, policy, cs.backends(), problems)
