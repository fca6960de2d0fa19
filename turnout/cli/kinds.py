"""Kind names as users type them: ``HTTPRoute``, ``httproutes``, ``route``, ``gw``...

The server's ``GET /api/v1/kinds`` is authoritative, but the built-in kinds (the
registry in ``turnout.config.kinds``) are also known here, so the common case
(``turnout get routes``) needs no extra round trip; only a name not found in the
built-in table makes the CLI ask the server. Nothing is cached on disk. Matching is
case-insensitive on the kind, its plural, its short names and the ``kind.group`` /
``plural.group`` forms kubectl accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from turnout.cli.errors import CliError
from turnout.config.kinds import KINDS, KindRegistry

if TYPE_CHECKING:
    from turnout.cli.client import Client


@dataclass(frozen=True, slots=True)
class KindInfo:
    kind: str
    plural: str
    api_version: str
    namespaced: bool
    short_names: tuple[str, ...] = ()

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def display(self) -> str:
        """kubectl's resource name: ``httproute.gateway.networking.k8s.io``, ``namespace``."""
        return f"{self.kind.lower()}.{self.group}" if self.group else self.kind.lower()

    def names(self) -> set[str]:
        base = {self.kind.lower(), self.plural.lower(), *(s.lower() for s in self.short_names)}
        if self.group:
            base |= {f"{n}.{self.group}" for n in (self.kind.lower(), self.plural.lower())}
        return base

    def collection_path(self, namespace: str | None) -> str:
        """``namespace=None`` lists every namespace (or a cluster-scoped kind)."""
        if self.namespaced and namespace is not None:
            return f"/api/v1/namespaces/{quote(namespace, safe='')}/{self.plural}"
        return f"/api/v1/{self.plural}"

    def object_path(self, namespace: str, name: str) -> str:
        if self.namespaced:
            return f"{self.collection_path(namespace)}/{quote(name, safe='')}"
        return f"/api/v1/{self.plural}/{quote(name, safe='')}"

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> KindInfo:
        kind = str(raw["kind"])
        return cls(
            kind=kind,
            plural=str(raw.get("plural") or kind.lower() + "s"),
            api_version=str(raw.get("apiVersion") or ""),
            namespaced=bool(raw.get("namespaced", True)),
            short_names=tuple(str(s) for s in raw.get("shortNames") or ()),
        )


def builtin_table(registry: KindRegistry = KINDS) -> tuple[KindInfo, ...]:
    """The kinds every server serves, from the registry (config.kinds: stdlib only, so the
    CLI reads it without loading pydantic)."""
    return tuple(
        KindInfo(e.kind, e.plural, e.api_version, e.namespaced, e.short_names)
        for e in registry.served()
    )


BUILTIN: tuple[KindInfo, ...] = builtin_table()


def match(name: str, kinds: tuple[KindInfo, ...] | list[KindInfo]) -> KindInfo | None:
    wanted = name.strip().lower()
    for info in kinds:
        if wanted in info.names():
            return info
    return None


def builtin(kind: str) -> KindInfo | None:
    """The built-in entry for an exact kind name (e.g. from a manifest or a result)."""
    for info in BUILTIN:
        if info.kind == kind:
            return info
    return None


def server_kinds(client: Client) -> list[KindInfo]:
    body = client.get_json("/api/v1/kinds")
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise CliError("the server sent an unexpected answer to GET /api/v1/kinds")
    return [KindInfo.from_json(i) for i in items if isinstance(i, dict) and "kind" in i]


def resolve(name: str, client: Client) -> KindInfo:
    """Built-in table first; otherwise the server's list; ``CliError`` if neither knows it."""
    found = match(name, BUILTIN)
    if found is not None:
        return found
    kinds = server_kinds(client)
    found = match(name, kinds)
    if found is None:
        known = ", ".join(k.plural for k in kinds) or "none"
        raise CliError(f"the server doesn't have a resource type {name!r} (known: {known})")
    return found


def display_of(kind: str) -> str:
    """``httproute.gateway.networking.k8s.io`` for a known kind, else ``kind`` lower-cased."""
    info = builtin(kind)
    return info.display if info else kind.lower()
