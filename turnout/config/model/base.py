"""What every object model shares: the ``Spec`` base (camelCase aliases, frozen, unknown
fields are errors), the validated scalar types (names, hostnames, header names and values,
durations, ports, timestamps, percentages, counts) and ``ObjectMeta``.

Scalars are strict (``"80"`` is not a port). Durations stay strings in the model (they
round-trip through the admin API unchanged) and are checked here, converted to seconds when
the data plane compiles a snapshot.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StrictStr
from pydantic.alias_generators import to_camel

from turnout.config.kinds import GATEWAY_API_GROUP
from turnout.core.durations import DurationError, parse_duration

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


ObjectName = Annotated[StrictStr, AfterValidator(_object_name)]
Hostname = Annotated[StrictStr, AfterValidator(_hostname)]
SectionName = Annotated[StrictStr, AfterValidator(_section_name)]
HeaderName = Annotated[StrictStr, AfterValidator(_header_name)]
HeaderValue = Annotated[StrictStr, AfterValidator(_header_value)]
Duration = Annotated[StrictStr, AfterValidator(_duration)]
PortNumber = Annotated[StrictInt, Field(ge=1, le=65535)]
HTTPMethod = Literal["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]
Timestamp = Annotated[StrictStr, AfterValidator(_timestamp)]
Percent = Annotated[StrictInt, Field(ge=0, le=100)]
Count = Annotated[StrictInt, Field(ge=1, le=1_000_000)]


# --- metadata -------------------------------------------------------------------------


class ObjectMeta(Spec):
    name: ObjectName
    namespace: ObjectName = "default"
    labels: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    annotations: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    # Present in manifests exported from a cluster; accepted, only creationTimestamp is used
    # (Gateway API route precedence prefers the oldest route).
    creation_timestamp: Timestamp | None = None
    resource_version: StrictStr | None = None
    generation: StrictInt | None = None
    uid: StrictStr | None = None
    managed_fields: list[Any] | None = None
