"""Which listeners each route attaches to, following the Gateway API rules.

A ``parentRef`` picks a Gateway (by namespace and name) and optionally one listener by
``sectionName`` and/or ``port``. A listener accepts the route when its ``allowedRoutes``
admits the route's kind and namespace (``Same``, ``All`` or a label ``Selector`` over
Namespace labels, including the implicit ``kubernetes.io/metadata.name``), and when the
listener's hostname intersects the route's hostnames. The result lists, per attachment,
the hostnames the route serves there; refusals carry the Gateway API reason so status
and logs can explain them.
"""

from __future__ import annotations

from dataclasses import dataclass

from turnout.config.hostnames import effective_hostnames
from turnout.config.kinds import route_kinds_by_protocol
from turnout.config.model.base import GATEWAY_GROUP
from turnout.config.model.gateway import GatewayObject, LabelSelector, Listener
from turnout.config.model.routes import (
    HTTPRouteObject,
    ParentReference,
    TCPRouteObject,
    TLSRouteObject,
)

# Route kinds each listener protocol accepts (and admits when allowedRoutes.kinds is empty)
ROUTE_KINDS_BY_PROTOCOL: dict[str, tuple[str, ...]] = route_kinds_by_protocol()
# Any route object attach_route takes
AnyRoute = HTTPRouteObject | TCPRouteObject | TLSRouteObject

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True, slots=True)
class Attachment:
    gateway: GatewayObject
    listener: Listener
    hostnames: tuple[str, ...] | None  # None: every host the listener accepts


@dataclass(frozen=True, slots=True)
class Refusal:
    parent_index: int
    reason: str  # NoMatchingParent | NotAllowedByListeners | NoMatchingListenerHostname | ...
    message: str


@dataclass(frozen=True, slots=True)
class RouteAttachments:
    attached: tuple[Attachment, ...]
    refused: tuple[Refusal, ...]


def namespace_labels(namespace: str, declared: dict[str, dict[str, str]]) -> dict[str, str]:
    labels = dict(declared.get(namespace, {}))
    labels.setdefault(NAMESPACE_NAME_LABEL, namespace)
    return labels


def selector_matches(selector: LabelSelector, labels: dict[str, str]) -> bool:
    for key, value in selector.match_labels.items():
        if labels.get(key) != value:
            return False
    for req in selector.match_expressions:
        present = req.key in labels
        if req.operator == "In" and (not present or labels[req.key] not in req.values):
            return False
        if req.operator == "NotIn" and present and labels[req.key] in req.values:
            return False
        if req.operator == "Exists" and not present:
            return False
        if req.operator == "DoesNotExist" and present:
            return False
    return True


def listener_allows(
    gateway: GatewayObject,
    listener: Listener,
    route_kind: str,
    route_namespace: str,
    namespaces: dict[str, dict[str, str]],
) -> bool:
    allowed = listener.allowed_routes
    # A route kind the listener's protocol cannot carry never attaches, whatever
    # allowedRoutes lists (validate reports such lists as errors).
    if route_kind not in ROUTE_KINDS_BY_PROTOCOL.get(listener.protocol, ()):
        return False
    if allowed.kinds and not any(
        k.kind == route_kind and k.group == GATEWAY_GROUP for k in allowed.kinds
    ):
        return False
    source = allowed.namespaces.from_
    if source == "All":
        return True
    if source == "Same":
        return route_namespace == gateway.metadata.namespace
    selector = allowed.namespaces.selector
    if selector is None:
        return False
    return selector_matches(selector, namespace_labels(route_namespace, namespaces))


def attach_route(
    route: AnyRoute,
    gateways: dict[tuple[str, str], GatewayObject],
    namespaces: dict[str, dict[str, str]],
) -> RouteAttachments:
    attached: list[Attachment] = []
    refused: list[Refusal] = []
    seen: set[tuple[str, str, str]] = set()
    for index, ref in enumerate(route.spec.parent_refs):
        outcome = _attach_one(route, index, ref, gateways, namespaces)
        if isinstance(outcome, Refusal):
            refused.append(outcome)
            continue
        for att in outcome:
            key = (att.gateway.metadata.namespace, att.gateway.metadata.name, att.listener.name)
            if key not in seen:
                seen.add(key)
                attached.append(att)
    return RouteAttachments(tuple(attached), tuple(refused))


def _attach_one(
    route: AnyRoute,
    index: int,
    ref: ParentReference,
    gateways: dict[tuple[str, str], GatewayObject],
    namespaces: dict[str, dict[str, str]],
) -> list[Attachment] | Refusal:
    if ref.group != GATEWAY_GROUP or ref.kind != "Gateway":
        return Refusal(
            index, "NoMatchingParent", f"parent kind {ref.group}/{ref.kind} is not a Gateway"
        )
    ns = ref.namespace or route.metadata.namespace
    gateway = gateways.get((ns, ref.name))
    if gateway is None:
        return Refusal(index, "NoMatchingParent", f"Gateway {ns}/{ref.name} does not exist")
    candidates = [
        lst
        for lst in gateway.spec.listeners
        if (ref.section_name is None or lst.name == ref.section_name)
        and (ref.port is None or lst.port == ref.port)
    ]
    if not candidates:
        return Refusal(index, "NoMatchingParent", "no listener matches sectionName/port")
    allowed = [
        lst
        for lst in candidates
        if listener_allows(gateway, lst, route.kind, route.metadata.namespace, namespaces)
    ]
    if not allowed:
        return Refusal(index, "NotAllowedByListeners", "the listeners' allowedRoutes refuse it")
    out: list[Attachment] = []
    # TCP listeners and TCPRoutes have no hostnames (a TCP listener's hostname is ignored).
    route_hosts = () if isinstance(route, TCPRouteObject) else route.spec.hostnames
    for lst in allowed:
        if lst.protocol == "TCP":
            out.append(Attachment(gateway, lst, None))
            continue
        names = effective_hostnames(lst.hostname, route_hosts)
        if names is not None and not names:
            continue
        out.append(Attachment(gateway, lst, None if names is None else tuple(names)))
    if not out:
        return Refusal(
            index, "NoMatchingListenerHostname", "no listener hostname intersects the route's"
        )
    return out
