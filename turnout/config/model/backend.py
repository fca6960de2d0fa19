"""The ``Backend`` kind (turnout.dev): endpoints and the policy blocks that may sit inline
on it — load balancer, session persistence, health checks (active and passive), circuit
breaker, retry, timeouts, connection pool and upstream TLS."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    StrictInt,
    StrictStr,
    model_validator,
)

from turnout.config.model.base import (
    Count,
    Duration,
    HeaderName,
    Hostname,
    ObjectMeta,
    Percent,
    Spec,
)
from turnout.config.model.gateway import SecretObjectReference
from turnout.core.netaddr import AddressError, parse_address


def _endpoint_address(v: str) -> str:
    try:
        # A bare host is allowed here: its port comes from the referencing backendRef.
        parse_address(v, allow_missing_port=True)
    except AddressError as exc:
        raise ValueError(str(exc)) from None
    return v


class EndpointSpec(Spec):
    """One upstream: ``host:port``, ``[v6]:port``, ``unix:/path``, or a bare host whose port
    comes from the referencing ``backendRef``."""

    address: Annotated[StrictStr, AfterValidator(_endpoint_address)]
    weight: Annotated[StrictInt, Field(ge=0, le=1_000_000)] = 1


def _lb_shorthand(v: object) -> object:
    return {"type": v} if isinstance(v, str) else v


def _lb_type(v: str) -> str:
    return "RoundRobin" if v == "round_robin" else v  # the spelling of the first release


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


def _dns_server(v: str) -> str:
    try:
        parse_address(v, allow_missing_port=True)
    except AddressError as exc:
        raise ValueError(str(exc)) from None
    return v


class DiscoverySpec(Spec):
    """Endpoints from a DNS SRV record, looked up by the supervisor every ``refresh``
    (never on the request path): the lowest-priority targets, SRV weight as endpoint weight."""

    dns_srv: Annotated[
        StrictStr,
        Field(
            alias="dnsSRV",
            min_length=1,
            max_length=253,
            pattern=r"^[A-Za-z0-9_]([-A-Za-z0-9_]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([-A-Za-z0-9_]*[A-Za-z0-9_])?)*\.?$",
        ),
    ]
    refresh: Duration = "30s"
    timeout: Duration = "2s"  # for the whole lookup (SRV and the targets' addresses)
    server: Annotated[StrictStr, AfterValidator(_dns_server)] | None = None  # default: system


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
    discovery: DiscoverySpec | None = None

    @model_validator(mode="after")
    def _one_source_of_endpoints(self) -> BackendSpec:
        if self.discovery is not None and self.endpoints:
            raise ValueError(
                "endpoints and discovery are mutually exclusive: discovery replaces the "
                "endpoint list with what DNS returns"
            )
        return self


class BackendObject(Spec):
    api_version: Literal["turnout.dev/v1alpha1"]
    kind: Literal["Backend"]
    metadata: ObjectMeta
    spec: BackendSpec
    status: dict[str, Any] | None = None
