"""Compiled route lookup: socket → listener → virtual host → path index → predicates.

Built once per snapshot, read-only afterwards. A request takes, in order:

1. ``PortTable.listener(host)``: the most specific listener on the socket whose
   hostname matches (exact, then the longest wildcard, then a listener without
   hostname). Routes of other listeners on the same port are never considered
   (Gateway API listener isolation).
2. ``ListenerTable.vhost(host)``: the routes of that listener grouped by the hostname
   they serve, most specific group first; like an Envoy virtual host, a request never
   falls through from an exact-host group to a wildcard one.
3. ``VirtualHost.match(head)``: candidates in Gateway API precedence order. Exact
   paths come from a dict, then regular expressions, then path prefixes walked from the
   longest segment boundary to ``/`` with one dict lookup each (element-wise prefix
   matching falls out of walking ``/`` boundaries). Within one bucket candidates are
   pre-sorted by method match, header match count, query match count, route age,
   route name and rule order, so the first whose predicates hold wins.
"""

from __future__ import annotations

import re
from typing import Generic, TypeVar
from urllib.parse import parse_qsl

from turnout.observe.tracing import GatewayTracing
from turnout.proxy.protocols.heads import RequestHead

A = TypeVar("A")

HeaderPredicate = tuple[bytes, bytes | None, "re.Pattern[bytes] | None"]
QueryPredicate = tuple[str, str | None, "re.Pattern[str] | None"]


class Candidate(Generic[A]):
    """One ``HTTPRouteMatch`` of one rule, compiled."""

    __slots__ = ("action", "headers", "method", "plain", "prefix", "queries", "sort_key")

    def __init__(
        self,
        action: A,
        method: bytes | None,
        headers: tuple[HeaderPredicate, ...],
        queries: tuple[QueryPredicate, ...],
        prefix: bytes | None,
        sort_key: tuple[object, ...],
    ) -> None:
        self.action = action
        self.method = method
        self.headers = headers
        self.queries = queries
        self.prefix = prefix  # the matched PathPrefix (for ReplacePrefixMatch), else None
        self.sort_key = sort_key
        self.plain = method is None and not headers and not queries

    def predicates_hold(self, head: RequestHead, query: dict[str, str] | None) -> bool:
        if self.method is not None and head.method != self.method:
            return False
        received = head.received
        for name, exact, pattern in self.headers:
            value = received.get(name)
            if value is None:
                return False
            if exact is not None:
                if value != exact:
                    return False
            elif pattern is not None and pattern.fullmatch(value) is None:
                return False
        if self.queries:
            if query is None:
                return False
            for qname, qexact, qpattern in self.queries:
                qvalue = query.get(qname)
                if qvalue is None:
                    return False
                if qexact is not None:
                    if qvalue != qexact:
                        return False
                elif qpattern is not None and qpattern.fullmatch(qvalue) is None:
                    return False
        return True


def parse_query(raw: bytes) -> dict[str, str]:
    """First value of each query parameter, percent-decoded (names are case-sensitive)."""
    out: dict[str, str] = {}
    for name, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
        out.setdefault(name, value)
    return out


class VirtualHost(Generic[A]):
    __slots__ = ("exact", "has_queries", "prefix", "regex", "single")

    def __init__(
        self,
        exact: dict[bytes, list[Candidate[A]]],
        regex: list[tuple[re.Pattern[bytes], Candidate[A]]],
        prefix: dict[bytes, list[Candidate[A]]],
    ) -> None:
        self.exact = exact
        self.regex = regex
        self.prefix = prefix
        self.has_queries = any(
            c.queries for bucket in (*exact.values(), *prefix.values()) for c in bucket
        ) or any(c.queries for _, c in regex)
        # The common "everything under / goes to one rule" host skips the walk entirely.
        only_root = not exact and not regex and list(prefix) == [b"/"]
        root = prefix.get(b"/", [])
        self.single = (
            root[0]
            if only_root
            and len(root) == 1
            and not root[0].method
            and not root[0].headers
            and not root[0].queries
            else None
        )

    def match(self, head: RequestHead) -> Candidate[A] | None:
        single = self.single
        if single is not None:
            return single
        query = parse_query(head.query) if self.has_queries and head.query else None
        if self.has_queries and query is None:
            query = {}
        path = head.path
        bucket = self.exact.get(path)
        if bucket is not None:
            for cand in bucket:
                if cand.plain or cand.predicates_hold(head, query):
                    return cand
        for pattern, cand in self.regex:
            if pattern.fullmatch(path) is not None and (
                cand.plain or cand.predicates_hold(head, query)
            ):
                return cand
        prefixes = self.prefix
        if not prefixes:
            return None
        key = path[:-1] if len(path) > 1 and path[-1] == 0x2F else path
        while True:
            bucket = prefixes.get(key)
            if bucket is not None:
                for cand in bucket:
                    if cand.plain or cand.predicates_hold(head, query):
                        return cand
            if key == b"/":
                return None
            cut = key.rfind(b"/")
            key = key[:cut] if cut > 0 else b"/"


class HostIndex(Generic[A]):
    """Maps a request host to the most specific entry: exact, longest wildcard, default."""

    __slots__ = ("default", "exact", "single", "wildcards")

    def __init__(
        self,
        exact: dict[str, A],
        wildcards: list[tuple[str, A]],
        default: A | None,
    ) -> None:
        self.exact = exact
        # (".suffix", value), longest suffix first
        self.wildcards = sorted(wildcards, key=lambda kv: -len(kv[0]))
        self.default = default
        # Only a default entry: every host gets it, no lookup needed.
        self.single = default if not exact and not wildcards else None

    def lookup(self, host: str) -> A | None:
        hit = self.exact.get(host)
        if hit is not None:
            return hit
        for suffix, value in self.wildcards:
            if host.endswith(suffix) and len(host) > len(suffix):
                return value
        return self.default


class ListenerTable(Generic[A]):
    """One Gateway listener: its identity (for redirects and logs) and its hosts."""

    __slots__ = ("gateway", "hosts", "ident", "label", "name", "port", "scheme", "tracing")

    def __init__(
        self, gateway: str, name: str, port: int, hosts: HostIndex[VirtualHost[A]]
    ) -> None:
        self.gateway = gateway
        self.name = name
        self.ident = (gateway, name)  # stable across snapshots (TLS misdirection checks)
        self.label = f"{gateway}/{name}"  # traces and flows name it so (built once)
        self.port = port  # the declared port (redirect defaults use it, not the bound one)
        self.scheme = b"http"
        self.hosts = hosts
        # the Gateway's own trace sampling (``turnout.dev/trace-*``); None: the serve flags
        self.tracing: GatewayTracing | None = None


class PortTable(Generic[A]):
    """Everything served on one bound socket."""

    __slots__ = ("keys", "listeners")

    def __init__(
        self, listeners: HostIndex[ListenerTable[A]], keys: dict[bytes, str] | None = None
    ) -> None:
        self.listeners = listeners
        # the sandbox routing keys in force (empty: requests are not searched for one)
        self.keys: dict[bytes, str] = keys or {}

    def route(self, head: RequestHead) -> tuple[ListenerTable[A] | None, Candidate[A] | None]:
        listener = self.listeners.single or self.listeners.lookup(head.host)
        if listener is None:
            return None, None
        hosts = listener.hosts
        vhost = hosts.single or hosts.lookup(head.host)
        if vhost is None:
            return listener, None
        return listener, vhost.match(head)
