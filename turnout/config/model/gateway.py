"""The ``GatewayClass`` and ``Gateway`` kinds: listeners, ``allowedRoutes``, listener TLS
(certificate Secrets, the ``tls.options`` keys naming PEM files, client certificate
validation), addresses, and the ``turnout.dev`` annotations of L4 listeners."""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import Field, StrictStr

from turnout.config.model.base import (
    GATEWAY_GROUP,
    Hostname,
    ObjectMeta,
    ObjectName,
    PortNumber,
    SectionName,
    Spec,
)


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


# Gateway annotations for its L4 (TCP and TLS passthrough) listeners: the Gateway API has
# no field for these, so they are a ``turnout.dev`` extension (see docs/l4.md).
L4_IDLE_TIMEOUT_ANNOTATION: Final = "turnout.dev/l4-idle-timeout"
L4_MAX_CONNECTIONS_ANNOTATION: Final = "turnout.dev/l4-max-connections"
# A Gateway's own trace sampling, in place of ``turnout serve --trace-sample-ratio`` /
# ``--trace-keep-errors`` for the requests it receives (docs/observability.md).
TRACE_SAMPLE_RATIO_ANNOTATION: Final = "turnout.dev/trace-sample-ratio"
TRACE_KEEP_ERRORS_ANNOTATION: Final = "turnout.dev/trace-keep-errors"
TRACE_BOOLEANS: Final = {"true": True, "false": False}


def trace_ratio(value: str) -> float:
    """A ``turnout.dev/trace-sample-ratio`` value: a number from 0 to 1 (ValueError)."""
    ratio = float(value)
    if not 0.0 <= ratio <= 1.0:  # also refuses nan
        raise ValueError("must be a number from 0 to 1")
    return ratio
