"""``ConfigSet``: the validated, self-consistent set of resources one revision serves.

Every layer passes it around (validation produces it, the control plane stores its
sources, the data plane compiles it), so it lives in a module of its own with nothing
but typed accessors: no validation and no compilation here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from turnout.config.grpcroute import as_http
from turnout.config.model.backend import BackendObject
from turnout.config.model.gateway import GatewayObject
from turnout.config.model.kubernetes import NamespaceObject, SecretObject
from turnout.config.model.routes import GRPCRouteObject, HTTPRouteObject
from turnout.config.parse import Resource


@dataclass(slots=True)
class ConfigSet:
    """A validated, self-consistent set of resources: what one revision serves."""

    resources: list[Resource] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[Resource]:
        return [r for r in self.resources if r.kind == kind]

    def gateways(self) -> dict[tuple[str, str], GatewayObject]:
        return {
            (r.obj.metadata.namespace, r.obj.metadata.name): r.obj
            for r in self.resources
            if isinstance(r.obj, GatewayObject)
        }

    def backends(self) -> dict[tuple[str, str], BackendObject]:
        return {
            (r.obj.metadata.namespace, r.obj.metadata.name): r.obj
            for r in self.resources
            if isinstance(r.obj, BackendObject)
        }

    def secrets(self) -> dict[tuple[str, str], SecretObject]:
        return {
            (r.obj.metadata.namespace, r.obj.metadata.name): r.obj
            for r in self.resources
            if isinstance(r.obj, SecretObject)
        }

    def http_routes(self) -> list[Resource]:
        """HTTPRoutes, and GRPCRoutes as the HTTPRoutes they behave like."""
        out: list[Resource] = []
        for r in self.resources:
            if isinstance(r.obj, HTTPRouteObject):
                out.append(r)
            elif isinstance(r.obj, GRPCRouteObject):
                out.append(Resource(as_http(r.obj), r.origin, r.doc))
        return out

    def namespace_labels(self) -> dict[str, dict[str, str]]:
        return {
            r.obj.metadata.name: dict(r.obj.metadata.labels)
            for r in self.resources
            if isinstance(r.obj, NamespaceObject)
        }

    def without_documents(self) -> ConfigSet:
        """A copy safe to send to workers (no YAML node maps)."""
        return ConfigSet([Resource(r.obj, r.origin) for r in self.resources])
