"""Explain a request: which listener, route, rule, filters, backend and endpoints it gets.

The answer is read off a ``Snapshot`` compiled by the one compile entry point
(``compile.py``, the same builder every worker runs), and the winner is chosen by the
real router (``PortTable.route``), so the explanation cannot disagree with the data
plane. What this module adds is only the *why not* of the other candidates: it walks
the compiled tables the router walked (listeners by hostname, host groups, the path
buckets of the chosen host group) and reads each candidate's compiled predicates to say
which one failed. A weighted split is random per request: every backendRef is listed
with its share; a sandbox routing key found in the request (``routing.keys.find_key``,
as on the request path) swaps in the sandbox's endpoints as a worker would.

The supervisor serves this for its current revision (``POST /api/v1/explain``) and
``turnout explain -f`` runs it on files; neither touches a socket.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from turnout.config.configset import ConfigSet
from turnout.proxy.protocols.heads import RequestHead
from turnout.proxy.protocols.hosts import InvalidTarget, normalize_path
from turnout.proxy.routing.keys import find_key
from turnout.proxy.routing.table import Candidate, HostIndex, PortTable, parse_query
from turnout.proxy.runtime import ProxySettings, Runtime
from turnout.proxy.snapshot import BackendChoice, LimitStores, RouteAction, Snapshot

DEFAULT_PORTS = {"http": 80, "https": 443}


class ExplainError(ValueError):
    """The request to explain is malformed (the message names the field)."""


@dataclass(slots=True)
class ExplainRequest:
    method: str
    url: str
    headers: list[tuple[str, str]] = field(default_factory=list)


def explain(
    config: ConfigSet,
    revision: int,
    request: ExplainRequest,
    *,
    settings: ProxySettings | None = None,
    limits: LimitStores | None = None,
    health: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The explanation of ``request`` against ``config`` (compiled as ``revision``).
    ``health`` holds the supervisor's active-check verdicts by endpoint key."""
    head, port, scheme = _head(request)
    loop = asyncio.new_event_loop()  # the runtime is never started: nothing runs on it
    try:
        runtime = Runtime(loop, settings or ProxySettings())
        if limits is not None:
            runtime.limits = limits
        snapshot = runtime.build(config, revision)
    finally:
        loop.close()
    out: dict[str, Any] = {
        "revision": revision,
        "request": {
            "method": head.method.decode(),
            "scheme": scheme,
            "host": head.host,
            "port": port,
            "path": head.path.decode("latin-1"),
            "query": head.query.decode("latin-1"),
        },
    }
    table = _socket_for(snapshot, port)
    if table is None:
        served = sorted({p for _, p in snapshot.bindings.values()})
        l4 = any(snapshot.bindings[k][1] == port for k in snapshot.l4)
        out["verdict"] = (
            f"port {port} is an L4 (TCP/TLS passthrough) listener, not HTTP"
            if l4
            else f"no HTTP listener on port {port} (ports served: {served})"
        )
        return out
    listener, cand = table.route(head)  # the data plane's own answer
    out["listeners"] = _listeners(table, head.host, listener)
    if listener is None:
        out["verdict"] = f"no listener on port {port} accepts host {head.host!r}: 404"
        return out
    out["listener"] = {"gateway": listener.gateway, "name": listener.name}
    out["candidates"] = _candidates(listener.hosts, head, cand)
    key, _ = find_key(head) if table.keys else (b"", 0)
    sandbox = table.keys.get(key) if key else None
    if key:
        out["routingKey"] = {"key": key.decode(), "owner": sandbox}
    if cand is None:
        out["verdict"] = "no route matches this request: 404"
        return out
    action = cand.action
    out["route"] = {
        "name": action.route_label,
        "rule": cand.sort_key[-2],
        "match": cand.sort_key[-1],
    }
    out["filters"] = _filters(action)
    out["backends"] = _backends(action, key if sandbox else b"", health or {})
    out["verdict"] = _verdict(action, out["backends"])
    return out


