"""Services → Backends: a backendRef of kind Service resolves to its ready endpoints.

For every ``backendRef`` (and mirror ``backendRef``) of kind ``Service`` the route is
rewritten to name a synthesized ``turnout.dev`` ``Backend`` in the route's namespace,
called ``<service>.<namespace>.<port>`` (dots make it a name no Service can have, so it
never collides with a real Backend). Its endpoints are the EndpointSlice endpoints of that
Service (label ``kubernetes.io/service-name``) that are ready and not terminating
(a terminating endpoint is drained: no new requests), with the endpoint port whose name
matches the Service port the backendRef chose (by number, or the only port when it names
none). The Service port's ``appProtocol`` (``kubernetes.io/h2c``, ``kubernetes.io/ws``,
``grpc``) becomes the Backend's. A GRPCRoute's Service without one gets ``grpc`` (gRPC is
HTTP/2 only; HTTP/1.1 to it fails every call), in a Backend of its own named
``<service>.<namespace>.<port>.grpc`` so an HTTPRoute to the same Service keeps HTTP/1.1.

A cross-namespace Service is used only when a ReferenceGrant in the Service's namespace
allows the route's kind from the route's namespace; otherwise the ref is left alone and
validation reports it (ResolvedRefs False). EndpointSlices are read as ``v1`` or
``v1beta1``: the fields used here (``addresses``, ``conditions.ready``/``terminating``,
``ports``) are the same in both.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from turnout.config.kinds import GATEWAY_API_GROUP, TURNOUT_GROUP

SERVICE_LABEL = "kubernetes.io/service-name"
APP_PROTOCOLS = {
    "kubernetes.io/h2c": "h2c",
    "kubernetes.io/ws": "kubernetes.io/ws",
    "h2c": "h2c",
    "grpc": "grpc",
}

Objects = dict[tuple[str, str], dict[str, Any]]


def backend_name(service: str, namespace: str, port: int) -> str:
    return f"{service}.{namespace}.{port}"


def granted(
    grants: Objects,
    from_kind: str,
    from_ns: str,
    to_group: str,
    to_kind: str,
    to_ns: str,
    name: str,
) -> bool:
    """Whether a ReferenceGrant in ``to_ns`` lets ``from_kind`` objects in ``from_ns`` refer
    to ``to_group/to_kind`` ``name``."""
    for (ns, _), grant in grants.items():
        if ns != to_ns:
            continue
        spec = grant.get("spec") or {}
        source_ok = any(
            f.get("group") == GATEWAY_API_GROUP
            and f.get("kind") == from_kind
            and f.get("namespace") == from_ns
            for f in spec.get("from") or []
        )
        target_ok = any(
            (t.get("group") or "") == to_group
            and t.get("kind") == to_kind
            and (not t.get("name") or t.get("name") == name)
            for t in spec.get("to") or []
        )
        if source_ok and target_ok:
            return True
    return False


def _endpoint_address(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def ready_endpoints(slices: Iterable[dict[str, Any]], port_name: str) -> list[str]:
    """``ip:port`` of every ready, not terminating endpoint serving ``port_name``."""
    out: list[str] = []
    for eps in slices:
        number = None
        for p in eps.get("ports") or []:
            if (p.get("name") or "") == port_name and p.get("port"):
                number = int(p["port"])
        if number is None:
            continue
        for ep in eps.get("endpoints") or []:
            cond = ep.get("conditions") or {}
            # nil "ready" means ready (API docs); a terminating endpoint is drained
            if cond.get("ready") is False or cond.get("terminating") is True:
                continue
            addresses = ep.get("addresses") or []
            if addresses:  # all addresses of one endpoint are the same pod: use the first
                address = _endpoint_address(str(addresses[0]), number)
                if address not in out:
                    out.append(address)
    return sorted(out)


def service_port(service: dict[str, Any], port: int | None) -> dict[str, Any] | None:
    ports = (service.get("spec") or {}).get("ports") or []
    if port is None:
        return ports[0] if len(ports) == 1 else None
    for p in ports:
        if p.get("port") == port:
            return dict(p)
    return None


class ServiceResolver:
    """Rewrites Service backendRefs of the routes and collects the Backends they need."""

    def __init__(self, services: Objects, slices: Objects, grants: Objects) -> None:
        self.services = services
        self.grants = grants
        self.slices_of: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for (ns, _), eps in slices.items():
            owner = ((eps.get("metadata") or {}).get("labels") or {}).get(SERVICE_LABEL)
            if owner:
                self.slices_of.setdefault((ns, owner), []).append(eps)
        self.backends: dict[tuple[str, str], dict[str, Any]] = {}

    def rewrite_route(self, route: dict[str, Any]) -> None:
        meta = route.get("metadata") or {}
        ns = str(meta.get("namespace", "default"))
        kind = str(route.get("kind"))
        for rule in (route.get("spec") or {}).get("rules") or []:
            for ref in rule.get("backendRefs") or []:
                self._rewrite(ref, kind, ns)
                for flt in ref.get("filters") or []:
                    self._rewrite_filter(flt, kind, ns)
            for flt in rule.get("filters") or []:
                self._rewrite_filter(flt, kind, ns)

    def _rewrite_filter(self, flt: dict[str, Any], kind: str, ns: str) -> None:
        mirror = flt.get("requestMirror")
        if isinstance(mirror, dict) and isinstance(mirror.get("backendRef"), dict):
            self._rewrite(mirror["backendRef"], kind, ns)

    def _rewrite(self, ref: dict[str, Any], route_kind: str, route_ns: str) -> None:
        if (ref.get("group") or "") != "" or (ref.get("kind") or "Service") != "Service":
            return
        name = str(ref.get("name", ""))
        svc_ns = str(ref.get("namespace") or route_ns)
        service = self.services.get((svc_ns, name))
        if service is None:
            return  # validation reports the missing reference
        if svc_ns != route_ns and not granted(
            self.grants, route_kind, route_ns, "", "Service", svc_ns, name
        ):
            return
        port = ref.get("port")
        sport = service_port(service, int(port) if port is not None else None)
        if sport is None:
            return
        number = int(sport.get("port", 0))
        target = backend_name(name, svc_ns, number)
        proto = APP_PROTOCOLS.get(str(sport.get("appProtocol") or ""))
        if proto is None and route_kind == "GRPCRoute":
            proto, target = "grpc", f"{target}.grpc"
        if (route_ns, target) not in self.backends:
            spec: dict[str, Any] = {
                "endpoints": [
                    {"address": a}
                    for a in ready_endpoints(
                        self.slices_of.get((svc_ns, name), []), str(sport.get("name") or "")
                    )
                ]
            }
            if proto:
                spec["appProtocol"] = proto
            self.backends[(route_ns, target)] = {
                "apiVersion": f"{TURNOUT_GROUP}/v1alpha1",
                "kind": "Backend",
                "metadata": {
                    "name": target,
                    "namespace": route_ns,
                    "labels": {SERVICE_LABEL: name},
                },
                "spec": spec,
            }
        ref["group"], ref["kind"], ref["name"] = TURNOUT_GROUP, "Backend", target
        ref.pop("namespace", None)
        ref.pop("port", None)
