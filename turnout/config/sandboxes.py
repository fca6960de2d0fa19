"""Sandboxes and route groups resolved into one table: routing key → backend overrides.

A ``Sandbox`` gives its key the overrides it lists; a ``RouteGroup`` gives its key the
overrides of every Sandbox in its namespace whose labels match. Keys are global (a
request carries a key, not a namespace), so two objects may not claim the same key: the
older object keeps it and the newer one is an error, which makes the API refuse the
write that introduced the clash. Two overrides of one backend under one key are an error
for the same reason: the gateway could not know which one a request means.

A Sandbox without ``spec.routingKey`` gets a stable key derived from its kind, namespace
and name (the API fills in a random one at creation instead, see ``control``), so a
sandbox declared in a file keeps its key across restarts.

Both the validator (errors) and the snapshot builder (the table) use ``resolve``.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass, field

from turnout.config.model.backend import EndpointSpec
from turnout.config.model.sandbox import RouteGroupObject, SandboxObject
from turnout.config.parse import Resource
from turnout.config.problems import Problem
from turnout.core.netaddr import AddressError, parse_address

BackendKey = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True, slots=True)
class Override:
    """Where keyed requests for one backend go instead of its baseline endpoints."""

    backend: BackendKey
    endpoints: tuple[EndpointSpec, ...]
    local: bool  # served through a ``turnout connect`` tunnel
    sandbox: tuple[str, str]  # the Sandbox that declared it


@dataclass(slots=True)
class KeyEntry:
    """One routing key: the object that owns it and the overrides it selects."""

    key: str
    kind: str  # "Sandbox" | "RouteGroup"
    namespace: str
    name: str
    overrides: dict[BackendKey, Override] = field(default_factory=dict)


def derived_key(kind: str, namespace: str, name: str) -> str:
    """A short, stable key for an object that names none (8 base32 characters)."""
    digest = hashlib.blake2b(f"{kind}/{namespace}/{name}".encode(), digest_size=5).digest()
    return base64.b32encode(digest).decode().lower()


def routing_key(obj: SandboxObject | RouteGroupObject) -> str:
    meta = obj.metadata
    return obj.spec.routing_key or derived_key(obj.kind, meta.namespace, meta.name)


def _age(res: Resource) -> tuple[str, int, str, str]:
    meta = res.obj.metadata
    return (meta.creation_timestamp or "", res.origin.order, meta.namespace, meta.name)


def resolve(
    resources: list[Resource], backends: set[BackendKey]
) -> tuple[dict[str, KeyEntry], list[Problem]]:
    """The key table of a validated set, and the problems that make it inconsistent.

    Objects with errors are left out of the table, so a caller that ignores the
    problems (a worker compiling an already validated set) gets the same table."""
    problems: list[Problem] = []
    table: dict[str, KeyEntry] = {}
    sandboxes = sorted((r for r in resources if isinstance(r.obj, SandboxObject)), key=_age)
    groups = sorted((r for r in resources if isinstance(r.obj, RouteGroupObject)), key=_age)
    valid_sandboxes: list[tuple[Resource, SandboxObject, dict[BackendKey, Override]]] = []
    for res in sandboxes:
        sb = res.obj
        assert isinstance(sb, SandboxObject)
        overrides = _sandbox_overrides(res, sb, backends, problems)
        if overrides is None:
            continue
        key = routing_key(sb)
        if not _claim(table, key, res, problems):
            continue
        table[key] = KeyEntry(key, "Sandbox", sb.metadata.namespace, sb.metadata.name, overrides)
        valid_sandboxes.append((res, sb, overrides))
    for res in groups:
        group = res.obj
        assert isinstance(group, RouteGroupObject)
        ns = group.metadata.namespace
        wanted = group.spec.match.labels
        merged: dict[BackendKey, Override] = {}
        clash = False
        for _, sb, overrides in valid_sandboxes:
            labels = sb.metadata.labels
            if sb.metadata.namespace != ns or any(labels.get(k) != v for k, v in wanted.items()):
                continue
            for backend, override in overrides.items():
                first = merged.get(backend)
                if first is not None:
                    problems.append(
                        res.problem(
                            ("spec", "match"),
                            f"Sandboxes {ns}/{first.sandbox[1]} and {ns}/{sb.metadata.name} "
                            f"both override Backend {backend[0]}/{backend[1]}; a RouteGroup "
                            "can send a request to only one of them (change their labels or "
                            "the RouteGroup's match)",
                        )
                    )
                    clash = True
                else:
                    merged[backend] = override
        if clash:
            continue
        key = routing_key(group)
        if not _claim(table, key, res, problems):
            continue
        table[key] = KeyEntry(key, "RouteGroup", ns, group.metadata.name, merged)
    return table, problems


def _claim(table: dict[str, KeyEntry], key: str, res: Resource, problems: list[Problem]) -> bool:
    owner = table.get(key)
    if owner is None:
        return True
    problems.append(
        res.problem(
            ("spec", "routingKey"),
            f"routing key {key!r} is already used by {owner.kind} "
            f"{owner.namespace}/{owner.name}; routing keys must be unique",
        )
    )
    return False


def _sandbox_overrides(
    res: Resource, sb: SandboxObject, backends: set[BackendKey], problems: list[Problem]
) -> dict[BackendKey, Override] | None:
    ns = sb.metadata.namespace
    out: dict[BackendKey, Override] = {}
    ok = True
    for i, ov in enumerate(sb.spec.overrides):
        path = ("spec", "overrides", i)
        if (ov.local is None) == (not ov.endpoints):
            problems.append(
                res.problem(path, "an override needs exactly one of 'endpoints' and 'local'")
            )
            ok = False
            continue
        for j, ep in enumerate(ov.endpoints):
            try:
                addr = parse_address(ep.address, allow_missing_port=True)
            except AddressError:  # the schema already rejected it
                continue
            if not addr.is_unix and addr.port == 0:
                problems.append(
                    res.problem(
                        (*path, "endpoints", j, "address"),
                        f"{ep.address!r} needs a port: an override endpoint is a "
                        "developer's process, not a Service port",
                    )
                )
                ok = False
        backend = (ns, ov.backend)
        if backend in out:
            problems.append(
                res.problem(
                    (*path, "backend"),
                    f"Backend {ov.backend!r} is overridden twice in this Sandbox; one key "
                    "can send a request to only one override",
                )
            )
            ok = False
            continue
        if backend not in backends:
            # A warning, like a backendRef to a missing Service: the override waits for it.
            problems.append(
                res.problem(
                    (*path, "backend"),
                    f"Backend {ns}/{ov.backend} does not exist; the override has no effect "
                    "until it does",
                    "warning",
                )
            )
        out[backend] = Override(backend, ov.endpoints, ov.local is not None, (ns, sb.metadata.name))
    return out if ok else None


def tunnel_socket(directory: str, sandbox: tuple[str, str], backend: str) -> str:
    """The unix socket where ``turnout connect`` serves a ``local`` override: the
    supervisor listens on it while a developer is connected; workers dial it like any
    endpoint (and answer 503 while nobody is connected). Hashed names keep the path
    under the 108-byte limit of unix socket addresses."""
    digest = hashlib.blake2b(
        f"{sandbox[0]}/{sandbox[1]}/{backend}".encode(), digest_size=8
    ).hexdigest()
    return f"{directory or '/tmp'}/tnl-{digest}.sock"


def new_routing_key() -> str:
    """A fresh random key for an object created without one (8 base32 characters)."""
    return base64.b32encode(os.urandom(5)).decode().lower()
