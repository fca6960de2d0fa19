"""Manifests as the API sees them: kinds, normalisation, and the bridge to ``turnout.config``.

A manifest arriving through the API is validated with the same strict pydantic models as a
file (``turnout.config.model``) and stored *normalised*: dumped back from the model with
only the fields the user set, so ``loadBalancer: round_robin`` and
``loadBalancer: {type: round_robin}`` are the same object and re-applying an unchanged
file is recognised as "unchanged". Server-owned metadata (``resourceVersion``,
``generation``, ``creationTimestamp``, ``uid``, ``managedFields``) and ``status`` are
dropped on the way in; the store sets its own.

Stored objects become ``config.parse.Resource`` values with ``source`` ``api`` so the
validator and the data plane treat them exactly like objects from files.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any, Final

from pydantic import ValidationError

from turnout.config.kinds import KINDS as REGISTRY
from turnout.config.kinds import KindEntry, KindRegistry
from turnout.config.model import KINDS
from turnout.config.parse import Origin, Resource, parse_documents
from turnout.config.problems import Problem, format_path
from turnout.config.yamldocs import Document, load_documents
from turnout.control.store.repository import describe as describe_key

OWNER_ANNOTATION: Final = "turnout.dev/owner"
API_SOURCE: Final = "api"
SERVER_METADATA: Final = frozenset(
    {"resourceVersion", "generation", "creationTimestamp", "uid", "managedFields"}
)


@dataclass(frozen=True, slots=True)
class KindInfo:
    """A kind as the admin API describes it (``GET /api/v1/kinds``)."""

    kind: str
    plural: str
    api_version: str
    namespaced: bool
    short_names: tuple[str, ...]

    @classmethod
    def of(cls, entry: KindEntry) -> KindInfo:
        return cls(entry.kind, entry.plural, entry.api_version, entry.namespaced, entry.short_names)

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "plural": self.plural,
            "apiVersion": self.api_version,
            "namespaced": self.namespaced,
            "shortNames": list(self.short_names),
        }


def api_kinds(registry: KindRegistry = REGISTRY) -> dict[str, KindInfo]:
    """The kinds stored and served through the API, from the registry (config.kinds)."""
    return {e.kind: KindInfo.of(e) for e in registry.served()}


KIND_INFO: Final[dict[str, KindInfo]] = api_kinds()
BY_PLURAL: Final[dict[str, KindInfo]] = {k.plural: k for k in KIND_INFO.values()}

# Cluster-scoped objects live in this pseudo-namespace in the store and in keys.
CLUSTER_NAMESPACE: Final = ""


def object_namespace(kind: str, manifest: dict[str, Any]) -> str:
    if not KIND_INFO[kind].namespaced:
        return CLUSTER_NAMESPACE
    meta = manifest.get("metadata")
    ns = meta.get("namespace") if isinstance(meta, dict) else None
    return ns if isinstance(ns, str) and ns else "default"


def strip_server_fields(manifest: dict[str, Any]) -> dict[str, Any]:
    """A copy without status and server-maintained metadata (what a client may set)."""
    out = {k: copy.deepcopy(v) for k, v in manifest.items() if k != "status"}
    meta = out.get("metadata")
    if isinstance(meta, dict):
        meta = {k: v for k, v in meta.items() if k not in SERVER_METADATA}
        annotations = meta.get("annotations")
        if isinstance(annotations, dict) and OWNER_ANNOTATION in annotations:
            annotations = {k: v for k, v in annotations.items() if k != OWNER_ANNOTATION}
            if annotations:
                meta["annotations"] = annotations
            else:
                meta.pop("annotations")
        out["metadata"] = meta
    return out


@dataclass(slots=True)
class Parsed:
    """A manifest that passed the schema: its normalised form and its resource."""

    kind: str
    namespace: str
    name: str
    manifest: dict[str, Any]
    resource: Resource


def normalise(resource: Resource) -> dict[str, Any]:
    data: dict[str, Any] = resource.obj.model_dump(mode="json", by_alias=True, exclude_unset=True)
    data.pop("status", None)
    meta = data.setdefault("metadata", {})
    for key in SERVER_METADATA:
        meta.pop(key, None)
    if KIND_INFO[resource.kind].namespaced:
        meta["namespace"] = resource.obj.metadata.namespace
    else:
        meta.pop("namespace", None)
    for key in ("labels", "annotations"):
        if not meta.get(key):
            meta.pop(key, None)
    return data


def _parsed(resources: list[Resource]) -> list[Parsed]:
    out = []
    for res in resources:
        ns = res.obj.metadata.namespace if KIND_INFO[res.kind].namespaced else CLUSTER_NAMESPACE
        out.append(Parsed(res.kind, ns, res.obj.metadata.name, normalise(res), res))
    return out


def parse_manifests(
    manifests: list[Any], source: str = API_SOURCE
) -> tuple[list[Parsed], list[Problem]]:
    """Validate JSON manifests (already decoded); problems carry field paths, no lines."""
    docs = []
    for i, manifest in enumerate(manifests):
        clean = strip_server_fields(manifest) if isinstance(manifest, dict) else manifest
        docs.append(Document(source if len(manifests) == 1 else f"{source}[{i}]", i, clean, 0))
    resources, problems = parse_documents(docs)
    return _parsed(resources), [_unlocated(p) for p in problems]


def parse_yaml(text: str, source: str = "<request>") -> tuple[list[Parsed], list[Problem]]:
    """Validate multi-document YAML; problems name ``source:line:column``."""
    docs, problems = load_documents(text, source)
    kept = []
    for doc in docs:
        if doc.data is None:  # an empty document between '---' separators
            continue
        if isinstance(doc.data, dict):
            doc.data = strip_server_fields(doc.data)
        kept.append(doc)
    resources, more = parse_documents(kept)
    return _parsed(resources), problems + more


def _unlocated(p: Problem) -> Problem:
    # JSON bodies have no lines; a line 0 from the synthetic document would mislead.
    if p.line == 0:
        return Problem(p.source, None, None, p.path, p.message, p.obj, p.severity)
    return p


def to_resource(manifest: dict[str, Any], order: int, source: str = API_SOURCE) -> Resource:
    """A stored (already valid) manifest as a config resource; raises if it is not valid."""
    model = KINDS[manifest["kind"]]
    try:
        obj: Any = model.model_validate(manifest)
    except ValidationError as exc:  # the store only holds validated manifests
        raise ValueError(f"stored {manifest['kind']} is no longer valid: {exc}") from exc
    return Resource(obj, Origin(source, 0, order))


_PATH_PART = re.compile(r"([^.\[\]]+)|\[([0-9]+)\]")


def parse_path(text: str) -> tuple[str | int, ...]:
    """The inverse of ``format_path``: ``spec.rules[0].matches`` → ``("spec", "rules", 0, ...)``."""
    return tuple(int(index) if index else name for name, index in _PATH_PART.findall(text))


def relocate(problems: list[Any], parsed: list[Parsed]) -> list[Any]:
    """Point whole-config problems about objects of this request at the request's lines."""
    by_ref = {p.resource.ref: p.resource for p in parsed}
    out = []
    for p in problems:
        res = by_ref.get(p.obj) if isinstance(p, Problem) else None
        if res is not None and res.doc is not None:
            line, col = res.doc.locate(parse_path(p.path))
            if line:
                p = Problem(res.doc.source, line, col, p.path, p.message, p.obj, p.severity)
        out.append(p)
    return out


def problem_json(p: Problem) -> dict[str, Any]:
    return {
        "source": p.source,
        "line": p.line,
        "column": p.column,
        "path": p.path,
        "message": p.message,
        "object": p.obj,
        "severity": p.severity,
    }


__all__ = [
    "API_SOURCE",
    "BY_PLURAL",
    "CLUSTER_NAMESPACE",
    "KIND_INFO",
    "OWNER_ANNOTATION",
    "KindInfo",
    "Parsed",
    "api_kinds",
    "describe_key",
    "format_path",
    "normalise",
    "object_namespace",
    "parse_manifests",
    "parse_path",
    "parse_yaml",
    "problem_json",
    "relocate",
    "strip_server_fields",
    "to_resource",
]
