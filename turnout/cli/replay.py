"""What a planned step would have changed on recorded traffic (``turnout runbook test``).

The recorded traffic is the server's access-log ring (``GET /api/v1/logs``: the latest
10,000 requests of the replica answering, with ``route``, ``backend``, ``endpoint``,
``client``, ``consumer`` and ``routing_key`` when the access log writes them). For each
data-plane step the replay counts the requests it would have touched in the window:
a shed answers its share of the route's requests with 503 (an expected count, the draw
is random), a block the requests of those clients or Consumers, an ejection moves the
endpoint's requests to the others, a weight shift moves its share of the source
backend's requests, an open circuit fails every request to the backend, a pinned key
sends its requests to the baseline. Steps without a traffic effect (notify, verify,
release commands, a rollback) say so. Sampled-out requests are not in the log: with
``--access-log-sample`` below 1 the counts of 2xx/3xx traffic are low by that factor.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

Entry = dict[str, Any]


def _route(ns: str, params: dict[str, Any]) -> str:
    return f"{ns}/{params.get('route', '')}"


def _of(entries: list[Entry], field: str, value: str) -> list[Entry]:
    return [e for e in entries if e.get(field) == value]


def _in_networks(client: object, networks: list[Any]) -> bool:
    try:
        address = ipaddress.ip_address(str(client))
    except ValueError:
        return False
    return any(address in net for net in networks)


def _shed(ns: str, p: dict[str, Any], entries: list[Entry]) -> str:
    hits = _of(entries, "route", _route(ns, p))
    share = int(p.get("percent", 0))
    return f"~{len(hits) * share // 100} of {len(hits)} requests of {_route(ns, p)} answered 503"


def _block_clients(ns: str, p: dict[str, Any], entries: list[Entry]) -> str:
    nets = [ipaddress.ip_network(str(c), strict=False) for c in p.get("clients") or ()]
    hits = _of(entries, "route", _route(ns, p))
    blocked = [e for e in hits if _in_networks(e.get("client"), nets)]
    return f"{len(blocked)} of {len(hits)} requests of {_route(ns, p)} answered 403"


def _block_consumers(ns: str, p: dict[str, Any], entries: list[Entry]) -> str:
    names = set(p.get("consumers") or ())
    hits = _of(entries, "route", _route(ns, p))
    blocked = [e for e in hits if e.get("consumer") in names]
    return f"{len(blocked)} of {len(hits)} requests of {_route(ns, p)} answered 403"


def _eject(ns: str, p: dict[str, Any], entries: list[Entry]) -> str:
    backend = f"{ns}/{p.get('backend', '')}"
    hits = _of(entries, "backend", backend)
    moved = _of(hits, "endpoint", str(p.get("endpoint", "")))
    return (
        f"{len(moved)} of {len(hits)} requests to {backend} sent to its other endpoints "
        f"instead of {p.get('endpoint')}"
    )


def _shift(ns: str, p: dict[str, Any], entries: list[Entry]) -> str:
    hits = _of(entries, "route", _route(ns, p))
    source = _of(hits, "backend", f"{ns}/{p.get('from', '')}")
    share = int(p.get("percent", 0))
    return (
        f"~{min(len(hits) * share // 100, len(source))} of {len(hits)} requests of "
        f"{_route(ns, p)} sent to {p.get('to')} instead of {p.get('from')}"
    )


def _circuit(ns: str, p: dict[str, Any], entries: list[Entry]) -> str:
    backend = f"{ns}/{p.get('backend', '')}"
    return f"{len(_of(entries, 'backend', backend))} requests to {backend} answered 503"


def _pin(ns: str, p: dict[str, Any], entries: list[Entry]) -> str:
    keys = set(p.get("keys") or ())
    hits = _of(entries, "route", _route(ns, p))
    pinned = [e for e in hits if e.get("routing_key") in keys]
    return f"{len(pinned)} of {len(hits)} requests of {_route(ns, p)} sent to the baseline"


def _tighten(ns: str, p: dict[str, Any], entries: list[Entry]) -> str:
    hits = _of(entries, "route", _route(ns, p))
    return (
        f"{len(hits)} requests of {_route(ns, p)} counted against limits cut to "
        f"{p.get('percent')}% (which would have been refused depends on the limits' keys)"
    )


IMPACT: dict[str, Callable[[str, dict[str, Any], list[Entry]], str]] = {
    "shed": _shed,
    "block_clients": _block_clients,
    "block_consumers": _block_consumers,
    "eject_endpoint": _eject,
    "shift_weight": _shift,
    "open_circuit": _circuit,
    "pin_routing_key": _pin,
    "tighten_rate_limit": _tighten,
}


def impact(step: dict[str, Any], namespace: str, entries: list[Entry]) -> str:
    """What ``step`` (a planned step: action, rendered params) would have changed."""
    if step.get("skip"):
        return "nothing (skipped)"
    fn = IMPACT.get(str(step.get("action")))
    if fn is None:
        return "no direct effect on traffic"
    try:
        return fn(namespace, dict(step.get("params") or {}), entries)
    except (ValueError, TypeError) as exc:
        return f"cannot tell ({exc})"


def requests_only(entries: list[Entry]) -> list[Entry]:
    return [e for e in entries if e.get("type") == "request"]
