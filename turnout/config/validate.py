"""Cross-object and semantic checks that the schema alone cannot express.

``validate`` takes parsed resources and returns a ``ConfigSet`` plus problems. Errors
(severity ``error``) make the whole set unusable: the caller keeps serving the previous
revision. Warnings describe things the Gateway API treats as runtime conditions rather
than invalid input (a route whose parent does not exist, a backendRef to a missing
backend that must answer 500), so they are reported but do not block a reload.
"""

from __future__ import annotations

import ipaddress
import re

from turnout.config.attach import ROUTE_KINDS_BY_PROTOCOL, AnyRoute, attach_route
from turnout.config.configset import ConfigSet
from turnout.config.grpcroute import as_http
from turnout.config.kinds import TURNOUT_GROUP
from turnout.config.model.backend import BackendObject
from turnout.config.model.base import GATEWAY_GROUP
from turnout.config.model.gateway import (
    L4_IDLE_TIMEOUT_ANNOTATION,
    L4_MAX_CONNECTIONS_ANNOTATION,
    TLS_CERT_FILE_OPTION,
    TLS_KEY_FILE_OPTION,
    GatewayObject,
    GatewayTLSConfig,
)
from turnout.config.model.kubernetes import SecretObject
from turnout.config.model.routes import (
    GRPCRouteObject,
    HTTPPathModifier,
    HTTPRouteFilter,
    HTTPRouteObject,
    HTTPRouteRule,
    TCPRouteObject,
    TLSRouteObject,
)
from turnout.config.model.security import ConsumerObject, SecurityPolicyObject
from turnout.config.model.traffic import TrafficPolicyObject
from turnout.config.parse import Resource
from turnout.config.problems import ConfigError, Problem
from turnout.config.sandboxes import resolve as resolve_sandboxes
from turnout.config.security import (
    check_consumers,
    check_security_policy,
    check_target_refs,
    rate_limit_key_problem,
)
from turnout.config.tls import (
    TLSMaterialError,
    backend_tls,
    client_ca,
    expired,
    listener_certificates,
)
from turnout.core.durations import parse_duration
from turnout.core.headers import FILTER_FORBIDDEN_STR
from turnout.core.netaddr import parse_address