def _head(request: ExplainRequest) -> tuple[RequestHead, int, str]:
    method = request.method.strip().upper()
    if not re.fullmatch(r"[A-Z]{1,20}", method):
        raise ExplainError(f"method: {request.method!r} is not an HTTP method")
    try:
        parts = urlsplit(request.url.strip())
        hostname = parts.hostname
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        raise ExplainError(f"url: {request.url!r} cannot be parsed: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not hostname:
        raise ExplainError(f"url: {request.url!r} is not an absolute http:// or https:// URL")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise ExplainError(f"url: {request.url!r} has an invalid port") from None
    try:
        path = normalize_path((parts.path or "/").encode())
        query = parts.query.encode()
        authority = parts.netloc.rpartition("@")[2].encode()
    except InvalidTarget as exc:
        raise ExplainError(f"url: the path is refused as a request would be: {exc}") from None
    except UnicodeError:
        raise ExplainError(f"url: {request.url!r} is not ASCII; percent-encode it") from None
    headers = []
    for name, value in request.headers:
        lname = name.strip().lower()
        if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9a-z-]+", lname):
            raise ExplainError(f"headers: {name!r} is not a header name")
        headers.append((lname.encode(), value.strip().encode("latin-1", "replace")))
    head = RequestHead(method.encode(), path, query, headers, authority, hostname.lower())
    return head, port, scheme


def _socket_for(snapshot: Snapshot, port: int) -> PortTable[RouteAction] | None:
    for key, (_, bound) in sorted(snapshot.bindings.items()):
        if bound == port and key in snapshot.sockets:
            return snapshot.sockets[key]
    return None


def _entries(index: HostIndex[Any]) -> list[tuple[str | None, Any]]:
    """A host index's entries in lookup order: exact, wildcards longest first, default."""
    out: list[tuple[str | None, Any]] = list(index.exact.items())
    out += [("*" + suffix, value) for suffix, value in index.wildcards]
    if index.default is not None:
        out.append((None, index.default))
    return out


def _host_matches(pattern: str | None, host: str) -> bool:
    if pattern is None:
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


def _host_reason(pattern: str | None, host: str, chosen: bool) -> str:
    if chosen:
        return "selected: the most specific hostname that matches"
    if not _host_matches(pattern, host):
        return f"hostname {pattern} does not match {host}"
    return "matches too, but a more specific hostname wins"


def _listeners(table: PortTable[RouteAction], host: str, chosen: Any) -> list[dict[str, Any]]:
    return [
        {
            "gateway": lst.gateway,
            "name": lst.name,
            "hostname": pattern,
            "selected": lst is chosen,
            "reason": _host_reason(pattern, host, lst is chosen),
        }
        for pattern, lst in _entries(table.listeners)
    ]


def _candidates(
    hosts: HostIndex[Any], head: RequestHead, winner: Candidate[RouteAction] | None
) -> list[dict[str, Any]]:
    """Every match of every route on the listener, in the order the router tries them."""
    vhost = hosts.single or hosts.lookup(head.host)
    query = parse_query(head.query)
    out: list[dict[str, Any]] = []
    for pattern, group in _entries(hosts):
        for kind, key, cand in _walk(group):
            item = _describe(cand, kind, key)
            item["hostname"] = pattern
            if group is not vhost:
                item["reason"] = _host_reason(pattern, head.host, False)
            elif cand is winner:
                item["selected"] = True
                item["reason"] = "selected: the first candidate in precedence order that matches"
            else:
                item["reason"] = _why_not(cand, kind, key, head, query)
            out.append(item)
    return out


def _walk(group: Any) -> list[tuple[str, Any, Candidate[RouteAction]]]:
    """The candidates of a host group in the router's order: exact, regex, prefixes from
    the longest."""
    out: list[tuple[str, Any, Candidate[RouteAction]]] = []
    for path, bucket in group.exact.items():
        out += [("Exact", path, c) for c in bucket]
    out += [("RegularExpression", p, c) for p, c in group.regex]
    for prefix in sorted(group.prefix, key=len, reverse=True):
        out += [("PathPrefix", prefix, c) for c in group.prefix[prefix]]
    return out


def _describe(cand: Candidate[RouteAction], kind: str, key: Any) -> dict[str, Any]:
    value = key.pattern if isinstance(key, re.Pattern) else key
    match: dict[str, Any] = {"path": {"type": kind, "value": value.decode("latin-1")}}
    if cand.method is not None:
        match["method"] = cand.method.decode()
    if cand.headers:
        match["headers"] = [_predicate(n.decode(), e, p) for n, e, p in cand.headers]
    if cand.queries:
        match["queryParams"] = [_predicate(n, e, p) for n, e, p in cand.queries]
    return {
        "route": cand.action.route_label,
        "rule": cand.sort_key[-2],
        "match": match,
        "selected": False,
    }


