"""Route checks: HTTPRoute rules (matches, filters, mirrors, backendRefs, timeouts),
GRPCRoutes through the HTTPRoute they translate to, TCPRoute and TLSRoute rules, and
attachment to parent Gateways."""

from __future__ import annotations

import re

from turnout.config.attach import AnyRoute, attach_route
from turnout.config.grpcroute import as_http
from turnout.config.kinds import TURNOUT_GROUP
from turnout.config.model.backend import BackendObject
from turnout.config.model.base import GATEWAY_GROUP
from turnout.config.model.gateway import GatewayObject
from turnout.config.model.routes import (
    GRPCRouteObject,
    HTTPPathModifier,
    HTTPRouteFilter,
    HTTPRouteObject,
    HTTPRouteRule,
    TCPRouteObject,
    TLSRouteObject,
)
from turnout.config.parse import Resource
from turnout.config.problems import Problem
from turnout.core.durations import parse_duration
from turnout.core.headers import FILTER_FORBIDDEN_STR
from turnout.core.netaddr import parse_address

UNSUPPORTED_FILTERS = {
    "CORS": "the CORS filter is not supported yet",
    "ExternalAuth": "the ExternalAuth filter is not supported yet",
}
_FILTER_FIELD = {
    "RequestHeaderModifier": "request_header_modifier",
    "ResponseHeaderModifier": "response_header_modifier",
    "RequestMirror": "request_mirror",
    "RequestRedirect": "request_redirect",
    "URLRewrite": "url_rewrite",
    "ExtensionRef": "extension_ref",
    "CORS": "cors",
    "ExternalAuth": "external_auth",
}
_FILTER_ALIAS = {
    "request_header_modifier": "requestHeaderModifier",
    "response_header_modifier": "responseHeaderModifier",
    "request_mirror": "requestMirror",
    "request_redirect": "requestRedirect",
    "url_rewrite": "urlRewrite",
    "extension_ref": "extensionRef",
    "cors": "cors",
    "external_auth": "externalAuth",
}


def validate_http_route(
    res: Resource,
    route: HTTPRouteObject,
    backends: dict[tuple[str, str], BackendObject],
    gateways: dict[tuple[str, str], GatewayObject],
    namespaces: dict[str, dict[str, str]],
    problems: list[Problem],
) -> None:
    """Rules and backendRefs, then attachment to the parent Gateways."""
    _check_route(res, route, backends, problems)
    _check_attachment(res, route, gateways, namespaces, problems)


def validate_grpc_route(
    res: Resource,
    route: GRPCRouteObject,
    backends: dict[tuple[str, str], BackendObject],
    gateways: dict[tuple[str, str], GatewayObject],
    namespaces: dict[str, dict[str, str]],
    problems: list[Problem],
) -> None:
    """The HTTPRoute the GRPCRoute translates to, located in the GRPCRoute's document."""
    converted = as_http(route)
    translated = Resource(converted, res.origin, res.doc)
    _check_route(translated, converted, backends, problems)
    _check_attachment(translated, converted, gateways, namespaces, problems)


def validate_l4_route(
    res: Resource,
    route: TCPRouteObject | TLSRouteObject,
    backends: dict[tuple[str, str], BackendObject],
    gateways: dict[tuple[str, str], GatewayObject],
    namespaces: dict[str, dict[str, str]],
    problems: list[Problem],
) -> None:
    """The single rule and its backendRefs, then attachment to the parent Gateways."""
    _check_l4_route(res, route, backends, problems)
    _check_attachment(res, route, gateways, namespaces, problems)


