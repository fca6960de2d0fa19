"""Builds the lookup tables of ``table.py`` from ``HTTPRouteMatch`` specs.

The only policy here is the Gateway API precedence order, encoded once as a sort key:
fewer-is-worse counts are negated so that an ascending sort puts the winner first.
"""

from __future__ import annotations

import re
from typing import TypeVar

from turnout.config.hostnames import is_wildcard
from turnout.config.model.routes import HTTPRouteMatch
from turnout.proxy.routing.table import (
    Candidate,
    HeaderPredicate,
    HostIndex,
    QueryPredicate,
    VirtualHost,
)

A = TypeVar("A")
V = TypeVar("V")

# (kind, key, candidate): kind is "exact" / "prefix" (key: bytes) or "regex" (key: Pattern)
MatchEntry = tuple[str, "bytes | re.Pattern[bytes]", Candidate[A]]


def normalize_prefix(value: str) -> bytes:
    """``/foo/`` and ``/foo`` are the same prefix; ``/`` stays ``/``."""
    raw = value.encode()
    return raw.rstrip(b"/") or b"/"


def compile_match(
    match: HTTPRouteMatch, action: A, precedence: tuple[object, ...]
) -> MatchEntry[A]:
    """Return ``(kind, key, candidate)`` where kind is exact/regex/prefix."""
    headers: tuple[HeaderPredicate, ...] = tuple(
        (
            h.name.lower().encode(),
            h.value.encode() if h.type == "Exact" else None,
            re.compile(h.value.encode()) if h.type == "RegularExpression" else None,
        )
        for h in match.headers
    )
    queries: tuple[QueryPredicate, ...] = tuple(
        (
            q.name,
            q.value if q.type == "Exact" else None,
            re.compile(q.value) if q.type == "RegularExpression" else None,
        )
        for q in match.query_params
    )
    path = match.path
    kind = (
        "prefix"
        if path is None
        else {"Exact": "exact", "PathPrefix": "prefix"}.get(path.type, "regex")
    )
    value = "/" if path is None else path.value
    key: bytes | re.Pattern[bytes]
    prefix: bytes | None = None
    if kind == "exact":
        key = value.encode()
    elif kind == "prefix":
        key = prefix = normalize_prefix(value)
    else:
        key = re.compile(value.encode())
    sort_key = (
        0 if match.method else 1,
        -len(headers),
        -len(queries),
        *precedence,
    )
    cand = Candidate(
        action, match.method.encode() if match.method else None, headers, queries, prefix, sort_key
    )
    return kind, key, cand


def build_vhost(entries: list[MatchEntry[A]]) -> VirtualHost[A]:
    exact: dict[bytes, list[Candidate[A]]] = {}
    prefix: dict[bytes, list[Candidate[A]]] = {}
    regex: list[tuple[re.Pattern[bytes], Candidate[A]]] = []
    for kind, key, cand in entries:
        if kind == "exact":
            assert isinstance(key, bytes)
            exact.setdefault(key, []).append(cand)
        elif kind == "prefix":
            assert isinstance(key, bytes)
            prefix.setdefault(key, []).append(cand)
        else:
            assert isinstance(key, re.Pattern)
            regex.append((key, cand))
    for bucket in (*exact.values(), *prefix.values()):
        bucket.sort(key=lambda c: c.sort_key)
    # Regexes are implementation-specific in the Gateway API; like Envoy Gateway, rank
    # them after exact paths and before prefixes, longer patterns first.
    regex.sort(key=lambda kc: (-len(kc[0].pattern), kc[1].sort_key))
    return VirtualHost(exact, regex, prefix)


def build_host_index(by_host: dict[str | None, V]) -> HostIndex[V]:
    """Hostnames (exact or ``*.`` wildcards, ``None`` = any) → a ``HostIndex``."""
    exact: dict[str, V] = {}
    wildcards: list[tuple[str, V]] = []
    default: V | None = None
    for name, value in by_host.items():
        if name is None:
            default = value
        elif is_wildcard(name):
            wildcards.append((name[1:], value))
        else:
            exact[name] = value
    return HostIndex(exact, wildcards, default)
