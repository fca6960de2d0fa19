"""Cross-object and semantic checks that the schema alone cannot express.

``validate`` takes parsed resources and returns a ``ConfigSet`` plus problems. Errors
(severity ``error``) make the whole set unusable: the caller keeps serving the previous
revision. Warnings describe things the Gateway API treats as runtime conditions rather
than invalid input (a route whose parent does not exist, a backendRef to a missing
backend that must answer 500), so they are reported but do not block a reload.

The checks live by the kind they check: ``gateway`` (listeners, TLS, L4 ports),
``routes`` (HTTP, gRPC and L4 routes, attachment), ``backend``, ``policies``
(TrafficPolicy, SecurityPolicy), ``plugins`` (FilterPlugin, ExtensionRef); ``validate``
here is the one entry point, dispatching each object to them in configuration order.
"""

from __future__ import annotations

from turnout.config.configset import ConfigSet
from turnout.config.grpcroute import as_http
from turnout.config.model.backend import BackendObject
from turnout.config.model.gateway import GatewayObject
from turnout.config.model.plugins import FilterPluginObject
from turnout.config.model.routes import (
    GRPCRouteObject,
    HTTPRouteObject,
    TCPRouteObject,
    TLSRouteObject,
)
from turnout.config.model.security import SecurityPolicyObject
from turnout.config.model.traffic import TrafficPolicyObject
from turnout.config.parse import Resource
from turnout.config.problems import ConfigError, Problem
from turnout.config.sandboxes import resolve as resolve_sandboxes
from turnout.config.security import check_consumers
from turnout.config.validate.backend import validate_backend
from turnout.config.validate.gateway import validate_gateway
from turnout.config.validate.plugins import (
    plugin_names,
    validate_extension_refs,
    validate_filter_plugin,
)
from turnout.config.validate.policies import validate_security_policy, validate_traffic_policy
from turnout.config.validate.releases import validate_environments, validate_releases
from turnout.config.validate.routes import (
    validate_grpc_route,
    validate_http_route,
    validate_l4_route,
)


def validate(resources: list[Resource]) -> tuple[ConfigSet, list[Problem]]:
    problems: list[Problem] = []
    unique: dict[tuple[str, str, str], Resource] = {}
    for res in resources:
        if res.key in unique:
            first = unique[res.key].origin
            problems.append(
                res.problem(
                    ("metadata", "name"), f"duplicate of the object at {first.source}:{first.line}"
                )
            )
            continue
        unique[res.key] = res
    cs = ConfigSet(list(unique.values()))
    gateways = cs.gateways()
    backends = cs.backends()
    secrets = cs.secrets()
    namespaces = cs.namespace_labels()
    plugins = plugin_names(cs)
    for res in cs.resources:
        obj = res.obj
        if isinstance(obj, GatewayObject):
            validate_gateway(res, obj, secrets, problems)
        elif isinstance(obj, HTTPRouteObject):
            validate_http_route(res, obj, backends, gateways, namespaces, problems)
            validate_extension_refs(res, obj, plugins, problems)
        elif isinstance(obj, GRPCRouteObject):
            validate_grpc_route(res, obj, backends, gateways, namespaces, problems)
            validate_extension_refs(res, as_http(obj), plugins, problems)
        elif isinstance(obj, TCPRouteObject | TLSRouteObject):
            validate_l4_route(res, obj, backends, gateways, namespaces, problems)
        elif isinstance(obj, BackendObject):
            validate_backend(res, obj, secrets, problems)
        elif isinstance(obj, TrafficPolicyObject):
            validate_traffic_policy(res, obj, cs, problems)
        elif isinstance(obj, SecurityPolicyObject):
            validate_security_policy(res, obj, cs, problems)
        elif isinstance(obj, FilterPluginObject):
            validate_filter_plugin(res, obj, problems)
    check_consumers(cs.resources, problems)
    validate_releases(cs.resources, backends, problems)
    validate_environments(cs.resources, problems)
    problems.extend(resolve_sandboxes(cs.resources, set(backends))[1])
    return cs, problems


def validate_or_raise(resources: list[Resource], parse_problems: list[Problem]) -> ConfigSet:
    cs, problems = validate(resources)
    problems = parse_problems + problems
    if any(p.severity == "error" for p in problems):
        raise ConfigError(problems)
    return cs
