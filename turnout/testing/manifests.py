"""Small builders for test manifests (YAML text), so tests read like the config they use."""

from __future__ import annotations

from typing import Any

import yaml


def dump(*objects: dict[str, Any]) -> str:
    return yaml.safe_dump_all(list(objects), sort_keys=False)


def gateway(
    name: str = "gw",
    port: int = 8080,
    address: str = "127.0.0.1",
    namespace: str = "default",
    listeners: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "gatewayClassName": "turnout",
            "addresses": [{"type": "IPAddress", "value": address}],
            "listeners": listeners or [{"name": "http", "port": port, "protocol": "HTTP"}],
        },
    }


def backend(name: str, *ports: int, namespace: str = "default", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "Backend",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"endpoints": [{"address": f"127.0.0.1:{p}"} for p in ports], **spec},
    }


def route(
    name: str,
    rules: list[dict[str, Any]],
    gateway_name: str = "gw",
    hostnames: list[str] | None = None,
    namespace: str = "default",
) -> dict[str, Any]:
    spec: dict[str, Any] = {"parentRefs": [{"name": gateway_name}], "rules": rules}
    if hostnames:
        spec["hostnames"] = hostnames
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def to(backend_name: str, prefix: str = "/", **rule: Any) -> dict[str, Any]:
    """A rule sending a path prefix to one backend."""
    return {
        "matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
        "backendRefs": [{"name": backend_name}],
        **rule,
    }
