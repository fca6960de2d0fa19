"""The Gateway API route kinds: ``HTTPRoute`` (matches, filters, backendRefs, timeouts),
``GRPCRoute`` (and ``GRPCRouteAsHTTP``, the HTTPRoute it is translated to), ``TCPRoute`` and
``TLSRoute``, with the parent and backend references they share.

They follow the upstream field names and defaults exactly, so a manifest written for another
implementation parses unchanged. Fields Turnout recognises but does not implement yet
(``CORS`` filters, ``sessionPersistence`` on rules, ...) are parsed here and rejected by
``validate`` with a located "not supported" problem, which is clearer than "unknown field".
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StrictInt, StrictStr

from turnout.config.model.base import (
    GATEWAY_GROUP,
    Duration,
    HeaderName,
    HeaderValue,
    Hostname,
    HTTPMethod,
    ObjectMeta,
    ObjectName,
    PortNumber,
    SectionName,
    Spec,
)

# --- HTTPRoute --------------------------------------------------------------------------


class ParentReference(Spec):
    group: StrictStr = GATEWAY_GROUP
    kind: StrictStr = "Gateway"
    namespace: ObjectName | None = None
    name: ObjectName
    section_name: SectionName | None = None
    port: PortNumber | None = None


class HTTPPathMatch(Spec):
    type: Literal["Exact", "PathPrefix", "RegularExpression"] = "PathPrefix"
    value: Annotated[StrictStr, Field(max_length=1024)] = "/"


class HTTPHeaderMatch(Spec):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    name: HeaderName
    value: Annotated[StrictStr, Field(max_length=4096)]


class HTTPQueryParamMatch(Spec):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    name: Annotated[StrictStr, Field(min_length=1, max_length=256)]
    value: Annotated[StrictStr, Field(max_length=1024)]


class HTTPRouteMatch(Spec):
    path: HTTPPathMatch | None = HTTPPathMatch()
    headers: tuple[HTTPHeaderMatch, ...] = Field(default=(), max_length=16)
    query_params: tuple[HTTPQueryParamMatch, ...] = Field(default=(), max_length=16)
    method: HTTPMethod | None = None


class HTTPHeader(Spec):
    name: HeaderName
    value: HeaderValue


class HTTPHeaderFilter(Spec):
    set: tuple[HTTPHeader, ...] = Field(default=(), max_length=16)
    add: tuple[HTTPHeader, ...] = Field(default=(), max_length=16)
    remove: tuple[HeaderName, ...] = Field(default=(), max_length=16)


class HTTPPathModifier(Spec):
    type: Literal["ReplaceFullPath", "ReplacePrefixMatch"]
    replace_full_path: Annotated[StrictStr, Field(max_length=1024)] | None = None
    replace_prefix_match: Annotated[StrictStr, Field(max_length=1024)] | None = None


class HTTPRequestRedirectFilter(Spec):
    scheme: Literal["http", "https"] | None = None
    hostname: Hostname | None = None
    path: HTTPPathModifier | None = None
    port: PortNumber | None = None
    status_code: Literal[301, 302, 303, 307, 308] = 302


class HTTPURLRewriteFilter(Spec):
    hostname: Hostname | None = None
    path: HTTPPathModifier | None = None


class BackendObjectReference(Spec):
    group: StrictStr = ""
    kind: StrictStr = "Service"
    name: ObjectName
    namespace: ObjectName | None = None
    port: PortNumber | None = None


class Fraction(Spec):
    numerator: Annotated[StrictInt, Field(ge=0)]
    denominator: Annotated[StrictInt, Field(ge=1)] = 100


class HTTPRequestMirrorFilter(Spec):
    backend_ref: BackendObjectReference
    percent: Annotated[StrictInt, Field(ge=0, le=100)] | None = None
    fraction: Fraction | None = None


class LocalObjectReference(Spec):
    group: StrictStr
    kind: StrictStr
    name: ObjectName


FilterType = Literal[
    "RequestHeaderModifier",
    "ResponseHeaderModifier",
    "RequestMirror",
    "RequestRedirect",
    "URLRewrite",
    "ExtensionRef",
    "CORS",
    "ExternalAuth",
]


class HTTPRouteFilter(Spec):
    type: FilterType
    request_header_modifier: HTTPHeaderFilter | None = None
    response_header_modifier: HTTPHeaderFilter | None = None
    request_mirror: HTTPRequestMirrorFilter | None = None
    request_redirect: HTTPRequestRedirectFilter | None = None
    url_rewrite: HTTPURLRewriteFilter | None = None
    extension_ref: LocalObjectReference | None = None
    cors: dict[str, Any] | None = None
    external_auth: dict[str, Any] | None = None


class HTTPBackendRef(Spec):
    group: StrictStr = ""
    kind: StrictStr = "Service"
    name: ObjectName
    namespace: ObjectName | None = None
    port: PortNumber | None = None
    weight: Annotated[StrictInt, Field(ge=0, le=1_000_000)] = 1
    filters: tuple[HTTPRouteFilter, ...] = Field(default=(), max_length=16)


class HTTPRouteTimeouts(Spec):
    request: Duration | None = None
    backend_request: Duration | None = None


class HTTPRouteRetry(Spec):
    codes: tuple[Annotated[StrictInt, Field(ge=400, le=599)], ...] = ()
    attempts: Annotated[StrictInt, Field(ge=0)] | None = None
    backoff: Duration | None = None


class HTTPRouteRule(Spec):
    name: SectionName | None = None
    matches: tuple[HTTPRouteMatch, ...] = Field(default=(HTTPRouteMatch(),), max_length=64)
    filters: tuple[HTTPRouteFilter, ...] = Field(default=(), max_length=16)
    backend_refs: tuple[HTTPBackendRef, ...] = Field(default=(), max_length=16)
    timeouts: HTTPRouteTimeouts | None = None
    retry: HTTPRouteRetry | None = None
    session_persistence: dict[str, Any] | None = None


class HTTPRouteSpec(Spec):
    parent_refs: tuple[ParentReference, ...] = Field(default=(), max_length=32)
    hostnames: tuple[Hostname, ...] = Field(default=(), max_length=16)
    rules: tuple[HTTPRouteRule, ...] = Field(default=(HTTPRouteRule(),), max_length=64)


class HTTPRouteObject(Spec):
    api_version: Literal["gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1beta1"]
    kind: Literal["HTTPRoute"]
    metadata: ObjectMeta
    spec: HTTPRouteSpec
    status: dict[str, Any] | None = None


# --- GRPCRoute -----------------------------------------------------------------------------


class GRPCMethodMatch(Spec):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    service: Annotated[StrictStr, Field(min_length=1, max_length=1024)] | None = None
    method: Annotated[StrictStr, Field(min_length=1, max_length=1024)] | None = None


class GRPCRouteMatch(Spec):
    method: GRPCMethodMatch | None = None
    headers: tuple[HTTPHeaderMatch, ...] = Field(default=(), max_length=16)


GRPCFilterType = Literal[
    "RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror", "ExtensionRef"
]


class GRPCRouteFilter(Spec):
    type: GRPCFilterType
    request_header_modifier: HTTPHeaderFilter | None = None
    response_header_modifier: HTTPHeaderFilter | None = None
    request_mirror: HTTPRequestMirrorFilter | None = None
    extension_ref: LocalObjectReference | None = None


class GRPCBackendRef(Spec):
    group: StrictStr = ""
    kind: StrictStr = "Service"
    name: ObjectName
    namespace: ObjectName | None = None
    port: PortNumber | None = None
    weight: Annotated[StrictInt, Field(ge=0, le=1_000_000)] = 1
    filters: tuple[GRPCRouteFilter, ...] = Field(default=(), max_length=16)


class GRPCRouteRule(Spec):
    name: SectionName | None = None
    matches: tuple[GRPCRouteMatch, ...] = Field(default=(GRPCRouteMatch(),), max_length=64)
    filters: tuple[GRPCRouteFilter, ...] = Field(default=(), max_length=16)
    backend_refs: tuple[GRPCBackendRef, ...] = Field(default=(), max_length=16)
    session_persistence: dict[str, Any] | None = None


class GRPCRouteSpec(Spec):
    parent_refs: tuple[ParentReference, ...] = Field(default=(), max_length=32)
    hostnames: tuple[Hostname, ...] = Field(default=(), max_length=16)
    rules: tuple[GRPCRouteRule, ...] = Field(default=(GRPCRouteRule(),), max_length=64)


class GRPCRouteObject(Spec):
    api_version: Literal["gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1alpha2"]
    kind: Literal["GRPCRoute"]
    metadata: ObjectMeta
    spec: GRPCRouteSpec
    status: dict[str, Any] | None = None


class GRPCRouteAsHTTP(HTTPRouteObject):
    """A GRPCRoute translated to the HTTPRoute it behaves like (see ``config.grpcroute``):
    the data plane, attachment and policies treat it as an HTTPRoute whose kind says
    GRPCRoute."""

    api_version: Literal[  # type: ignore[assignment]
        "gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1alpha2"
    ]
    kind: Literal["GRPCRoute"]  # type: ignore[assignment]


# --- TCPRoute, TLSRoute (gateway.networking.k8s.io/v1alpha2) -----------------------------


class L4BackendRef(Spec):
    group: StrictStr = ""
    kind: StrictStr = "Service"
    name: ObjectName
    namespace: ObjectName | None = None
    port: PortNumber | None = None
    weight: Annotated[StrictInt, Field(ge=0, le=1_000_000)] = 1


class L4RouteRule(Spec):
    name: SectionName | None = None
    backend_refs: tuple[L4BackendRef, ...] = Field(default=(), max_length=16)


class TCPRouteSpec(Spec):
    parent_refs: tuple[ParentReference, ...] = Field(default=(), max_length=32)
    rules: tuple[L4RouteRule, ...] = Field(min_length=1, max_length=16)


class TCPRouteObject(Spec):
    api_version: Literal["gateway.networking.k8s.io/v1alpha2"]
    kind: Literal["TCPRoute"]
    metadata: ObjectMeta
    spec: TCPRouteSpec
    status: dict[str, Any] | None = None


class TLSRouteSpec(Spec):
    parent_refs: tuple[ParentReference, ...] = Field(default=(), max_length=32)
    hostnames: tuple[Hostname, ...] = Field(default=(), max_length=16)
    rules: tuple[L4RouteRule, ...] = Field(min_length=1, max_length=16)


class TLSRouteObject(Spec):
    api_version: Literal["gateway.networking.k8s.io/v1alpha2", "gateway.networking.k8s.io/v1"]
    kind: Literal["TLSRoute"]
    metadata: ObjectMeta
    spec: TLSRouteSpec
    status: dict[str, Any] | None = None