def _check_attachment(
    res: Resource,
    route: AnyRoute,
    gateways: dict[tuple[str, str], GatewayObject],
    namespaces: dict[str, dict[str, str]],
    problems: list[Problem],
) -> None:
    for i, ref in enumerate(route.spec.parent_refs):
        if ref.group != GATEWAY_GROUP or ref.kind != "Gateway":
            problems.append(
                res.problem(
                    ("spec", "parentRefs", i, "kind"),
                    f"parent kind {ref.group}/{ref.kind} is not supported (use a Gateway)",
                )
            )
    outcome = attach_route(route, gateways, namespaces)
    for refusal in outcome.refused:
        problems.append(
            res.problem(
                ("spec", "parentRefs", refusal.parent_index),
                f"not attached ({refusal.reason}): {refusal.message}",
                "warning",
            )
        )


# --- TCPRoute, TLSRoute -------------------------------------------------------------------


def _check_l4_route(
    res: Resource,
    route: TCPRouteObject | TLSRouteObject,
    backends: dict[tuple[str, str], BackendObject],
    problems: list[Problem],
) -> None:
    # Nothing on L4 tells two rules apart (v1alpha2 rules have no matches), so a second
    # rule could never be chosen: refuse it rather than ignore it silently.
    if len(route.spec.rules) > 1:
        problems.append(res.problem(("spec", "rules", 1), f"a {route.kind} has exactly one rule"))
    for r, rule in enumerate(route.spec.rules):
        for b, ref in enumerate(rule.backend_refs):
            path = ("spec", "rules", r, "backendRefs", b)
            _check_backend_ref(
                res,
                route,
                ref.group,
                ref.kind,
                ref.name,
                ref.namespace,
                ref.port,
                backends,
                path,
                problems,
            )
            backend = backends.get((ref.namespace or route.metadata.namespace, ref.name))
            if backend is not None and backend.spec.tls is not None:
                problems.append(
                    res.problem(
                        (*path, "name"),
                        f"{route.kind}s pipe bytes unchanged: Backend {ref.name}'s tls "
                        "settings are not used for this route",
                        "warning",
                    )
                )


# --- HTTPRoute ----------------------------------------------------------------------------


def _check_route(
    res: Resource,
    route: HTTPRouteObject,
    backends: dict[tuple[str, str], BackendObject],
    problems: list[Problem],
) -> None:
    for r, rule in enumerate(route.spec.rules):
        base = ("spec", "rules", r)
        _check_matches(res, rule, base, problems)
        _check_filters(res, rule, rule.filters, (*base, "filters"), problems)
        for f, flt in enumerate(rule.filters):
            mirror = flt.request_mirror
            if mirror is not None:
                mref = mirror.backend_ref
                _check_backend_ref(
                    res,
                    route,
                    mref.group,
                    mref.kind,
                    mref.name,
                    mref.namespace,
                    mref.port,
                    backends,
                    (*base, "filters", f, "requestMirror", "backendRef"),
                    problems,
                )
                if mirror.percent is not None and mirror.fraction is not None:
                    problems.append(
                        res.problem(
                            (*base, "filters", f, "requestMirror"),
                            "give percent or fraction, not both",
                        )
                    )
                fraction = mirror.fraction
                if fraction is not None and fraction.numerator > fraction.denominator:
                    problems.append(
                        res.problem(
                            (*base, "filters", f, "requestMirror", "fraction"),
                            "the numerator may not exceed the denominator",
                        )
                    )
        for b, ref in enumerate(rule.backend_refs):
            bpath = (*base, "backendRefs", b)
            _check_filters(res, rule, ref.filters, (*bpath, "filters"), problems)
            _check_backend_ref(
                res,
                route,
                ref.group,
                ref.kind,
                ref.name,
                ref.namespace,
                ref.port,
                backends,
                bpath,
                problems,
            )
        if rule.timeouts is not None:
            req, backend = rule.timeouts.request, rule.timeouts.backend_request
            if (
                req
                and backend
                and parse_duration(req) != 0
                and (parse_duration(backend) > parse_duration(req))
            ):
                problems.append(
                    res.problem(
                        (*base, "timeouts", "backendRequest"),
                        "backendRequest must not be longer than request",
                    )
                )
        if rule.retry is not None and rule.retry.attempts is not None and rule.retry.attempts > 10:
            problems.append(
                res.problem((*base, "retry", "attempts"), "at most 10 retries per request")
            )
        if rule.session_persistence is not None:
            problems.append(
                res.problem(
                    (*base, "sessionPersistence"),
                    "session persistence on route rules is not supported yet; set "
                    "sessionPersistence on the Backend",
                )
            )


