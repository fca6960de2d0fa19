"""The ``SecurityPolicy`` kind (turnout.dev: JWT, API keys, basic auth, client
certificates, authorization, IP rules, CORS, security response headers) and the
``Consumer`` kind (an API client's hashed keys and groups)."""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, BeforeValidator, Field, StrictBool, StrictInt, StrictStr

from turnout.config.model.base import (
    Duration,
    HeaderName,
    HeaderValue,
    ObjectMeta,
    ObjectName,
    Spec,
    Timestamp,
)
from turnout.config.model.traffic import PolicyTargetRef
from turnout.core.durations import DurationError, parse_duration

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


class BruteForceSpec(Spec):
    """fail2ban's ``maxretry`` / ``findtime`` / ``bantime``: a client address that fails
    authentication ``maxFailures`` times within ``window`` is refused for ``banFor``.
    ``byConsumer`` (basicAuth): a user whose password is refused that often is locked
    for ``banFor`` too, from every address."""

    max_failures: Annotated[StrictInt, Field(ge=1, le=10_000)] = 5
    window: Duration = "1m"
    ban_for: Duration = "10m"
    by_consumer: bool = False


class ExtAuthBackendRef(Spec):
    group: StrictStr = ""
    kind: StrictStr = "Service"
    name: ObjectName
    namespace: ObjectName | None = None
    port: Annotated[StrictInt, Field(ge=1, le=65535)] | None = None


class ExtAuthHTTPSpec(Spec):
    """Envoy Gateway's ``extAuth.http``: the authorization service (a Backend) and the
    prefix of the path the check is sent to."""

    backend_ref: ExtAuthBackendRef
    path: Annotated[StrictStr, Field(max_length=1024)] = ""
    headers_to_backend: tuple[HeaderName, ...] = Field(default=(), max_length=32)


class ExtAuthCacheSpec(Spec):
    """Turnout's: keep decisions (allow and deny, never errors) for ``ttl``, per worker."""

    ttl: Duration = "30s"
    max_entries: Annotated[StrictInt, Field(ge=1, le=1_000_000)] = 10_000


class ExtAuthSpec(Spec):
    """External authorization (Envoy Gateway's ``extAuth``, HTTP only), plus Turnout's
    ``timeout`` and decision ``cache``."""

    http: ExtAuthHTTPSpec
    headers_to_ext_auth: tuple[HeaderName, ...] = Field(default=(), max_length=32)
    fail_open: StrictBool = False
    timeout: Duration = "1s"
    cache: ExtAuthCacheSpec | None = None


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
    brute_force: BruteForceSpec | None = None  # bans after repeated failed authentications
    ext_auth: ExtAuthSpec | None = None  # an HTTP authorization service per request


class SecurityPolicyObject(Spec):
    api_version: Literal["turnout.dev/v1alpha1"]
    kind: Literal["SecurityPolicy"]
    metadata: ObjectMeta
    spec: SecurityPolicySpec
    status: dict[str, Any] | None = None


class ConsumerAPIKey(Spec):
    sha256: Annotated[StrictStr, AfterValidator(_sha256_hex)]
    expires_at: Timestamp | None = None


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
