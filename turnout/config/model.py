"""Typed specs for every object Turnout reads (pydantic v2, strict, unknown fields rejected).

Gateway API objects (``gateway.networking.k8s.io``) follow the upstream field names and
defaults exactly, so a manifest written for another implementation parses unchanged.
Fields Turnout recognises but does not implement yet (``retry``, ``CORS`` filters,
``sessionPersistence``, HTTPS listeners, ...) are parsed here and rejected by
``validate`` with a located "not supported" problem, which is clearer than "unknown
field". Scalars are strict (``"80"`` is not a port), containers accept YAML lists.

Durations stay strings in the model (they round-trip through the admin API unchanged)
and are checked here, converted to seconds when the data plane compiles a snapshot.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
)
from pydantic.alias_generators import to_camel

from turnout.config.kinds import GATEWAY_API_GROUP, KindRegistry
from turnout.config.kinds import KINDS as REGISTRY
from turnout.config.kinds import TURNOUT_GROUP as TURNOUT_GROUP
from turnout.core.durations import DurationError, parse_duration
from turnout.core.netaddr import AddressError, parse_address
from turnout.core.routing_keys import MAX_LENGTH as MAX_KEY_LENGTH
from turnout.core.routing_keys import valid_key

GATEWAY_GROUP: Final = GATEWAY_API_GROUP
GATEWAY_VERSIONS: Final = ("gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1beta1")
TURNOUT_VERSION: Final = "turnout.dev/v1alpha1"


class Spec(BaseModel):
    """Base for every spec type: camelCase aliases, frozen, unknown fields are errors."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=False,  # manifests use camelCase only: 'backend_refs' is unknown
        frozen=True,
        serialize_by_alias=True,
    )


# --- validated scalar types -------------------------------------------------------------