def _check_matches(
    res: Resource, rule: HTTPRouteRule, base: tuple[str | int, ...], problems: list[Problem]
) -> None:
    for m, match in enumerate(rule.matches):
        mpath = (*base, "matches", m)
        if match.path is not None:
            message = path_match_problem(match.path.type, match.path.value)
            if message:
                problems.append(res.problem((*mpath, "path", "value"), message))
        for h, hm in enumerate(match.headers):
            if hm.type == "RegularExpression":
                _check_regex(res, hm.value, (*mpath, "headers", h, "value"), problems)
        for q, qm in enumerate(match.query_params):
            if qm.type == "RegularExpression":
                _check_regex(res, qm.value, (*mpath, "queryParams", q, "value"), problems)
        lowered = [hm.name.lower() for hm in match.headers]
        if len(set(lowered)) != len(lowered):
            problems.append(res.problem((*mpath, "headers"), "header names must be unique"))
        qnames = [qm.name for qm in match.query_params]
        if len(set(qnames)) != len(qnames):
            problems.append(
                res.problem((*mpath, "queryParams"), "query parameter names must be unique")
            )


_BAD_PATH_PARTS = ("//", "/./", "/../", "%2f", "%2F", "#")
# The Gateway API's pattern for Exact and PathPrefix values.
_PATH_CHARS = re.compile(r"(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|%[0-9a-fA-F]{2})+")


def path_match_problem(kind: str, value: str) -> str | None:
    if kind == "RegularExpression":
        try:
            re.compile(value)
        except re.error as exc:
            return f"invalid regular expression: {exc}"
        return None
    if not value.startswith("/"):
        return "path must start with '/'"
    if not _PATH_CHARS.fullmatch(value):
        return "path has characters a path match cannot contain (query, space, '%' not escaping)"
    if any(part in value for part in _BAD_PATH_PARTS) or value.endswith(("/..", "/.")):
        return "path must not contain '//', '/./', '/../', '%2f', '#' or end in '/.' or '/..'"
    return None


def _check_regex(
    res: Resource, pattern: str, path: tuple[str | int, ...], problems: list[Problem]
) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        problems.append(res.problem(path, f"invalid regular expression: {exc}"))


def _check_filters(
    res: Resource,
    rule: HTTPRouteRule,
    filters: tuple[HTTPRouteFilter, ...],
    base: tuple[str | int, ...],
    problems: list[Problem],
) -> None:
    kinds = [f.type for f in filters]
    if "RequestRedirect" in kinds and "URLRewrite" in kinds:
        problems.append(res.problem(base, "RequestRedirect and URLRewrite cannot be used together"))
    for kind in (
        "RequestHeaderModifier",
        "ResponseHeaderModifier",
        "RequestRedirect",
        "URLRewrite",
    ):
        if kinds.count(kind) > 1:
            problems.append(res.problem(base, f"{kind} may appear at most once"))
    for i, flt in enumerate(filters):
        fpath = (*base, i)
        expected = _FILTER_FIELD[flt.type]
        for name in _FILTER_FIELD.values():
            present = getattr(flt, name) is not None
            if name == expected and not present:
                problems.append(
                    res.problem(
                        (*fpath, "type"), f"filter type {flt.type} requires {_FILTER_ALIAS[name]}"
                    )
                )
            elif name != expected and present:
                problems.append(
                    res.problem(
                        (*fpath, _FILTER_ALIAS[name]),
                        f"{_FILTER_ALIAS[name]} must not be set for filter type {flt.type}",
                    )
                )
        if flt.type in UNSUPPORTED_FILTERS:
            problems.append(res.problem((*fpath, "type"), UNSUPPORTED_FILTERS[flt.type]))
        for mod_name in ("request_header_modifier", "response_header_modifier"):
            mod = getattr(flt, mod_name)
            if mod is not None:
                _check_header_modifier(res, mod, (*fpath, _FILTER_ALIAS[mod_name]), problems)
        path_mod = None
        if flt.request_redirect is not None:
            path_mod = flt.request_redirect.path
        elif flt.url_rewrite is not None:
            path_mod = flt.url_rewrite.path
        if path_mod is not None:
            _check_path_modifier(res, rule, path_mod, fpath, problems)