SUPPORTED_LISTENER_PROTOCOLS = frozenset({"HTTP", "HTTPS", "TCP", "TLS"})
# Listener protocols served by piping bytes (docs/l4.md) rather than parsing HTTP
L4_PROTOCOLS = frozenset({"TCP", "TLS"})
# Backend appProtocols spoken as HTTP/2 with prior knowledge (h2c)
HTTP2_APP_PROTOCOLS = frozenset({"h2c", "kubernetes.io/h2c", "grpc"})
UNSUPPORTED_FILTERS = {
    "CORS": "the CORS filter is not supported yet",
    "ExternalAuth": "the ExternalAuth filter is not supported yet",
    "ExtensionRef": "ExtensionRef filters are not supported",
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
    for res in cs.resources:
        obj = res.obj
        if isinstance(obj, GatewayObject):
            _check_gateway(res, obj, problems)
            _check_tls(res, obj, secrets, problems)
        elif isinstance(obj, HTTPRouteObject):
            _check_route(res, obj, backends, problems)
            _check_attachment(res, obj, gateways, namespaces, problems)
        elif isinstance(obj, GRPCRouteObject):
            converted = as_http(obj)
            translated = Resource(converted, res.origin, res.doc)
            _check_route(translated, converted, backends, problems)
            _check_attachment(translated, converted, gateways, namespaces, problems)
        elif isinstance(obj, TCPRouteObject | TLSRouteObject):
            _check_l4_route(res, obj, backends, problems)
            _check_attachment(res, obj, gateways, namespaces, problems)
        elif isinstance(obj, BackendObject):
            _check_backend(res, obj, problems)
            _check_backend_tls(res, obj, secrets, problems)
        elif isinstance(obj, TrafficPolicyObject):
            _check_policy(res, obj, cs, problems)
        elif isinstance(obj, SecurityPolicyObject):
            _check_security_policy(res, obj, cs, problems)
    check_consumers(cs.resources, problems)
    problems.extend(resolve_sandboxes(cs.resources, set(backends))[1])
    return cs, problems


def validate_or_raise(resources: list[Resource], parse_problems: list[Problem]) -> ConfigSet:
    cs, problems = validate(resources)
    problems = parse_problems + problems
    if any(p.severity == "error" for p in problems):
        raise ConfigError(problems)
    return cs


# --- Gateway ------------------------------------------------------------------------------


def _check_tls(
    res: Resource,
    gw: GatewayObject,
    secrets: dict[tuple[str, str], SecretObject],
    problems: list[Problem],
) -> None:
    """HTTPS listeners: TLS settings Turnout implements, certificates that load, and no
    port shared with a plain-HTTP listener (one socket speaks TLS or does not)."""
    protocols: dict[int, str] = {}
    for i, lst in enumerate(gw.spec.listeners):
        base = ("spec", "listeners", i)
        if lst.protocol not in ("HTTP", "HTTPS"):
            continue
        first = protocols.setdefault(lst.port, lst.protocol)
        if first != lst.protocol:
            problems.append(
                res.problem(
                    (*base, "protocol"),
                    f"port {lst.port} has both HTTP and HTTPS listeners; one port is either "
                    "plain or TLS",
                )
            )
        if lst.protocol != "HTTPS":
            continue
        tls = lst.tls
        if tls is None:
            problems.append(res.problem((*base, "tls"), "an HTTPS listener needs tls settings"))
            continue
        if tls.mode != "Terminate":
            problems.append(
                res.problem(
                    (*base, "tls", "mode"),
                    "HTTPS listeners terminate TLS; Passthrough is for TLS listeners "
                    "(protocol: TLS, with TLSRoutes)",
                )
            )
            continue
        try:
            client_ca(tls, gw.metadata.namespace, secrets)
        except TLSMaterialError as exc:
            problems.append(res.problem((*base, "tls", *exc.field), str(exc)))
        try:
            certs = listener_certificates(tls, gw.metadata.namespace, secrets)
        except TLSMaterialError as exc:
            problems.append(res.problem((*base, "tls", *exc.field), str(exc)))
            continue
        if not certs:
            problems.append(
                res.problem(
                    (*base, "tls", "certificateRefs"),
                    "an HTTPS listener needs a certificate: certificateRefs to a "
                    f"kubernetes.io/tls Secret, or tls.options {TLS_CERT_FILE_OPTION!r} and "
                    f"{TLS_KEY_FILE_OPTION!r}",
                )
            )
        for cert in certs:
            if expired(cert):
                problems.append(
                    res.problem(
                        (*base, "tls"),
                        f"{cert.source}: the certificate expired on {cert.not_after:%Y-%m-%d}",
                        "warning",
                    )
                )


def _check_gateway(res: Resource, gw: GatewayObject, problems: list[Problem]) -> None:
    names: set[str] = set()
    bindings: dict[tuple[int, str | None], str] = {}
    for i, lst in enumerate(gw.spec.listeners):
        base = ("spec", "listeners", i)
        if lst.name in names:
            problems.append(res.problem((*base, "name"), f"duplicate listener name {lst.name!r}"))
        names.add(lst.name)
        if lst.protocol not in SUPPORTED_LISTENER_PROTOCOLS:
            problems.append(
                res.problem(
                    (*base, "protocol"),
                    f"listener protocol {lst.protocol!r} is not supported yet "
                    "(supported: HTTP, HTTPS, TCP, TLS)",
                )
            )
        if lst.tls is not None and lst.protocol in ("HTTP", "TCP"):
            problems.append(
                res.problem(
                    (*base, "tls"),
                    "tls must not be set on an HTTP listener"
                    if lst.protocol == "HTTP"
                    else "tls must not be set on a TCP listener",
                )
            )
        if lst.protocol == "TLS":
            _check_passthrough(res, lst.tls, base, problems)
        other = bindings.get((lst.port, lst.hostname))
        if other is not None:
            problems.append(
                res.problem(
                    (*base, "port"),
                    f"listener conflicts with {other!r}: same port {lst.port} and hostname",
                )
            )
        bindings[(lst.port, lst.hostname)] = lst.name
        ns_from = lst.allowed_routes.namespaces
        if ns_from.from_ == "Selector" and ns_from.selector is None:
            problems.append(
                res.problem(
                    (*base, "allowedRoutes", "namespaces", "selector"),
                    "from: Selector requires a selector",
                )
            )
        carried = ROUTE_KINDS_BY_PROTOCOL.get(lst.protocol, ())
        for k, kind in enumerate(lst.allowed_routes.kinds):
            if carried and (kind.group != GATEWAY_GROUP or kind.kind not in carried):
                shown = "HTTP" if lst.protocol == "HTTPS" else lst.protocol
                problems.append(
                    res.problem(
                        (*base, "allowedRoutes", "kinds", k),
                        f"route kind {kind.group}/{kind.kind} is not supported on {shown} "
                        "listeners",
                    )
                )
    _check_l4_ports(res, gw, problems)
    for i, addr in enumerate(gw.spec.addresses):
        path = ("spec", "addresses", i)
        if addr.type != "IPAddress":
            problems.append(
                res.problem(
                    (*path, "type"), f"address type {addr.type!r} is not supported (use IPAddress)"
                )
            )
            continue
        try:
            ipaddress.ip_address(addr.value)
        except ValueError:
            problems.append(res.problem((*path, "value"), f"{addr.value!r} is not an IP address"))


def _check_passthrough(
    res: Resource,
    tls: GatewayTLSConfig | None,
    base: tuple[str | int, ...],
    problems: list[Problem],
) -> None:
    if tls is None or tls.mode != "Passthrough":
        problems.append(
            res.problem(
                (*base, "tls", "mode"),
                "TLS listeners need tls.mode: Passthrough (terminating TLS on a TLS listener "
                "is not supported yet; use an HTTPS listener to terminate)",
            )
        )
        return
    if tls.certificate_refs:
        problems.append(
            res.problem(
                (*base, "tls", "certificateRefs"),
                "a Passthrough listener does not terminate TLS: certificateRefs are unused",
                "warning",
            )
        )


def _check_l4_ports(res: Resource, gw: GatewayObject, problems: list[Problem]) -> None:
    """One port is HTTP(S) or L4, and one L4 protocol (a TCP port pipes every byte; a TLS
    port reads the ClientHello first); and the Gateway's L4 annotations parse."""
    seen: dict[int, str] = {}
    for i, lst in enumerate(gw.spec.listeners):
        if lst.protocol not in SUPPORTED_LISTENER_PROTOCOLS:
            continue
        family = lst.protocol if lst.protocol in L4_PROTOCOLS else "HTTP(S)"
        if family == "TCP" and seen.get(lst.port) == "TCP":
            # TCP has nothing (no host name) to tell two listeners of one port apart
            problems.append(
                res.problem(
                    ("spec", "listeners", i, "port"), f"port {lst.port} has two TCP listeners"
                )
            )
            continue
        first = seen.setdefault(lst.port, family)
        if first != family:
            problems.append(
                res.problem(
                    ("spec", "listeners", i, "protocol"),
                    f"port {lst.port} has both {first} and {family} listeners; a port carries "
                    "HTTP(S), TCP or TLS passthrough, not a mix",
                )
            )
    notes = gw.metadata.annotations
    idle = notes.get(L4_IDLE_TIMEOUT_ANNOTATION)
    if idle is not None:
        try:
            if parse_duration(idle) <= 0:
                raise ValueError("must be positive")
        except ValueError as exc:
            problems.append(
                res.problem(
                    ("metadata", "annotations", L4_IDLE_TIMEOUT_ANNOTATION),
                    f"{idle!r} is not a positive duration ({exc})",
                )
            )
    cap = notes.get(L4_MAX_CONNECTIONS_ANNOTATION)
    if cap is not None and not (cap.isdigit() and 0 < int(cap) <= 10_000_000):
        problems.append(
            res.problem(
                ("metadata", "annotations", L4_MAX_CONNECTIONS_ANNOTATION),
                f"{cap!r} is not a whole number of connections between 1 and 10000000",
            )
        )


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


# --- Backend ------------------------------------------------------------------------------


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    f = 2
    while f * f <= n:
        if n % f == 0:
            return False
        f += 1
    return True


_HASH_FIELD = {"Header": "header", "Cookie": "cookie", "QueryParameter": "queryParameter"}


def _check_resilience(res: Resource, backend: BackendObject, problems: list[Problem]) -> None:
    spec = backend.spec
    lb = spec.load_balancer
    base = ("spec", "loadBalancer")
    ch = lb.consistent_hash
    if lb.type == "ConsistentHash":
        if ch is None:
            problems.append(
                res.problem((*base, "consistentHash"), "type ConsistentHash needs consistentHash")
            )
        else:
            wanted = _HASH_FIELD.get(ch.type)
            given = {"header": ch.header, "cookie": ch.cookie, "queryParameter": ch.query_parameter}
            if wanted is not None and given[wanted] is None:
                problems.append(
                    res.problem(
                        (*base, "consistentHash", wanted),
                        f"consistentHash type {ch.type} needs {wanted}",
                    )
                )
            for name, value in given.items():
                if value is not None and name != wanted:
                    problems.append(
                        res.problem(
                            (*base, "consistentHash", name),
                            f"{name} does not apply to consistentHash type {ch.type}",
                        )
                    )
            if not _is_prime(ch.table_size):
                problems.append(
                    res.problem(
                        (*base, "consistentHash", "tableSize"),
                        f"tableSize {ch.table_size} must be a prime number (e.g. 65537)",
                    )
                )
    elif ch is not None:
        problems.append(
            res.problem(
                (*base, "consistentHash"), f"consistentHash does not apply to type {lb.type}"
            )
        )
    hc = spec.health_check
    if hc is not None and hc.active is not None:
        if parse_duration(hc.active.timeout) >= parse_duration(hc.active.interval):
            problems.append(
                res.problem(
                    ("spec", "healthCheck", "active", "timeout"),
                    "the check timeout must be shorter than its interval",
                )
            )
        if parse_duration(hc.active.interval) < 0.05:
            problems.append(
                res.problem(
                    ("spec", "healthCheck", "active", "interval"), "the interval must be ≥ 50ms"
                )
            )
    if hc is not None and hc.passive is not None:
        p = hc.passive
        if p.consecutive_5xx_errors == 0 and p.consecutive_gateway_errors == 0:
            problems.append(
                res.problem(
                    ("spec", "healthCheck", "passive"),
                    "both consecutive5XxErrors and consecutiveGatewayErrors are 0: "
                    "nothing will ever be ejected",
                    "warning",
                )
            )
        if parse_duration(p.max_ejection_time) < parse_duration(p.base_ejection_time):
            problems.append(
                res.problem(
                    ("spec", "healthCheck", "passive", "maxEjectionTime"),
                    "maxEjectionTime must not be shorter than baseEjectionTime",
                )
            )
    retry = spec.retry
    if retry is not None:
        triggers = retry.retry_on.triggers
        if retry.retry_on.http_status_codes and "retriable-status-codes" not in triggers:
            problems.append(
                res.problem(
                    ("spec", "retry", "retryOn", "triggers"),
                    "httpStatusCodes are only used with the 'retriable-status-codes' trigger",
                    "warning",
                )
            )
        if "refused-stream" in triggers:
            problems.append(
                res.problem(
                    ("spec", "retry", "retryOn", "triggers"),
                    "'refused-stream' applies to HTTP/2 upstreams, which are not supported yet",
                    "warning",
                )
            )


def _check_backend_tls(
    res: Resource,
    backend: BackendObject,
    secrets: dict[tuple[str, str], SecretObject],
    problems: list[Problem],
) -> None:
    spec = backend.spec.tls
    if spec is None:
        return
    try:
        backend_tls(spec, backend.metadata.namespace, secrets)
    except TLSMaterialError as exc:
        problems.append(res.problem(("spec", "tls", *exc.field), str(exc)))
        return
    if spec.insecure_skip_verify:
        problems.append(
            res.problem(
                ("spec", "tls", "insecureSkipVerify"),
                "upstream certificates are not verified: anyone on the path can impersonate "
                "this backend",
                "warning",
            )
        )


def _check_backend(res: Resource, backend: BackendObject, problems: list[Problem]) -> None:
    if backend.spec.app_protocol in HTTP2_APP_PROTOCOLS and backend.spec.tls is not None:
        problems.append(
            res.problem(
                ("spec", "tls"),
                f"appProtocol {backend.spec.app_protocol} is HTTP/2 in clear text (h2c); "
                "HTTP/2 over TLS to upstreams is not supported yet",
            )
        )
    _check_resilience(res, backend, problems)


# --- TrafficPolicy ------------------------------------------------------------------------


def _check_policy(
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
    if rl is None and fault is None and policy.spec.retry is None:
        problems.append(
            res.problem(
                ("spec",), "the policy sets nothing (rateLimit, faultInjection or retry)", "warning"
            )
        )


# --- SecurityPolicy -----------------------------------------------------------------------


def _check_security_policy(
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
