"""Human-readable diffs between manifests and between whole revisions.

Objects are rendered as YAML with sorted keys (so key order never shows up as a change)
and compared with ``difflib.unified_diff``; the headers name the object, e.g.
``--- HTTPRoute default/shop (revision 3)``.
"""

from __future__ import annotations

import difflib
from typing import Any

import yaml

from turnout.control.objects import describe_key
from turnout.control.store.repository import redacted

Key = tuple[str, str, str]


def to_yaml(manifest: dict[str, Any] | None) -> str:
    if manifest is None:
        return ""
    return yaml.safe_dump(manifest, sort_keys=True, default_flow_style=False, allow_unicode=True)


def _comparable(manifest: dict[str, Any] | None) -> dict[str, Any] | None:
    # resourceVersion/generation/timestamps change with every write: not part of a diff.
    if manifest is None:
        return None
    out = {k: v for k, v in redacted(manifest).items() if k != "status"}
    meta = dict(out.get("metadata") or {})
    for k in ("resourceVersion", "generation", "creationTimestamp", "uid"):
        meta.pop(k, None)
    out["metadata"] = meta
    return out


def object_diff(
    key: Key,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    from_label: str = "live",
    to_label: str = "new",
) -> str:
    name = describe_key(*key)
    lines = difflib.unified_diff(
        to_yaml(_comparable(before)).splitlines(keepends=True),
        to_yaml(_comparable(after)).splitlines(keepends=True),
        fromfile=f"{name} ({from_label})" if before is not None else "/dev/null",
        tofile=f"{name} ({to_label})" if after is not None else "/dev/null",
    )
    return "".join(lines)


def manifest_key(manifest: dict[str, Any]) -> Key:
    meta = manifest.get("metadata") or {}
    return (str(manifest.get("kind")), str(meta.get("namespace", "")), str(meta.get("name")))


def revision_diff(
    before: list[dict[str, Any]],
    after: list[dict[str, Any]],
    from_label: str,
    to_label: str,
) -> tuple[str, list[dict[str, str]]]:
    """Unified diff text and a change list (action, kind, namespace, name)."""
    old = {manifest_key(m): m for m in before}
    new = {manifest_key(m): m for m in after}
    text: list[str] = []
    changes: list[dict[str, str]] = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if _comparable(a) == _comparable(b):
            continue
        action = "created" if a is None else "deleted" if b is None else "configured"
        changes.append({"action": action, "kind": key[0], "namespace": key[1], "name": key[2]})
        text.append(object_diff(key, a, b, from_label, to_label))
    return "".join(text), changes
