"""``sandbox`` and ``routegroup``: create, list, get and delete, with the lines to paste.

``create`` builds the manifest from flags, POSTs it, and prints the routing key the server
answered with (``spec.routingKey``: generated when ``--key`` is absent), the expiry, and
ready-to-paste lines — a ``curl``, the ``baggage`` header and a preview link — for the
gateway's address: ``--gateway``, else the first HTTP listener of the Gateways the API
lists, with a wildcard address (``0.0.0.0``, ``::``) replaced by the admin server's host.
It then waits (``--wait``) until every worker routes the key
(``status.routable.allWorkersSince``) and says how long that took, measured by this
client from sending the POST until a poll of the object saw it routable.

``list`` and ``delete`` are ``get``/``delete`` of the kind (``turnout.cli.resources``);
``get`` prints a summary: key, overrides or matched sandboxes, expiry, routability per
worker, conditions, and the same paste lines.
"""

from __future__ import annotations

import ipaddress
import time
from datetime import UTC
from typing import Any
from urllib.parse import urlsplit

from turnout.cli import columns, resources
from turnout.cli.client import DRY_RUN, Client, connect
from turnout.cli.errors import CliError
from turnout.cli.kinds import KindInfo, builtin
from turnout.cli.options import Connection
from turnout.cli.output import parse_time, print_structured, render_table, timestamp, write
from turnout.cli.resources import Query, fetch_list, fetch_one
from turnout.cli.tokens import normalise_ttl

POLL_SECONDS = 0.05
HEADER = "baggage"
BAGGAGE_MEMBER = "turnout-routing-key"  # turnout.core.routing_keys.BAGGAGE_KEYS[0]
PLACEHOLDER = "http://GATEWAY"
LABEL_WIDTH = 14


def _kind(name: str) -> KindInfo:
    info = builtin(name)
    assert info is not None, name
    return info


SANDBOX = _kind("Sandbox")
ROUTE_GROUP = _kind("RouteGroup")
GATEWAY = _kind("Gateway")
WORD = {"Sandbox": "sandbox", "RouteGroup": "routegroup"}


# -- flags → manifests -------------------------------------------------------------------


def parse_pairs(values: list[str], flag: str) -> dict[str, str]:
    """``k=v`` flags (``--label``, ``--match``) into a mapping; a repeated key keeps the
    last value, like kubectl's ``--labels``."""
    out: dict[str, str] = {}
    for raw in values:
        key, sep, value = raw.partition("=")
        if not sep or not key.strip():
            raise CliError(f"{flag} {raw!r}: expected KEY=VALUE", 2)
        out[key.strip()] = value.strip()
    return out


def parse_overrides(overrides: list[str], local: list[str]) -> list[dict[str, Any]]:
    """``--override BACKEND=HOST:PORT[,HOST:PORT...]`` and ``--local BACKEND`` into
    ``spec.overrides``, in the order given (``--local`` ones last). A backend given twice
    is sent as given: the server refuses it and says where."""
    out: list[dict[str, Any]] = []
    for raw in overrides:
        backend, sep, addrs = raw.partition("=")
        endpoints = [a.strip() for a in addrs.split(",") if a.strip()]
        if not sep or not backend.strip() or not endpoints:
            raise CliError(
                f"--override {raw!r}: expected BACKEND=HOST:PORT[,HOST:PORT...] "
                "(e.g. orders=127.0.0.1:9100)",
                2,
            )
        out.append({"backend": backend.strip(), "endpoints": [{"address": a} for a in endpoints]})
    for backend in local:
        if not backend.strip() or "=" in backend:
            raise CliError(f"--local {backend!r}: expected a Backend name (e.g. payments)", 2)
        out.append({"backend": backend.strip(), "local": {}})
    return out


def _metadata(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"name": name, **({"labels": labels} if labels else {})}