def _check_header_modifier(
    res: Resource, mod: object, path: tuple[str | int, ...], problems: list[Problem]
) -> None:
    for field_name in ("set", "add", "remove"):
        entries = getattr(mod, field_name)
        names = [(e if isinstance(e, str) else e.name).lower() for e in entries]
        if len(set(names)) != len(names):
            problems.append(res.problem((*path, field_name), "header names must be unique"))
        for j, name in enumerate(names):
            if name in FILTER_FORBIDDEN_STR:
                problems.append(
                    res.problem(
                        (*path, field_name, j), f"header {name!r} is managed by the gateway"
                    )
                )


def _check_path_modifier(
    res: Resource,
    rule: HTTPRouteRule,
    mod: HTTPPathModifier,
    fpath: tuple[str | int, ...],
    problems: list[Problem],
) -> None:
    kind = mod.type
    full, prefix = mod.replace_full_path, mod.replace_prefix_match
    if kind == "ReplaceFullPath":
        if full is None or prefix is not None:
            problems.append(res.problem(fpath, "ReplaceFullPath requires replaceFullPath only"))
        elif not full.startswith("/"):
            problems.append(res.problem(fpath, "replaceFullPath must start with '/'"))
    else:
        if prefix is None or full is not None:
            problems.append(
                res.problem(fpath, "ReplacePrefixMatch requires replacePrefixMatch only")
            )
        elif not prefix.startswith("/"):
            problems.append(res.problem(fpath, "replacePrefixMatch must start with '/'"))
        if any(m.path is None or m.path.type != "PathPrefix" for m in rule.matches):
            problems.append(
                res.problem(
                    fpath, "ReplacePrefixMatch needs every match of the rule to be a PathPrefix"
                )
            )


def _check_backend_ref(
    res: Resource,
    route: AnyRoute,
    group: str,
    kind: str,
    name: str,
    namespace: str | None,
    port: int | None,
    backends: dict[tuple[str, str], BackendObject],
    path: tuple[str | int, ...],
    problems: list[Problem],
) -> None:
    # Bad references are runtime conditions in the Gateway API (the share of traffic they
    # would get answers 500), so they are warnings, not errors.
    if (group, kind) not in (("", "Service"), (TURNOUT_GROUP, "Backend")):
        problems.append(
            res.problem(
                (*path, "kind"),
                f"unsupported backend kind {group or 'core'}/{kind}; requests answer 500",
                "warning",
            )
        )
        return
    ns = namespace or route.metadata.namespace
    if ns != route.metadata.namespace:
        problems.append(
            res.problem(
                (*path, "namespace"),
                "cross-namespace backendRefs need a ReferenceGrant, "
                "which is not supported yet; requests answer 500",
                "warning",
            )
        )
        return
    backend = backends.get((ns, name))
    if backend is None:
        problems.append(
            res.problem(
                (*path, "name"),
                f"Backend {ns}/{name} does not exist; requests answer 500",
                "warning",
            )
        )
        return
    if port is None:
        for ep in backend.spec.endpoints:
            addr = parse_address(ep.address, allow_missing_port=True)
            if not addr.is_unix and addr.port == 0:
                problems.append(
                    res.problem(
                        (*path, "port"),
                        f"endpoint {ep.address!r} has no port and the backendRef names none",
                        "warning",
                    )
                )
                return