def _predicate(name: str, exact: Any, pattern: Any) -> dict[str, str]:
    if exact is not None:
        value = exact.decode("latin-1") if isinstance(exact, bytes) else exact
        return {"name": name, "type": "Exact", "value": value}
    raw = pattern.pattern if pattern is not None else ""
    value = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    return {"name": name, "type": "RegularExpression", "value": value}


def _why_not(
    cand: Candidate[RouteAction], kind: str, key: Any, head: RequestHead, query: dict[str, str]
) -> str:
    path = head.path
    shown = path.decode("latin-1")
    if kind == "Exact" and path != key:
        return f"path {shown} is not exactly {key.decode('latin-1')}"
    if kind == "RegularExpression" and key.fullmatch(path) is None:
        return f"path {shown} does not match the expression {key.pattern.decode('latin-1')}"
    if kind == "PathPrefix" and key != b"/" and path != key and not path.startswith(key + b"/"):
        return f"path {shown} is not under the prefix {key.decode('latin-1')}"
    if cand.method is not None and head.method != cand.method:
        return f"method {head.method.decode()} is not {cand.method.decode()}"
    for name, exact, pattern in cand.headers:
        got = head.received.get(name)
        if got is None:
            return f"header {name.decode()} is absent"
        if exact is not None and got != exact:
            return f"header {name.decode()} is {got.decode('latin-1')!r}, not {exact.decode()!r}"
        if pattern is not None and pattern.fullmatch(got) is None:
            return f"header {name.decode()} does not match {pattern.pattern.decode()}"
    for qname, qexact, qpattern in cand.queries:
        qgot = query.get(qname)
        if qgot is None:
            return f"query parameter {qname} is absent"
        if qexact is not None and qgot != qexact:
            return f"query parameter {qname} is {qgot!r}, not {qexact!r}"
        if qpattern is not None and qpattern.fullmatch(qgot) is None:
            return f"query parameter {qname} does not match {qpattern.pattern}"
    return "matches too, but an earlier candidate wins by precedence"


def _filters(action: RouteAction) -> dict[str, Any]:
    out: dict[str, Any] = {
        "request": [_filter_name(f) for f in action.request_filters],
        "forward": [_filter_name(f) for f in action.forward_filters],
    }
    if action.rate_limit_name:
        out["rateLimitPolicy"] = action.rate_limit_name
    if action.request_timeout:
        out["requestTimeout"] = action.request_timeout
    if action.backend_timeout:
        out["backendRequestTimeout"] = action.backend_timeout
    return out


def _filter_name(flt: object) -> str:
    inner = getattr(flt, "hooks", None)  # a plugin filter, wrapped by filters.base
    return type(inner if inner is not None else flt).__name__


def _backends(
    action: RouteAction, key: bytes, health: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    out = []
    previous = 0
    total = action.total_weight
    for choice, upto in zip(action.choices, action.cumulative, strict=True):
        weight, previous = upto - previous, upto
        served = choice.overrides.get(key, choice) if key and choice.overrides else choice
        item: dict[str, Any] = {
            "backend": choice.label,
            "weight": weight,
            "share": round(weight / total, 4) if total else 0.0,
            "sandbox": served is not choice,
        }
        item.update(_cluster(served, health))
        item["requestFilters"] = [_filter_name(f) for f in served.request_filters]
        item["responseFilters"] = [_filter_name(f) for f in served.response_filters]
        out.append(item)
    return out


def _cluster(choice: BackendChoice, health: dict[str, dict[str, Any]]) -> dict[str, Any]:
    cluster = choice.cluster
    if cluster is None:
        return {"resolved": False, "endpoints": []}
    endpoints = []
    for ep in cluster.endpoints:
        verdict = health.get(ep.key, {}).get("healthy")
        endpoints.append(
            {
                "address": str(ep.address),
                "weight": ep.weight,
                "healthy": bool(verdict) if verdict is not None else None,
            }
        )
    return {
        "resolved": True,
        "balancer": type(cluster.balancer).__name__,
        "endpoints": endpoints,
    }


def _verdict(action: RouteAction, backends: list[dict[str, Any]]) -> str:
    live = [b for b in backends if b["weight"] > 0]
    if not live:
        return f"route {action.route_label}: no backendRef has weight: 500"
    names = ", ".join(
        f"{b['backend']}{' (sandbox)' if b['sandbox'] else ''} {b['share']:.0%}" for b in live
    )
    unresolved = [b["backend"] for b in live if not b["resolved"]]
    tail = f"; unresolved: {', '.join(unresolved)} (500)" if unresolved else ""
    return f"route {action.route_label} → {names}{tail}"