_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_HOSTNAME = re.compile(r"(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_IPV4 = re.compile(r"[0-9]+(\.[0-9]+){3}")
_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`|~]+")
_SECTION = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def _object_name(v: str) -> str:
    if len(v) > 253 or not _DNS_SUBDOMAIN.fullmatch(v):
        raise ValueError(
            f"{v!r} is not a valid name: lowercase letters, digits, '-' and '.', "
            "starting and ending with a letter or digit, at most 253 characters"
        )
    return v


def _hostname(v: str) -> str:
    if len(v) > 253 or not _HOSTNAME.fullmatch(v):
        raise ValueError(
            f"{v!r} is not a valid hostname: lowercase DNS labels, optionally prefixed by '*.'"
        )
    if _IPV4.fullmatch(v) or ":" in v:
        raise ValueError(f"{v!r}: hostnames may not be IP addresses")
    return v


def _section_name(v: str) -> str:
    if len(v) > 253 or not _SECTION.fullmatch(v):
        raise ValueError(f"{v!r} is not a valid section name (lowercase letters, digits, '-')")
    return v


def _header_name(v: str) -> str:
    if len(v) > 256 or not _TOKEN.fullmatch(v):
        raise ValueError(f"{v!r} is not a valid HTTP header name")
    return v


def _header_value(v: str) -> str:
    if any(c in v for c in "\r\n\0"):
        raise ValueError("header values may not contain CR, LF or NUL")
    return v


def _timestamp(v: str) -> str:
    try:
        datetime.fromisoformat(v)
    except ValueError:
        raise ValueError(f"{v!r} is not an RFC 3339 timestamp") from None
    return v


def _duration(v: str) -> str:
    try:
        parse_duration(v)
    except DurationError as exc:
        raise ValueError(str(exc)) from None
    return v


def _endpoint_address(v: str) -> str:
    try:
        # A bare host is allowed here: its port comes from the referencing backendRef.
        parse_address(v, allow_missing_port=True)
    except AddressError as exc:
        raise ValueError(str(exc)) from None
    return v


ObjectName = Annotated[StrictStr, AfterValidator(_object_name)]
Hostname = Annotated[StrictStr, AfterValidator(_hostname)]
SectionName = Annotated[StrictStr, AfterValidator(_section_name)]
HeaderName = Annotated[StrictStr, AfterValidator(_header_name)]
HeaderValue = Annotated[StrictStr, AfterValidator(_header_value)]
Duration = Annotated[StrictStr, AfterValidator(_duration)]
PortNumber = Annotated[StrictInt, Field(ge=1, le=65535)]
HTTPMethod = Literal["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]


# --- metadata -------------------------------------------------------------------------


class ObjectMeta(Spec):
    name: ObjectName
    namespace: ObjectName = "default"
    labels: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    annotations: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    # Present in manifests exported from a cluster; accepted, only creationTimestamp is used
    # (Gateway API route precedence prefers the oldest route).
    creation_timestamp: Annotated[StrictStr, AfterValidator(_timestamp)] | None = None
    resource_version: StrictStr | None = None
    generation: StrictInt | None = None
    uid: StrictStr | None = None
    managed_fields: list[Any] | None = None


# --- core/v1 Namespace, GatewayClass ----------------------------------------------------


class NamespaceObject(Spec):
    api_version: Literal["v1"]
    kind: Literal["Namespace"]
    metadata: ObjectMeta
    spec: dict[str, Any] | None = None
    status: dict[str, Any] | None = None


class SecretObject(Spec):
    """A Kubernetes Secret; Turnout reads ``kubernetes.io/tls`` ones (``tls.crt`` and
    ``tls.key``, base64 in ``data`` or plain in ``stringData``) for TLS listeners."""

    api_version: Literal["v1"]
    kind: Literal["Secret"]
    metadata: ObjectMeta
    type: StrictStr = "Opaque"
    data: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    string_data: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    immutable: bool | None = None


class GatewayClassSpec(Spec):
    controller_name: StrictStr
    description: StrictStr | None = None
    parameters_ref: dict[str, Any] | None = None


class GatewayClassObject(Spec):
    api_version: Literal["gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1beta1"]
    kind: Literal["GatewayClass"]
    metadata: ObjectMeta
    spec: GatewayClassSpec
    status: dict[str, Any] | None = None


# --- Gateway ----------------------------------------------------------------------------


class LabelSelectorRequirement(Spec):
    key: StrictStr
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: tuple[StrictStr, ...] = ()


class LabelSelector(Spec):
    match_labels: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    match_expressions: tuple[LabelSelectorRequirement, ...] = ()


class RouteNamespaces(Spec):
    from_: Literal["All", "Same", "Selector"] = Field("Same", alias="from")
    selector: LabelSelector | None = None


class RouteGroupKind(Spec):
    group: StrictStr = GATEWAY_GROUP
    kind: StrictStr


class AllowedRoutes(Spec):
    namespaces: RouteNamespaces = Field(default_factory=lambda: RouteNamespaces.model_validate({}))
    kinds: tuple[RouteGroupKind, ...] = ()


class SecretObjectReference(Spec):
    group: StrictStr = ""
    kind: StrictStr = "Secret"
    name: ObjectName
    namespace: ObjectName | None = None


# ``tls.options`` keys naming PEM files instead of Secrets (Gateway API leaves the option
# namespace to implementations); the files are watched and reloaded when they change.
TLS_CERT_FILE_OPTION: Final = "turnout.dev/certificate-file"
TLS_KEY_FILE_OPTION: Final = "turnout.dev/key-file"
# The TLS 1.2 cipher suites of an HTTPS listener (an OpenSSL cipher string; TLS 1.3 suites
# are all AEAD and not affected) and its minimum protocol version ("1.2" or "1.3").
TLS_CIPHERS_OPTION: Final = "turnout.dev/tls-ciphers"
TLS_MIN_VERSION_OPTION: Final = "turnout.dev/tls-min-version"
# Forward secrecy and AEAD only: no CBC suites (LUCKY13 and friends), no RSA key exchange.
DEFAULT_TLS12_CIPHERS: Final = "ECDHE+AESGCM:ECDHE+CHACHA20"
TLS_MIN_VERSIONS: Final = ("1.2", "1.3")


class FrontendTLSValidation(Spec):
    """Client certificates on an HTTPS listener (mutual TLS): the CAs that may sign them,
    as Secrets holding ``ca.crt``. ``AllowValidOnly`` refuses connections without a valid
    certificate; ``AllowInsecureFallback`` lets them in without an identity."""

    ca_certificate_refs: tuple[SecretObjectReference, ...] = Field(min_length=1, max_length=8)
    mode: Literal["AllowValidOnly", "AllowInsecureFallback"] = "AllowValidOnly"


class GatewayTLSConfig(Spec):
    mode: Literal["Terminate", "Passthrough"] = "Terminate"
    certificate_refs: tuple[SecretObjectReference, ...] = Field(default=(), max_length=64)
    options: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    frontend_validation: FrontendTLSValidation | None = None


class Listener(Spec):
    name: SectionName
    hostname: Hostname | None = None
    port: PortNumber
    protocol: StrictStr
    tls: GatewayTLSConfig | None = None
    allowed_routes: AllowedRoutes = AllowedRoutes()


class GatewayAddress(Spec):
    type: StrictStr = "IPAddress"
    value: StrictStr


class GatewaySpec(Spec):
    gateway_class_name: StrictStr
    listeners: tuple[Listener, ...] = Field(min_length=1, max_length=64)
    addresses: tuple[GatewayAddress, ...] = ()
    infrastructure: dict[str, Any] | None = None


class GatewayObject(Spec):
    api_version: Literal["gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1beta1"]
    kind: Literal["Gateway"]
    metadata: ObjectMeta
    spec: GatewaySpec
    status: dict[str, Any] | None = None


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

# Gateway annotations for its L4 (TCP and TLS passthrough) listeners: the Gateway API has
# no field for these, so they are a ``turnout.dev`` extension (see docs/l4.md).
L4_IDLE_TIMEOUT_ANNOTATION: Final = "turnout.dev/l4-idle-timeout"
L4_MAX_CONNECTIONS_ANNOTATION: Final = "turnout.dev/l4-max-connections"


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


# --- turnout.dev Backend ----------------------------------------------------------------


class EndpointSpec(Spec):
    """One upstream: ``host:port``, ``[v6]:port``, ``unix:/path``, or a bare host whose port
    comes from the referencing ``backendRef``."""

    address: Annotated[StrictStr, AfterValidator(_endpoint_address)]
    weight: Annotated[StrictInt, Field(ge=0, le=1_000_000)] = 1


def _lb_shorthand(v: object) -> object:
    return {"type": v} if isinstance(v, str) else v


def _lb_type(v: str) -> str:
    return "RoundRobin" if v == "round_robin" else v  # the spelling of the first release


Percent = Annotated[StrictInt, Field(ge=0, le=100)]
Count = Annotated[StrictInt, Field(ge=1, le=1_000_000)]


class ConsistentHashHeader(Spec):
    name: HeaderName


class ConsistentHashCookie(Spec):
    name: Annotated[
        StrictStr, Field(min_length=1, max_length=128, pattern=r"^[!#-+\--:<-\[\]-~]+$")
    ]
    ttl: Duration | None = None  # set by the gateway when absent from the request


class ConsistentHashQuery(Spec):
    name: Annotated[StrictStr, Field(min_length=1, max_length=256)]


class ConsistentHashSpec(Spec):
    """Envoy Gateway's ``consistentHash``: Maglev over the chosen request attribute."""

    type: Literal["SourceIP", "Header", "Cookie", "QueryParameter"]
    header: ConsistentHashHeader | None = None
    cookie: ConsistentHashCookie | None = None
    query_parameter: ConsistentHashQuery | None = None
    table_size: Annotated[StrictInt, Field(ge=7, le=1_000_003)] = 65537


class SlowStartSpec(Spec):
    window: Duration


class LoadBalancerSpec(Spec):
    type: Annotated[
        Literal["RoundRobin", "LeastRequest", "Random", "ConsistentHash", "round_robin"],
        AfterValidator(_lb_type),
    ] = "RoundRobin"
    consistent_hash: ConsistentHashSpec | None = None
    slow_start: SlowStartSpec | None = None


class CookieConfig(Spec):
    lifetime_type: Literal["Session", "Permanent"] = "Session"


class SessionPersistenceSpec(Spec):
    """Gateway API ``sessionPersistence``: a cookie the gateway sets naming the endpoint."""

    session_name: Annotated[StrictStr, Field(min_length=1, max_length=128)] = "turnout-session"
    type: Literal["Cookie"] = "Cookie"
    absolute_timeout: Duration | None = None
    cookie_config: CookieConfig = CookieConfig()


class HTTPHealthCheckSpec(Spec):
    path: Annotated[StrictStr, Field(pattern=r"^/[^\s]*$", max_length=1024)] = "/"
    method: Literal["GET", "HEAD"] = "GET"
    hostname: Hostname | None = None
    expected_statuses: tuple[Annotated[StrictInt, Field(ge=100, le=599)], ...] = Field(
        default=(200,), min_length=1, max_length=64
    )


class GRPCHealthCheckSpec(Spec):
    """``grpc.health.v1.Health/Check`` over h2c; an empty service asks about the server."""

    service: Annotated[StrictStr, Field(max_length=1024)] = ""


class ActiveHealthCheckSpec(Spec):
    type: Literal["HTTP", "TCP", "GRPC"] = "HTTP"
    http: HTTPHealthCheckSpec = HTTPHealthCheckSpec()
    grpc: GRPCHealthCheckSpec = GRPCHealthCheckSpec()
    interval: Duration = "5s"
    timeout: Duration = "1s"
    healthy_threshold: Count = 1
    unhealthy_threshold: Count = 3
    jitter: Percent = 10  # ± percent of the interval


class PassiveHealthCheckSpec(Spec):
    """Outlier detection (Envoy): eject endpoints that keep failing, for growing periods."""

    consecutive_5xx_errors: Annotated[
        StrictInt, Field(ge=0, le=1000, alias="consecutive5XxErrors")
    ] = 5
    consecutive_gateway_errors: Annotated[StrictInt, Field(ge=0, le=1000)] = 0
    base_ejection_time: Duration = "30s"
    max_ejection_time: Duration = "300s"
    interval: Duration = "10s"  # each interval back in service forgives one past ejection
    max_ejection_percent: Percent = 10


class HealthCheckSpec(Spec):
    active: ActiveHealthCheckSpec | None = None
    passive: PassiveHealthCheckSpec | None = None


class ErrorRateBreakerSpec(Spec):
    """closed → open when the error share crosses the threshold → half-open probes."""

    threshold: Annotated[StrictInt, Field(ge=1, le=100)] = 50  # percent of responses
    minimum_requests: Count = 20
    window: Duration = "10s"
    open_duration: Duration = "5s"
    half_open_requests: Annotated[StrictInt, Field(ge=1, le=1000)] = 1


class CircuitBreakerSpec(Spec):
    """Envoy Gateway's ``circuitBreaker`` limits (per worker process) plus an error-rate breaker."""

    max_connections: Count = 1024
    max_pending_requests: Count = 1024
    max_parallel_requests: Count = 1024
    max_parallel_retries: Count = 1024
    error_rate: ErrorRateBreakerSpec | None = None


RetryTrigger = Literal[
    "connect-failure", "reset", "5xx", "gateway-error", "retriable-status-codes", "refused-stream"
]


class BackOffSpec(Spec):
    base_interval: Duration = "25ms"
    max_interval: Duration | None = None  # default: 10 × base


class PerRetrySpec(Spec):
    timeout: Duration | None = None
    back_off: BackOffSpec = BackOffSpec()


class RetryOnSpec(Spec):
    triggers: tuple[RetryTrigger, ...] = ("connect-failure", "reset", "gateway-error")
    http_status_codes: tuple[Annotated[StrictInt, Field(ge=400, le=599)], ...] = ()


class RetryBudgetSpec(Spec):
    percent: Annotated[StrictInt, Field(ge=0, le=100)] = 20  # of active requests
    min_retry_concurrency: Annotated[StrictInt, Field(ge=0, le=100_000)] = 3


class RetrySpec(Spec):
    """Envoy Gateway's ``retry``; attempts beyond the first, never for unreplayable bodies."""

    num_retries: Annotated[StrictInt, Field(ge=0, le=10)] = 2
    retry_on: RetryOnSpec = RetryOnSpec()
    per_retry: PerRetrySpec = PerRetrySpec()
    budget: RetryBudgetSpec = RetryBudgetSpec()


class BackendTimeoutSpec(Spec):
    connect: Duration = "5s"


class ConnectionPoolSpec(Spec):
    max_idle_per_endpoint: Annotated[StrictInt, Field(ge=0, le=100_000)] = 128
    idle_timeout: Duration = "60s"


class BackendTLSSpec(Spec):
    """TLS to the Backend's endpoints. Verification is on: against ``caCertificateRefs``
    (Secrets with ``ca.crt``) or ``caFile``, else the system's trust store."""

    sni: Hostname | None = None  # default: the endpoint's host name when it is a DNS name
    ca_certificate_refs: tuple[SecretObjectReference, ...] = Field(default=(), max_length=16)
    ca_file: StrictStr | None = None
    client_certificate_ref: SecretObjectReference | None = None  # mTLS: kubernetes.io/tls
    client_certificate_file: StrictStr | None = None
    client_key_file: StrictStr | None = None
    insecure_skip_verify: bool = False  # tests only: says so loudly in `turnout check`


class BackendSpec(Spec):
    endpoints: tuple[EndpointSpec, ...] = Field(default=(), max_length=4096)
    load_balancer: Annotated[LoadBalancerSpec, BeforeValidator(_lb_shorthand)] = LoadBalancerSpec()
    app_protocol: Literal["http", "kubernetes.io/ws", "h2c", "kubernetes.io/h2c", "grpc"] = "http"
    timeout: BackendTimeoutSpec = BackendTimeoutSpec()
    connection_pool: ConnectionPoolSpec = ConnectionPoolSpec()
    session_persistence: SessionPersistenceSpec | None = None
    health_check: HealthCheckSpec | None = None
    circuit_breaker: CircuitBreakerSpec | None = None
    retry: RetrySpec | None = None
    tls: BackendTLSSpec | None = None


class BackendObject(Spec):
    api_version: Literal["turnout.dev/v1alpha1"]
    kind: Literal["Backend"]
    metadata: ObjectMeta
    spec: BackendSpec
    status: dict[str, Any] | None = None


# --- turnout.dev TrafficPolicy -------------------------------------------------------------


class PolicyTargetRef(Spec):
    """What a policy attaches to: a Gateway (optionally one listener) or an HTTPRoute
    (optionally one named rule), in the policy's namespace."""

    group: Literal["gateway.networking.k8s.io"] = "gateway.networking.k8s.io"
    kind: Literal["Gateway", "HTTPRoute"]
    name: ObjectName
    section_name: SectionName | None = None


class RateLimitValue(Spec):
    requests: Count
    unit: Literal["Second", "Minute", "Hour", "Day"]


class RateLimitKey(Spec):
    """What one bucket counts: each client address, each value of a header, or the route."""

    type: Literal["ClientIP", "Header", "Route", "Consumer", "JWTClaim"] = "ClientIP"
    name: Annotated[StrictStr, Field(min_length=1, max_length=256)] | None = None


class RateLimitRule(Spec):
    key: RateLimitKey = RateLimitKey()
    algorithm: Literal["TokenBucket", "SlidingWindow"] = "TokenBucket"
    limit: RateLimitValue
    burst: Count | None = None  # token bucket capacity; default: limit.requests


class RateLimitSpec(Spec):
    type: Literal["Local", "Global"] = "Local"
    rules: tuple[RateLimitRule, ...] = Field(min_length=1, max_length=16)
    failure_mode: Literal["Open", "Closed"] = "Open"  # Global: when Redis cannot answer
    timeout: Duration = "50ms"  # Global: per Redis call


class FaultDelay(Spec):
    fixed_delay: Duration
    percentage: Annotated[float, Field(ge=0, le=100, strict=False)] = 100.0


class FaultAbort(Spec):
    http_status: Annotated[StrictInt, Field(ge=200, le=599)]
    percentage: Annotated[float, Field(ge=0, le=100, strict=False)] = 100.0


class FaultHeader(Spec):
    name: HeaderName
    value: HeaderValue


class FaultInjectionSpec(Spec):
    delay: FaultDelay | None = None
    abort: FaultAbort | None = None
    headers: tuple[FaultHeader, ...] = Field(default=(), max_length=16)  # all must match


class TrafficPolicySpec(Spec):
    target_refs: tuple[PolicyTargetRef, ...] = Field(min_length=1, max_length=16)
    rate_limit: RateLimitSpec | None = None
    fault_injection: FaultInjectionSpec | None = None
    retry: RetrySpec | None = None


class TrafficPolicyObject(Spec):
    api_version: Literal["turnout.dev/v1alpha1"]
    kind: Literal["TrafficPolicy"]
    metadata: ObjectMeta
    spec: TrafficPolicySpec
    status: dict[str, Any] | None = None


# --- turnout.dev Sandbox, RouteGroup --------------------------------------------------------


def _routing_key(v: str) -> str:
    if not valid_key(v):
        raise ValueError(
            f"{v!r} is not a valid routing key: 1-{MAX_KEY_LENGTH} letters, digits, '-', '_' or '.'"
        )
    return v


RoutingKey = Annotated[StrictStr, AfterValidator(_routing_key)]


class LocalTargetSpec(Spec):
    """An override served by a developer's machine through ``turnout connect``."""


class SandboxOverride(Spec):
    """A Backend whose endpoints keyed requests reach instead of the baseline's: listed
    ``endpoints``, or ``local`` (a ``turnout connect`` tunnel). Exactly one of the two."""

    backend: ObjectName
    endpoints: tuple[EndpointSpec, ...] = Field(default=(), max_length=256)
    local: LocalTargetSpec | None = None


class SandboxSpec(Spec):
    routing_key: RoutingKey | None = None  # generated when absent
    ttl: Duration | None = None  # deleted this long after creation
    description: Annotated[StrictStr, Field(max_length=1024)] | None = None
    overrides: tuple[SandboxOverride, ...] = Field(default=(), max_length=64)


class SandboxObject(Spec):
    api_version: Literal["turnout.dev/v1alpha1"]
    kind: Literal["Sandbox"]
    metadata: ObjectMeta
    spec: SandboxSpec
    status: dict[str, Any] | None = None


class RouteGroupMatch(Spec):
    labels: dict[StrictStr, StrictStr] = Field(min_length=1)


class RouteGroupSpec(Spec):
    """A key meaning "the overrides of every matching Sandbox at once"."""

    routing_key: RoutingKey | None = None  # generated when absent
    match: RouteGroupMatch
    description: Annotated[StrictStr, Field(max_length=1024)] | None = None


class RouteGroupObject(Spec):
    api_version: Literal["turnout.dev/v1alpha1"]
    kind: Literal["RouteGroup"]
    metadata: ObjectMeta
    spec: RouteGroupSpec
    status: dict[str, Any] | None = None


# --- turnout.dev SecurityPolicy, Consumer ---------------------------------------------------

# The JWS algorithms a provider may allow. ``none`` is never one of them, in any spelling.
JWT_ALGORITHMS: Final = frozenset(
    {
        "RS256",
        "RS384",
        "RS512",
        "PS256",
        "PS384",
        "PS512",
        "ES256",
        "ES384",
        "ES512",
        "EdDSA",
        "HS256",
        "HS384",
        "HS512",
    }
)
_LONG_UNITS: Final = {"d": 86400.0, "y": 365 * 86400.0}
_LONG_DURATION = re.compile(r"([0-9]{1,5})(d|y)")
_JWKS_URI = re.compile(r"https?://[^\s/?#@]+(?:[/?][^\s#]*)?")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
MIN_API_KEY_LENGTH: Final = 16


def parse_long_duration(text: str) -> float:
    """A GEP-2257 duration, or whole days/years (``180d``, ``1y`` = 365 days) for long
    lifetimes such as HSTS ``max-age``; seconds. Raises ``DurationError``."""
    match = _LONG_DURATION.fullmatch(text.strip())
    if match:
        return int(match[1]) * _LONG_UNITS[match[2]]
    return parse_duration(text)


def _long_duration(v: str) -> str:
    try:
        parse_long_duration(v)
    except DurationError as exc:
        raise ValueError(f"{exc} (or whole days / years: 180d, 1y)") from None
    return v


def _jwks_uri(v: str) -> str:
    if len(v) > 2048 or not _JWKS_URI.fullmatch(v):
        raise ValueError(f"{v!r} is not an http:// or https:// URL")
    return v


def _sha256_hex(v: str) -> str:
    v = v.lower()
    if not _SHA256_HEX.fullmatch(v):
        raise ValueError("sha256 must be 64 hexadecimal digits (the SHA-256 of the key)")
    return v


def _hash_plain_key(v: object) -> object:
    """``{key: "..."}`` becomes ``{sha256: "..."}`` at parse time: the plain key exists
    only in the file it was written in, never in the stored configuration."""
    if not isinstance(v, dict) or "key" not in v:
        return v
    if "sha256" in v:
        raise ValueError("give key or sha256, not both")
    key = v["key"]
    if not isinstance(key, str):
        raise ValueError("key must be a string")
    if len(key) < MIN_API_KEY_LENGTH or any(c.isspace() or not c.isprintable() for c in key):
        raise ValueError(
            f"an API key needs at least {MIN_API_KEY_LENGTH} printable characters without spaces"
        )
    rest = {k: x for k, x in v.items() if k != "key"}
    return {**rest, "sha256": hashlib.sha256(key.encode()).hexdigest()}


LongDuration = Annotated[StrictStr, AfterValidator(_long_duration)]
Flag = Annotated[bool, Field(strict=True)]
ShortText = Annotated[StrictStr, Field(min_length=1, max_length=256)]
LongText = Annotated[StrictStr, Field(min_length=1, max_length=2048)]


class RemoteJWKS(Spec):
    """Envoy Gateway's ``remoteJWKS``: fetched by each worker, cached ``cacheDuration``."""

    uri: Annotated[StrictStr, AfterValidator(_jwks_uri)]
    cache_duration: Duration = "300s"


class LocalJWKS(Spec):
    type: Literal["Inline"] = "Inline"
    inline: Annotated[StrictStr, Field(min_length=2, max_length=1_000_000)]


class ClaimToHeader(Spec):
    header: HeaderName
    claim: ShortText  # a top-level claim, or a dotted path into nested objects


class JWTHeaderSource(Spec):
    name: HeaderName
    value_prefix: Annotated[StrictStr, Field(max_length=64)] | None = None


class JWTExtractor(Spec):
    """Where a provider looks for the token; default: ``Authorization: Bearer <token>``."""

    headers: tuple[JWTHeaderSource, ...] = Field(default=(), max_length=8)
    cookies: tuple[ShortText, ...] = Field(default=(), max_length=8)
    params: tuple[ShortText, ...] = Field(default=(), max_length=8)


class JWTProviderSpec(Spec):
    name: Annotated[StrictStr, Field(min_length=1, max_length=253)]
    issuer: LongText | None = None
    audiences: tuple[LongText, ...] = Field(default=(), max_length=32)
    remote_jwks: Annotated[RemoteJWKS | None, Field(alias="remoteJWKS")] = None
    local_jwks: Annotated[LocalJWKS | None, Field(alias="localJWKS")] = None
    algorithms: tuple[Annotated[StrictStr, Field(min_length=1, max_length=16)], ...] = Field(
        default=("RS256",), min_length=1, max_length=16
    )
    clock_skew: Duration = "60s"
    claim_to_headers: tuple[ClaimToHeader, ...] = Field(default=(), max_length=16)
    extract_from: JWTExtractor | None = None


class JWTSpec(Spec):
    providers: tuple[JWTProviderSpec, ...] = Field(min_length=1, max_length=8)
    optional: Flag = False  # a request without any token passes (anonymous)


class APIKeySource(Spec):
    """One place to look for an API key: exactly one of the three."""

    header: HeaderName | None = None
    query: ShortText | None = None
    cookie: ShortText | None = None


class APIKeyAuthSpec(Spec):
    extract_from: tuple[APIKeySource, ...] = Field(default=(), max_length=8)  # x-api-key
    forward_consumer_header: HeaderName | None = None


class HtpasswdUsers(Spec):
    inline: Annotated[StrictStr, Field(min_length=1, max_length=1_000_000)]


class BasicAuthSpec(Spec):
    users: HtpasswdUsers


class JWTClaimMatch(Spec):
    name: ShortText
    values: tuple[LongText, ...] = Field(min_length=1, max_length=64)


class JWTPrincipal(Spec):
    provider: Annotated[StrictStr, Field(min_length=1, max_length=253)] | None = None
    claims: tuple[JWTClaimMatch, ...] = Field(default=(), max_length=16)
    scopes: tuple[ShortText, ...] = Field(default=(), max_length=64)


class AuthorizationPrincipal(Spec):
    """Who a rule is about; every field given must match (within a list: any entry)."""

    consumers: tuple[ObjectName, ...] = Field(default=(), max_length=256)
    groups: tuple[ShortText, ...] = Field(default=(), max_length=64)
    jwt: JWTPrincipal | None = None
    client_cidrs: Annotated[tuple[ShortText, ...], Field(alias="clientCIDRs", max_length=1024)] = ()


class AuthorizationRule(Spec):
    name: ShortText | None = None
    action: Literal["Allow", "Deny"]
    principal: AuthorizationPrincipal


class AuthorizationSpec(Spec):
    default_action: Literal["Allow", "Deny"] = "Deny"
    rules: tuple[AuthorizationRule, ...] = Field(default=(), max_length=256)


class IPRulesSpec(Spec):
    allow: tuple[ShortText, ...] = Field(default=(), max_length=4096)
    deny: tuple[ShortText, ...] = Field(default=(), max_length=4096)


class XForwardedForSpec(Spec):
    num_trusted_hops: Annotated[StrictInt, Field(ge=1, le=16)] = 1


class ClientIPDetectionSpec(Spec):
    x_forwarded_for: XForwardedForSpec | None = None


class CORSSpec(Spec):
    allow_origins: tuple[ShortText, ...] = Field(min_length=1, max_length=256)
    allow_methods: tuple[ShortText, ...] = Field(default=(), max_length=32)
    allow_headers: tuple[ShortText, ...] = Field(default=(), max_length=64)
    expose_headers: tuple[ShortText, ...] = Field(default=(), max_length=64)
    max_age: Duration | None = None
    allow_credentials: Flag = False


class HSTSSpec(Spec):
    max_age: LongDuration = "365d"
    include_sub_domains: Flag = False
    preload: Flag = False


class SecurityHeadersSpec(Spec):
    hsts: HSTSSpec | None = None
    frame_options: Literal["DENY", "SAMEORIGIN"] | None = None
    content_type_options: Flag = False  # X-Content-Type-Options: nosniff
    referrer_policy: (
        Literal[
            "no-referrer",
            "no-referrer-when-downgrade",
            "origin",
            "origin-when-cross-origin",
            "same-origin",
            "strict-origin",
            "strict-origin-when-cross-origin",
            "unsafe-url",
        ]
        | None
    ) = None
    content_security_policy: Annotated[HeaderValue, Field(max_length=4096)] | None = None


class ClientCertificateAuthSpec(Spec):
    """Authenticate by the client certificate the listener verified (``frontendValidation``):
    the principal is its subject's common name (a Consumer of that name lends its groups)."""


class SecurityPolicySpec(Spec):
    """Envoy Gateway's ``SecurityPolicy`` fields (``jwt``, ``apiKeyAuth``, ``basicAuth``,
    ``authorization``, ``cors``) plus client certificates, IP rules and security response
    headers."""

    target_refs: tuple[PolicyTargetRef, ...] = Field(min_length=1, max_length=16)
    client_certificate: ClientCertificateAuthSpec | None = None
    jwt: JWTSpec | None = None
    api_key_auth: APIKeyAuthSpec | None = None
    basic_auth: BasicAuthSpec | None = None
    authorization: AuthorizationSpec | None = None
    ip_rules: IPRulesSpec | None = None
    client_ip_detection: Annotated[
        ClientIPDetectionSpec | None, Field(alias="clientIPDetection")
    ] = None
    cors: CORSSpec | None = None
    response_headers: SecurityHeadersSpec | None = None


class SecurityPolicyObject(Spec):
    api_version: Literal["turnout.dev/v1alpha1"]
    kind: Literal["SecurityPolicy"]
    metadata: ObjectMeta
    spec: SecurityPolicySpec
    status: dict[str, Any] | None = None


class ConsumerAPIKey(Spec):
    sha256: Annotated[StrictStr, AfterValidator(_sha256_hex)]
    expires_at: Annotated[StrictStr, AfterValidator(_timestamp)] | None = None


class ConsumerSpec(Spec):
    """An API client: its keys (several at once, for rotation; stored as SHA-256 only)
    and the groups authorization rules can name."""

    api_keys: tuple[Annotated[ConsumerAPIKey, BeforeValidator(_hash_plain_key)], ...] = Field(
        default=(), max_length=16
    )
    groups: tuple[ShortText, ...] = Field(default=(), max_length=64)
    description: Annotated[StrictStr, Field(max_length=1024)] | None = None


class ConsumerObject(Spec):
    api_version: Literal["turnout.dev/v1alpha1"]
    kind: Literal["Consumer"]
    metadata: ObjectMeta
    spec: ConsumerSpec
    status: dict[str, Any] | None = None


# Every object model, for the type checker (a union cannot be built from the registry
# statically); the registry test checks it names exactly the registered models.
ConfigObject = (
    NamespaceObject
    | SecretObject
    | GatewayClassObject
    | GatewayObject
    | HTTPRouteObject
    | GRPCRouteObject
    | TCPRouteObject
    | TLSRouteObject
    | BackendObject
    | TrafficPolicyObject
    | SandboxObject
    | RouteGroupObject
    | SecurityPolicyObject
    | ConsumerObject
)


def object_models(
    registry: KindRegistry = REGISTRY, scope: Mapping[str, Any] | None = None
) -> dict[str, type[Spec]]:
    """kind -> object model, in registry order: each entry names its model, a class of this
    module (or of ``scope``); a missing one fails at import. The apiVersion is checked by
    each model's Literal, which tests/unit/config/test_kinds_registry.py holds to the
    registry."""
    names = {**globals(), **(scope or {})}
    return {kind: names[entry.model] for kind, entry in registry.items()}


KINDS: Final[dict[str, type[Spec]]] = object_models()

# Kinds users commonly paste from a cluster, with the advice to give instead.
FOREIGN_KINDS: Final[dict[str, str]] = {
    "Service": (
        "Service is a Kubernetes object; outside a cluster declare a turnout.dev/v1alpha1 "
        "Backend with the same name and namespace (backendRefs of kind Service resolve to it)"
    ),
    "Deployment": "Deployment is a Kubernetes workload, not gateway configuration",
    "ConfigMap": "ConfigMap is not gateway configuration",
    "UDPRoute": "UDPRoute is not supported",
    "ReferenceGrant": "ReferenceGrant is not supported yet",
}
