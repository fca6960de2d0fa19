"""The routing-key kinds (turnout.dev): ``Sandbox`` (per-Backend overrides that keyed
requests reach) and ``RouteGroup`` (the overrides of every matching Sandbox at once)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StrictStr

from turnout.config.model.backend import EndpointSpec
from turnout.config.model.base import Duration, ObjectMeta, ObjectName, Spec
from turnout.core.routing_keys import MAX_LENGTH as MAX_KEY_LENGTH
from turnout.core.routing_keys import valid_key


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
