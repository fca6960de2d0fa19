"""Typed specs for every object Turnout reads (pydantic v2, strict, unknown fields rejected),
one module per area:

- ``base``: the ``Spec`` base, validated scalar types, ``ObjectMeta``;
- ``kubernetes``: ``Namespace``, ``Secret``;
- ``gateway``: ``GatewayClass``, ``Gateway`` (listeners, listener TLS, L4 annotations);
- ``routes``: ``HTTPRoute``, ``GRPCRoute``, ``TCPRoute``, ``TLSRoute``;
- ``backend``: ``Backend`` and its policy blocks (load balancer, health checks, circuit
  breaker, retry, upstream TLS);
- ``traffic``: ``TrafficPolicy`` and ``PolicyTargetRef``;
- ``security``: ``SecurityPolicy``, ``Consumer``;
- ``sandbox``: ``Sandbox``, ``RouteGroup``;
- ``remediation``: ``Runbook``, ``Mitigation``;
- ``release``, ``environment``: ``Release``, ``Environment``.
- ``plugins``: ``FilterPlugin``.

Import a model from the module that defines it. This package itself holds what spans every
kind: ``ConfigObject`` (the union of all object models), ``KINDS`` (kind -> model, resolved
from the names in ``config.kinds``), and ``FOREIGN_KINDS``. It imports every object model to
build them, so ``object_models`` finds each class the registry names in this module's
namespace; it re-exports nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from turnout.config.kinds import KINDS as REGISTRY
from turnout.config.kinds import KindRegistry
from turnout.config.model.backend import BackendObject
from turnout.config.model.base import Spec
from turnout.config.model.environment import EnvironmentObject
from turnout.config.model.gateway import GatewayClassObject, GatewayObject
from turnout.config.model.kubernetes import NamespaceObject, SecretObject
from turnout.config.model.plugins import FilterPluginObject
from turnout.config.model.release import ReleaseObject
from turnout.config.model.remediation import MitigationObject, RunbookObject
from turnout.config.model.routes import (
    GRPCRouteObject,
    HTTPRouteObject,
    TCPRouteObject,
    TLSRouteObject,
)
from turnout.config.model.sandbox import RouteGroupObject, SandboxObject
from turnout.config.model.security import ConsumerObject, SecurityPolicyObject
from turnout.config.model.traffic import TrafficPolicyObject

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
    | RunbookObject
    | MitigationObject
    | ReleaseObject
    | EnvironmentObject
    | FilterPluginObject
)


def object_models(
    registry: KindRegistry = REGISTRY, scope: Mapping[str, Any] | None = None
) -> dict[str, type[Spec]]:
    """kind -> object model, in registry order: each entry names its model, a class this
    package imports (or one of ``scope``); a missing one fails at import. The apiVersion is
    checked by each model's Literal, which tests/unit/config/test_kinds_registry.py holds to
    the registry."""
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
