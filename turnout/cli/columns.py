"""Table columns per kind for ``turnout get`` (pure functions of a manifest).

Every table has NAME (after NAMESPACE with ``-A``) and AGE; each kind adds what an
operator looks for first — Gateway listeners and addresses, HTTPRoute hostnames, parents
and backends, Backend endpoints, a Sandbox's routing key, overrides, expiry and how many
workers route it — and ``-o wide`` adds the rest: status conditions in one
cell (``Accepted,ResolvedRefs=False(BackendNotFound)``), the owner (``api`` or the file
that defines the object) and the resourceVersion.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from turnout.cli.output import age, human_duration, parse_time
from turnout.config.kinds import KINDS

OWNER_ANNOTATION = "turnout.dev/owner"

Getter = Callable[[dict[str, Any]], str]


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    get: Getter
    wide_only: bool = False


def _d(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _l(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def meta(m: dict[str, Any]) -> dict[str, Any]:
    return _d(m.get("metadata"))


def spec(m: dict[str, Any]) -> dict[str, Any]:
    return _d(m.get("spec"))


def conditions(m: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in _l(_d(m.get("status")).get("conditions")) if isinstance(c, dict)]


def condition_status(m: dict[str, Any], type_: str) -> str:
    for c in conditions(m):
        if c.get("type") == type_:
            return str(c.get("status", "Unknown"))
    return "-"


def conditions_summary(m: dict[str, Any]) -> str:
    parts = []
    for c in conditions(m):
        if c.get("status") == "True":
            parts.append(str(c.get("type")))
        else:
            reason = f"({c.get('reason')})" if c.get("reason") else ""
            parts.append(f"{c.get('type')}={c.get('status', 'Unknown')}{reason}")
    return ",".join(parts) or "-"


def _join(values: list[str], limit: int = 0) -> str:
    values = [v for v in values if v]
    if not values:
        return "-"
    if limit and len(values) > limit:
        return ",".join(values[:limit]) + f",+{len(values) - limit} more"
    return ",".join(values)


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def owner(m: dict[str, Any]) -> str:
    return str(_d(meta(m).get("annotations")).get(OWNER_ANNOTATION, "-"))


def _age(m: dict[str, Any]) -> str:
    ts = meta(m).get("creationTimestamp")
    return age(ts) if ts else "-"


def _rv(m: dict[str, Any]) -> str:
    return str(meta(m).get("resourceVersion") or "-")


def _labels(m: dict[str, Any]) -> str:
    labels = _d(meta(m).get("labels"))
    return ",".join(f"{k}={v}" for k, v in labels.items()) or "<none>"


# -- Gateway ---------------------------------------------------------------------------


def _gw_addresses(m: dict[str, Any]) -> str:
    status_addrs = _l(_d(m.get("status")).get("addresses"))
    addrs = status_addrs or _l(spec(m).get("addresses"))
    return _join([str(_d(a).get("value", "")) for a in addrs])


def _gw_listeners(m: dict[str, Any]) -> str:
    out = []
    for lst in _l(spec(m).get("listeners")):
        lst = _d(lst)
        host = f"{lst['hostname']}:" if lst.get("hostname") else ""
        out.append(f"{lst.get('name')}={host}{lst.get('port')}/{lst.get('protocol')}")
    return _join(out)


# -- HTTPRoute -------------------------------------------------------------------------


def _route_hostnames(m: dict[str, Any]) -> str:
    return (
        _join([str(h) for h in _l(spec(m).get("hostnames"))]) if spec(m).get("hostnames") else "*"
    )


def _ref_name(ref: dict[str, Any], own_ns: str) -> str:
    ns = ref.get("namespace")
    name = f"{ns}/{ref.get('name')}" if ns and ns != own_ns else str(ref.get("name"))
    return name


def _route_parents(m: dict[str, Any]) -> str:
    own = str(meta(m).get("namespace") or "default")
    out = []
    for ref in _l(spec(m).get("parentRefs")):
        ref = _d(ref)
        section = f"/{ref['sectionName']}" if ref.get("sectionName") else ""
        port = f":{ref['port']}" if ref.get("port") else ""
        out.append(_ref_name(ref, own) + section + port)
    return _join(_unique(out))


def _route_backends(m: dict[str, Any], limit: int) -> str:
    own = str(meta(m).get("namespace") or "default")
    out = []
    for rule in _l(spec(m).get("rules")):
        for ref in _l(_d(rule).get("backendRefs")):
            ref = _d(ref)
            port = f":{ref['port']}" if ref.get("port") else ""
            out.append(_ref_name(ref, own) + port)
    return _join(_unique(out), limit)


def _route_rules(m: dict[str, Any]) -> str:
    return str(len(_l(spec(m).get("rules"))))


# -- Backend ---------------------------------------------------------------------------


def _endpoints(m: dict[str, Any], limit: int) -> str:
    return _join([str(_d(e).get("address", "")) for e in _l(spec(m).get("endpoints"))], limit)


def _health(m: dict[str, Any]) -> str:
    """``2/3 healthy`` from the active checks in the status; ``-`` when none run."""
    status = m.get("status")
    items = _l(status.get("endpoints")) if isinstance(status, dict) else []
    checked = [_d(e) for e in items if _d(e).get("health") in ("Healthy", "Unhealthy")]
    if not checked:
        return "-"
    healthy = sum(1 for e in checked if e.get("health") == "Healthy")
    return f"{healthy}/{len(checked)} healthy"


def _lb(m: dict[str, Any]) -> str:
    lb = spec(m).get("loadBalancer")
    kind = _d(lb).get("type") if isinstance(lb, dict) else lb
    return str(kind or "RoundRobin")


def _app_protocol(m: dict[str, Any]) -> str:
    return str(spec(m).get("appProtocol") or "http")


# -- TrafficPolicy -----------------------------------------------------------------------


def _targets(m: dict[str, Any]) -> str:
    out = []
    for ref in _l(spec(m).get("targetRefs")):
        r = _d(ref)
        section = f"/{r['sectionName']}" if r.get("sectionName") else ""
        out.append(f"{r.get('kind', '?')}/{r.get('name', '?')}{section}")
    return _join(out, 3)


def _features(m: dict[str, Any]) -> str:
    names = [k for k in ("rateLimit", "faultInjection", "retry") if spec(m).get(k) is not None]
    return ",".join(names) or "-"


# -- Sandbox / RouteGroup ------------------------------------------------------------------


def routing_key(m: dict[str, Any]) -> str:
    """The key the server resolved (``status.routingKey``; a file-declared object without
    ``spec.routingKey`` gets a derived one), else the one in the spec, else ``-``."""
    return str(_d(m.get("status")).get("routingKey") or spec(m).get("routingKey") or "-")


def override_target(ov: dict[str, Any]) -> str:
    """``127.0.0.1:9100`` (several joined by ``+``) or ``local`` for a ``turnout connect``."""
    if ov.get("local") is not None:
        return "local"
    addrs = [str(_d(e).get("address", "")) for e in _l(ov.get("endpoints"))]
    return "+".join(a for a in addrs if a) or "?"


def _overrides(m: dict[str, Any], limit: int) -> str:
    out = [
        f"{_d(ov).get('backend', '?')}→{override_target(_d(ov))}"
        for ov in _l(spec(m).get("overrides"))
    ]
    return _join(out, limit)


def expires(m: dict[str, Any], now: datetime | None = None) -> str:
    """``in 1h59m`` from ``status.expiresAt``; ``expired`` once past; ``-`` without a ttl."""
    at = parse_time(_d(m.get("status")).get("expiresAt"))
    if at is None:
        return "-"
    left = (at - (now or datetime.now(UTC))).total_seconds()
    return f"in {human_duration(left)}" if left > 0 else "expired"


def routable(m: dict[str, Any]) -> str:
    """``2/2``: workers that route the current version of the object; ``-`` when the
    server does not say (objects from files)."""
    raw = _d(m.get("status")).get("routable")
    if not isinstance(raw, dict):
        return "-"
    workers = [_d(w) for w in _l(raw.get("workers"))]
    if not workers:
        return "-"
    return f"{sum(1 for w in workers if w.get('since'))}/{len(workers)}"


def match_labels(m: dict[str, Any]) -> str:
    labels = _d(_d(spec(m).get("match")).get("labels"))
    return ",".join(f"{k}={v}" for k, v in labels.items()) or "-"


def _description(m: dict[str, Any]) -> str:
    return str(spec(m).get("description") or "-")


# -- tables ------------------------------------------------------------------------------

_TAIL = [
    Column("AGE", _age),
    Column("CONDITIONS", conditions_summary, wide_only=True),
    Column("OWNER", owner, wide_only=True),
    Column("REVISION", _rv, wide_only=True),
]

# Columns by header; each kind's registry entry (config.kinds) names the ones its table
# shows (``columns``, then ``wide_columns`` with ``-o wide``), as a CRD's printer columns do.
GETTERS: dict[str, Getter] = {
    "LABELS": _labels,
    "CONTROLLER": lambda m: str(spec(m).get("controllerName") or "-"),
    "ACCEPTED": lambda m: condition_status(m, "Accepted"),
    "DESCRIPTION": _description,
    "CLASS": lambda m: str(spec(m).get("gatewayClassName") or "-"),
    "ADDRESS": _gw_addresses,
    "LISTENERS": _gw_listeners,
    "PROGRAMMED": lambda m: condition_status(m, "Programmed"),
    "HOSTNAMES": _route_hostnames,
    "PARENTS": _route_parents,
    "BACKENDS": lambda m: _route_backends(m, 3),
    "RULES": _route_rules,
    "ENDPOINTS": lambda m: _endpoints(m, 3),
    "HEALTH": _health,
    "BALANCER": _lb,
    "PROTOCOL": _app_protocol,
    "TARGETS": _targets,
    "FEATURES": _features,
    "KEY": routing_key,
    "OVERRIDES": lambda m: _overrides(m, 3),
    "EXPIRES": expires,
    "ROUTABLE": routable,
    "MATCH": match_labels,
    "NAMESPACES": lambda m: _join([str(n) for n in _l(spec(m).get("namespaces"))], 3),
    "NEXT": lambda m: str(spec(m).get("next") or "-"),
    "BLACKOUTS": lambda m: _join([str(_d(b).get("name")) for b in _l(spec(m).get("blackouts"))]),
}

# In wide output these replace their shortened forms.
_WIDE_REPLACE: dict[str, Getter] = {
    "BACKENDS": lambda m: _route_backends(m, 0),
    "ENDPOINTS": lambda m: _endpoints(m, 0),
    "OVERRIDES": lambda m: _overrides(m, 0),
}


def kind_columns(kind: str) -> list[Column]:
    """The kind's own columns (none for a kind only the server knows), before ``_TAIL``."""
    entry = KINDS.get(kind)
    if entry is None:
        return []
    return [Column(h, GETTERS[h]) for h in entry.columns] + [
        Column(h, GETTERS[h], wide_only=True) for h in entry.wide_columns
    ]


def table(
    kind: str,
    items: list[dict[str, Any]],
    *,
    wide: bool,
    namespaced_column: bool,
    name_prefix: str = "",
) -> tuple[list[str], list[list[str]]]:
    cols = [c for c in [*kind_columns(kind), *_TAIL] if wide or not c.wide_only]
    headers = (["NAMESPACE"] if namespaced_column else []) + ["NAME"] + [c.header for c in cols]
    rows = []
    for m in items:
        row = [str(meta(m).get("namespace") or "-")] if namespaced_column else []
        row.append(name_prefix + str(meta(m).get("name")))
        for c in cols:
            get = _WIDE_REPLACE.get(c.header, c.get) if wide else c.get
            row.append(get(m))
        rows.append(row)
    return headers, rows
