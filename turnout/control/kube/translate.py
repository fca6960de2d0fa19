"""Cluster objects → the manifests Turnout validates and serves (pure functions, no I/O).

What is ours: GatewayClasses whose ``spec.controllerName`` is our controller name, the
Gateways of those classes, and the routes with a ``parentRef`` to one of those Gateways
(parentRefs to other implementations' Gateways are dropped from our copy, so they neither
fail validation nor get status from us). Secrets are kept when one of our Gateways names
them; a cross-namespace certificate needs a ReferenceGrant, as the Gateway API says, and
is then copied into the Gateway's namespace. Namespaces are kept for their labels
(``allowedRoutes.namespaces.selector``). Turnout's own kinds (CRDs) are taken as they
are. Every object loses ``status`` and the metadata the server maintains, except
``creationTimestamp`` (route precedence) and ``generation`` (status ``observedGeneration``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from turnout.config.kinds import GATEWAY_API_GROUP, KINDS
from turnout.control.kube.services import Objects, ServiceResolver, granted

DEFAULT_CONTROLLER = "turnout.dev/gateway-controller"
ROUTE_KINDS = tuple(e.kind for e in KINDS.values() if e.listener_protocols)
KEPT_METADATA = ("name", "namespace", "labels", "annotations", "creationTimestamp", "generation")
# kubectl's copy of the whole object: large, and nothing here reads it
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


@dataclass(slots=True)
class Translation:
    manifests: list[dict[str, Any]] = field(default_factory=list)
    classes: list[dict[str, Any]] = field(default_factory=list)  # our GatewayClasses
    gateways: list[dict[str, Any]] = field(default_factory=list)  # our Gateways (as stored)
    routes: list[dict[str, Any]] = field(default_factory=list)  # routes with a parent of ours
    own: list[dict[str, Any]] = field(default_factory=list)  # objects of Turnout's CRDs
    # route (kind, ns, name) -> its parentRefs that point at our Gateways (for status)
    parents: dict[tuple[str, str, str], list[dict[str, Any]]] = field(default_factory=dict)


def clean(obj: dict[str, Any]) -> dict[str, Any]:
    """A deep copy without status and server-maintained metadata."""
    out = {k: copy.deepcopy(v) for k, v in obj.items() if k not in ("status",)}
    meta = obj.get("metadata") or {}
    kept = {k: copy.deepcopy(meta[k]) for k in KEPT_METADATA if k in meta}
    annotations = kept.get("annotations")
    if isinstance(annotations, dict):
        annotations.pop(LAST_APPLIED, None)
        if not annotations:
            kept.pop("annotations")
    if not kept.get("namespace"):
        kept.pop("namespace", None)
    out["metadata"] = kept
    return out


def _is_gateway_ref(ref: dict[str, Any]) -> bool:
    group = ref.get("group", GATEWAY_API_GROUP)
    return bool(group == GATEWAY_API_GROUP and ref.get("kind", "Gateway") == "Gateway")


def translate(cluster: dict[str, Objects], controller: str = DEFAULT_CONTROLLER) -> Translation:
    out = Translation()
    classes = {
        name: gc
        for (_, name), gc in sorted(cluster.get("GatewayClass", {}).items())
        if (gc.get("spec") or {}).get("controllerName") == controller
    }
    out.classes = list(classes.values())
    out.manifests.extend(clean(gc) for gc in out.classes)
    grants = cluster.get("ReferenceGrant", {})
    secrets = cluster.get("Secret", {})
    ours: set[tuple[str, str]] = set()
    wanted_secrets: dict[tuple[str, str], dict[str, Any]] = {}
    for (ns, name), gw in sorted(cluster.get("Gateway", {}).items()):
        if (gw.get("spec") or {}).get("gatewayClassName") not in classes:
            continue
        ours.add((ns, name))
        out.gateways.append(gw)
        mine = clean(gw)
        for listener in (mine.get("spec") or {}).get("listeners") or []:
            for ref in (listener.get("tls") or {}).get("certificateRefs") or []:
                _take_secret(ref, ns, secrets, grants, wanted_secrets)
        out.manifests.append(mine)
    out.manifests.extend(wanted_secrets.values())
    resolver = ServiceResolver(cluster.get("Service", {}), cluster.get("EndpointSlice", {}), grants)
    for kind in ROUTE_KINDS:
        for (ns, name), route in sorted(cluster.get(kind, {}).items()):
            refs = (route.get("spec") or {}).get("parentRefs") or []
            mine_refs = [
                r
                for r in refs
                if _is_gateway_ref(r) and (str(r.get("namespace") or ns), r.get("name")) in ours
            ]
            if not mine_refs:
                continue
            out.routes.append(route)
            out.parents[(kind, ns, name)] = mine_refs
            copied = clean(route)
            copied["spec"]["parentRefs"] = copy.deepcopy(mine_refs)
            resolver.rewrite_route(copied)
            out.manifests.append(copied)
    out.manifests.extend(resolver.backends.values())
    for (_, _name), namespace in sorted(cluster.get("Namespace", {}).items()):
        meta = namespace.get("metadata") or {}
        out.manifests.append(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": meta.get("name"), "labels": dict(meta.get("labels") or {})},
            }
        )
    for kind, objects in sorted(cluster.items()):
        if kind.startswith("turnout.dev/"):
            out.own.extend(obj for _, obj in sorted(objects.items()))
            out.manifests.extend(clean(obj) for _, obj in sorted(objects.items()))
    return out


def _take_secret(
    ref: dict[str, Any],
    gateway_ns: str,
    secrets: Objects,
    grants: Objects,
    wanted: dict[tuple[str, str], dict[str, Any]],
) -> None:
    if (ref.get("group") or "") != "" or (ref.get("kind") or "Secret") != "Secret":
        return
    name = str(ref.get("name", ""))
    secret_ns = str(ref.get("namespace") or gateway_ns)
    secret = secrets.get((secret_ns, name))
    if secret is None:
        return  # validation reports the missing certificate
    copied = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": secret_ns},
        "type": secret.get("type", "Opaque"),
        "data": dict(secret.get("data") or {}),
    }
    if secret_ns != gateway_ns:
        if not granted(grants, "Gateway", gateway_ns, "", "Secret", secret_ns, name):
            return  # not copied: validation names the missing ReferenceGrant
        # the copy lives beside the Gateway; the listener names it there
        copied["metadata"] = {"name": f"{name}.{secret_ns}", "namespace": gateway_ns}
        ref["name"] = f"{name}.{secret_ns}"
        ref.pop("namespace", None)
    wanted[(copied["metadata"]["namespace"], copied["metadata"]["name"])] = copied
