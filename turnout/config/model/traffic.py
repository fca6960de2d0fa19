"""The ``TrafficPolicy`` kind (turnout.dev): rate limits, fault injection and retry, and
``PolicyTargetRef``, what a policy (this one or a ``SecurityPolicy``) attaches to."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StrictInt, StrictStr

from turnout.config.model.backend import RetrySpec
from turnout.config.model.base import (
    Count,
    Duration,
    HeaderName,
    HeaderValue,
    ObjectMeta,
    ObjectName,
    SectionName,
    Spec,
)


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


_SIZE_UNITS: dict[str, int] = {"": 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}
BodyLimit = (
    Annotated[StrictInt, Field(ge=1)]
    | Annotated[StrictStr, Field(pattern=r"^[1-9][0-9]{0,12}(Ki|Mi|Gi)?$")]
)


def body_limit_bytes(value: int | str) -> int:
    """``requestBodyLimit`` in bytes: an integer, or a string like ``512Ki`` / ``10Mi``."""
    if isinstance(value, int):
        return value
    digits = value.rstrip("KMGi")
    return int(digits) * _SIZE_UNITS[value[len(digits) :]]


class CacheKeySpec(Spec):
    """What the cache key is made of (besides the method and the Vary-selected headers)."""

    host: bool = True
    path: bool = True
    query: bool = True
    headers: tuple[HeaderName, ...] = Field(default=(), max_length=16)
    consumer: bool = False  # the authenticated Consumer (a SecurityPolicy must set it)


class CacheSpec(Spec):
    """Response caching (RFC 9111, a shared cache): a per-worker memory tier bounded in
    bytes, and with ``redis: true`` a shared Redis tier behind it."""

    memory_size: BodyLimit = "64Mi"  # per worker, bodies and headers counted
    max_object_size: BodyLimit = "1Mi"  # larger responses pass uncached
    default_ttl: Duration | None = None  # heuristic freshness when the response gives none
    methods: tuple[Literal["GET", "HEAD"], ...] = ("GET", "HEAD")
    statuses: tuple[Annotated[StrictInt, Field(ge=200, le=599)], ...] = Field(
        default=(200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501), max_length=32
    )
    key: CacheKeySpec = CacheKeySpec()
    redis: bool = False  # the shared tier (needs --redis)
    redis_timeout: Duration = "50ms"  # per Redis call; beyond it, memory or upstream
    cache_authorized: bool = False  # store responses to requests with Authorization
    cache_set_cookie: bool = False  # store responses carrying Set-Cookie (sent on hits too)
    tags_header: HeaderName = "cache-tag"  # the response field naming the purge tags
    coalesce: bool = True  # one upstream fetch for concurrent misses of a key
    coalesce_timeout: Duration = "10s"  # how long a follower waits for the leader


class RequestDecompressionSpec(Spec):
    """Decode request bodies sent with Content-Encoding gzip, br or zstd."""

    max_size: BodyLimit = "10Mi"  # decoded; beyond it the request is refused (413)


class CompressionSpec(Spec):
    """Response compression chosen by Accept-Encoding (docs/caching.md#compression)."""

    algorithms: tuple[Literal["zstd", "br", "gzip"], ...] = Field(
        default=("zstd", "br", "gzip"), min_length=1, max_length=3
    )  # the gateway's order of preference among codings the client weighs equally
    content_types: tuple[
        Annotated[StrictStr, Field(pattern=r"^[a-z0-9.+-]+/([a-z0-9.+-]+|\*)$")], ...
    ] = (
        "text/*",
        "application/json",
        "application/javascript",
        "application/xml",
        "application/problem+json",
        "image/svg+xml",
    )
    min_size: BodyLimit = 1024  # a smaller Content-Length is sent as it is
    gzip_level: Annotated[StrictInt, Field(ge=1, le=9)] = 6
    brotli_quality: Annotated[StrictInt, Field(ge=0, le=11)] = 4
    zstd_level: Annotated[StrictInt, Field(ge=1, le=19)] = 3
    request_decompression: RequestDecompressionSpec | None = None


class TrafficPolicySpec(Spec):
    target_refs: tuple[PolicyTargetRef, ...] = Field(min_length=1, max_length=16)
    rate_limit: RateLimitSpec | None = None
    fault_injection: FaultInjectionSpec | None = None
    retry: RetrySpec | None = None
    # the largest request body the targets accept (413 beyond it), below the gateway's
    # own --max-body-bytes
    request_body_limit: BodyLimit | None = None
    cache: CacheSpec | None = None  # response caching (docs/caching.md)
    compression: CompressionSpec | None = None  # response compression (docs/caching.md)


class TrafficPolicyObject(Spec):
    api_version: Literal["turnout.dev/v1alpha1"]
    kind: Literal["TrafficPolicy"]
    metadata: ObjectMeta
    spec: TrafficPolicySpec
    status: dict[str, Any] | None = None