def sandbox_manifest(
    name: str,
    overrides: list[dict[str, Any]],
    *,
    key: str | None = None,
    ttl: str | None = None,
    labels: dict[str, str] | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if key:
        spec["routingKey"] = key
    if ttl:
        spec["ttl"] = normalise_ttl(ttl)
    if description:
        spec["description"] = description
    spec["overrides"] = overrides
    return {
        "apiVersion": SANDBOX.api_version,
        "kind": SANDBOX.kind,
        "metadata": _metadata(name, labels or {}),
        "spec": spec,
    }


def route_group_manifest(
    name: str,
    match: dict[str, str],
    *,
    key: str | None = None,
    labels: dict[str, str] | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if key:
        spec["routingKey"] = key
    spec["match"] = {"labels": match}
    if description:
        spec["description"] = description
    return {
        "apiVersion": ROUTE_GROUP.api_version,
        "kind": ROUTE_GROUP.kind,
        "metadata": _metadata(name, labels or {}),
        "spec": spec,
    }


# -- the gateway's address ---------------------------------------------------------------


def _host(ip: str) -> str:
    try:
        return f"[{ip}]" if ipaddress.ip_address(ip).version == 6 else ip
    except ValueError:
        return ip


def listener_url(gateways: list[dict[str, Any]], admin_host: str) -> str | None:
    """``http://HOST:PORT`` of the first HTTP listener (else HTTPS) of ``gateways``, bound
    to the Gateway's first IPAddress, or every address (``0.0.0.0``) when it names none —
    the way the gateway binds it; a wildcard address becomes ``admin_host``."""
    for protocol in ("HTTP", "HTTPS"):
        for gw in gateways:
            spec = columns.spec(gw)
            ips = [
                str(a.get("value"))
                for a in spec.get("addresses") or []
                if isinstance(a, dict) and a.get("type", "IPAddress") == "IPAddress"
            ]
            ip = ips[0] if ips else "0.0.0.0"
            if ip in ("0.0.0.0", "::", ""):
                ip = admin_host
            for lst in spec.get("listeners") or []:
                if not isinstance(lst, dict) or str(lst.get("protocol", "")).upper() != protocol:
                    continue
                scheme = protocol.lower()
                port = lst.get("port")
                default = {"http": 80, "https": 443}[scheme]
                suffix = "" if port in (None, default) else f":{port}"
                return f"{scheme}://{_host(ip)}{suffix}"
    return None


def gateway_url(client: Client, given: str | None) -> str | None:
    """``--gateway`` (``http://`` added when it has no scheme), else from the Gateways the
    token may list; ``None`` when there is none."""
    if given:
        url = given.strip().rstrip("/")
        return url if "://" in url else f"http://{url}"
    try:
        gateways = fetch_list(client, GATEWAY, Query(None, ""))
    except CliError:
        return None
    admin_host = urlsplit(client.target.server).hostname or "127.0.0.1"
    return listener_url(gateways, admin_host)


def paste_lines(key: str, url: str | None) -> list[str]:
    base = url or PLACEHOLDER
    header = f"{HEADER}: {BAGGAGE_MEMBER}={key}"
    lines = [] if url else ["# no Gateway listener found: replace GATEWAY, or pass --gateway URL"]
    return [
        *lines,
        "# send a request with the key:",
        f"curl -H '{header}' {base}/",
        "# or add this header to any request through the gateway:",
        header,
        "# or open this preview link (it sets a cookie, so the browser keeps the key):",
        f"{base}/?{BAGGAGE_MEMBER}={key}",
    ]


# -- waiting until routable ---------------------------------------------------------------


def _routable(m: dict[str, Any]) -> dict[str, Any] | None:
    raw = (m.get("status") or {}).get("routable") if isinstance(m.get("status"), dict) else None
    return raw if isinstance(raw, dict) else None


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def wait_routable(
    client: Client, info: KindInfo, namespace: str, name: str, started: float, wait: float
) -> tuple[dict[str, Any] | None, str, bool]:
    """Poll the object until ``status.routable.allWorkersSince`` is set or ``wait`` seconds
    pass: ``(last object, message, routable)``. The time is this client's, from
    ``started`` (just before the POST) to the poll that saw it."""
    deadline = time.monotonic() + wait
    while True:
        obj = fetch_one(client, info, namespace, name)
        routable = _routable(obj)
        if routable is None:
            return obj, "", False  # the server does not report routability
        workers = [w for w in routable.get("workers") or [] if isinstance(w, dict)]
        if routable.get("allWorkersSince") and workers:
            ms = round((time.monotonic() - started) * 1000)
            return obj, f"routable in all {_plural(len(workers), 'worker')} after {ms} ms", True
        if time.monotonic() >= deadline:
            done = sum(1 for w in workers if w.get("since"))
            return (
                obj,
                f"not routable in every worker after {wait:g} s ({done}/{len(workers)} "
                f"workers); see `turnout {WORD[info.kind]} get {name} -n {namespace}`",
                False,
            )
        time.sleep(POLL_SECONDS)


# -- create ------------------------------------------------------------------------------


def _field(label: str, value: Any) -> str:
    return f"{label + ':':<{LABEL_WIDTH}}{value}"


def _override_text(ov: dict[str, Any]) -> str:
    target = columns.override_target(ov)
    shown = "local (turnout connect)" if target == "local" else target.replace("+", ", ")
    return f"{ov.get('backend', '?')} → {shown}"


def _expiry(m: dict[str, Any]) -> str:
    at = (m.get("status") or {}).get("expiresAt") if isinstance(m.get("status"), dict) else None
    return timestamp(at) if at else "never"


def _warnings(m: dict[str, Any]) -> list[str]:
    """Conditions that say the object does less than asked (e.g. an override of a Backend
    that does not exist yet); ``Programmed`` pending is what ``--wait`` is for."""
    return [
        str(c.get("message") or f"{c.get('type')}: {c.get('reason')}")
        for c in columns.conditions(m)
        if c.get("status") != "True" and c.get("type") != "Programmed"
    ]


def matched_sandboxes(client: Client, group: dict[str, Any]) -> list[dict[str, Any]]:
    """The Sandboxes of the group's namespace whose labels match its ``spec.match``."""
    ns = str(columns.meta(group).get("namespace") or "default")
    wanted = (columns.spec(group).get("match") or {}).get("labels") or {}
    if not isinstance(wanted, dict) or not wanted:
        return []
    selector = ",".join(f"{k}={v}" for k, v in wanted.items())
    return fetch_list(client, SANDBOX, Query(ns, selector))


def _sandbox_list(items: list[dict[str, Any]]) -> str:
    if not items:
        return "none yet"
    return ", ".join(str(columns.meta(s).get("name")) for s in items)


def create(
    conn: Connection,
    manifest: dict[str, Any],
    namespace: str | None,
    *,
    output: str,
    dry_run: bool,
    wait: float,
    gateway: str | None,
    message: str | None,
) -> None:
    if output not in ("text", "yaml", "json"):
        raise CliError(f"-o must be text, yaml or json, not {output!r}", 2)
    if wait < 0:
        raise CliError("--wait must be >= 0", 2)
    info = _kind(str(manifest["kind"]))
    word = WORD[info.kind]
    name = str(manifest["metadata"]["name"])
    with connect(conn) as client:
        ns = namespace or client.target.namespace or "default"
        manifest["metadata"]["namespace"] = ns
        params = {**(DRY_RUN if dry_run else {}), "message": message}
        started = time.monotonic()
        body = client.call("POST", info.collection_path(ns), params=params, json=manifest)
        if not isinstance(body, dict):
            raise CliError(f"the server sent an unexpected answer to creating {word} {name}")
        final, note, routable = body, "", False
        if not dry_run and wait > 0:
            found, note, routable = wait_routable(client, info, ns, name, started, wait)
            final = found or body
        text = output == "text"
        url = gateway_url(client, gateway) if text and not dry_run else None
        members = matched_sandboxes(client, final) if text and info is ROUTE_GROUP else []
    if not text:
        print_structured(final, output)
        if note:
            write(note, err=True)
        return
    key = columns.routing_key(final)
    if dry_run:
        write(f"{word} {ns}/{name} created (dry run)")
        if manifest["spec"].get("routingKey"):
            write(_field("Routing key", key))
        else:
            write(_field("Routing key", "generated by the server at creation"))
        return
    lines = [f"{word} {ns}/{name} created", _field("Routing key", key)]
    spec = columns.spec(final)
    if info is SANDBOX:
        lines.append(_field("Expires", _expiry(final)))
        overrides = [_override_text(o) for o in spec.get("overrides") or [] if isinstance(o, dict)]
        lines.append(_field("Overrides", ", ".join(overrides) or "none"))
    else:
        lines.append(_field("Match", columns.match_labels(final)))
        lines.append(_field("Sandboxes", _sandbox_list(members)))
    write("\n".join(lines))
    for warning in _warnings(final):
        write(f"warning: {warning}", err=True)
    if note:
        write(note, err=not routable)
    write("\n" + "\n".join(paste_lines(key, url)))


# -- list / get / delete -----------------------------------------------------------------


def list_objects(
    conn: Connection,
    info: KindInfo,
    namespace: str | None,
    all_namespaces: bool,
    selector: str,
    output: str,
) -> None:
    resources.get(conn, [info.plural], namespace, all_namespaces, selector, output)


def delete(
    conn: Connection,
    info: KindInfo,
    names: list[str],
    namespace: str | None,
    ignore_not_found: bool,
    dry_run: bool,
    message: str | None,
) -> None:
    if not names:
        raise CliError(f"say which {info.plural} to delete: NAME...", 2)
    resources.delete(
        conn, [info.plural, *names], namespace, "", False, ignore_not_found, dry_run, message
    )


def _ms_time(value: Any) -> str:
    ts = parse_time(value)
    if ts is None:
        return "-"
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def get(
    conn: Connection,
    info: KindInfo,
    name: str,
    namespace: str | None,
    output: str,
    gateway: str | None,
) -> None:
    if output not in ("text", "yaml", "json"):
        raise CliError(f"-o must be text, yaml or json, not {output!r}", 2)
    with connect(conn) as client:
        ns = namespace or client.target.namespace or "default"
        obj = fetch_one(client, info, ns, name)
        if output != "text":
            print_structured(obj, output)
            return
        url = gateway_url(client, gateway)
        members = matched_sandboxes(client, obj) if info is ROUTE_GROUP else []
    write(render(obj, members, url))


def render(obj: dict[str, Any], members: list[dict[str, Any]], url: str | None) -> str:
    """The text of ``sandbox get`` / ``routegroup get``."""
    meta = columns.meta(obj)
    spec = columns.spec(obj)
    key = columns.routing_key(obj)
    labels = meta.get("labels") or {}
    lines = [
        _field("Name", meta.get("name")),
        _field("Namespace", meta.get("namespace") or "default"),
        _field("Labels", ",".join(f"{k}={v}" for k, v in labels.items()) or "<none>"),
        _field("Owner", columns.owner(obj)),
        _field("Created", timestamp(meta.get("creationTimestamp"))),
        _field("Routing key", key),
    ]
    if spec.get("description"):
        lines.append(_field("Description", spec["description"]))
    if obj.get("kind") == "Sandbox":
        if spec.get("ttl"):
            lines.append(_field("TTL", spec["ttl"]))
        lines.append(_field("Expires", _expiry(obj)))
        overrides = [o for o in spec.get("overrides") or [] if isinstance(o, dict)]
        lines.append("Overrides:" if overrides else _field("Overrides", "<none>"))
        if overrides:
            rows = [
                [str(o.get("backend", "?")), _override_text(o).split(" → ", 1)[1]]
                for o in overrides
            ]
            lines.append(render_table(["BACKEND", "TARGET"], rows, indent=2).rstrip("\n"))
    else:
        lines.append(_field("Match", columns.match_labels(obj)))
        lines.append(_field("Sandboxes", _sandbox_list(members)))
        for sb in members:
            for ov in columns.spec(sb).get("overrides") or []:
                if isinstance(ov, dict):
                    lines.append(f"  {columns.meta(sb).get('name')}: {_override_text(ov)}")
    routable = _routable(obj)
    if routable is None:
        lines.append(_field("Routable", "- (not reported for objects from files)"))
    else:
        workers = [w for w in routable.get("workers") or [] if isinstance(w, dict)]
        done = sum(1 for w in workers if w.get("since"))
        since = routable.get("allWorkersSince")
        state = (
            f"in all {_plural(len(workers), 'worker')} since {_ms_time(since)}"
            if since and workers
            else f"in {done}/{len(workers)} workers"
        )
        lines.append(_field("Routable", state))
        if workers:
            rows = [[str(w.get("pid", "-")), _ms_time(w.get("since"))] for w in workers]
            lines.append(render_table(["PID", "SINCE"], rows, indent=2).rstrip("\n"))
    conds = columns.conditions(obj)
    lines.append("Conditions:" if conds else _field("Conditions", "<none>"))
    if conds:
        rows = [
            [
                str(c.get("type", "")),
                str(c.get("status", "")),
                str(c.get("reason", "")),
                str(c.get("message", "")),
            ]
            for c in conds
        ]
        lines.append(
            render_table(["TYPE", "STATUS", "REASON", "MESSAGE"], rows, indent=2).rstrip("\n")
        )
    if key != "-":
        lines.append("")
        lines.extend(paste_lines(key, url))
    return "\n".join(lines)
