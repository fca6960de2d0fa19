"""``trace REQUEST_ID``: one request's hops as a tree with a waterfall, or as JSON.

Reads ``GET /api/v1/trace/requests/{id}``. The tree lists what the gateway did in order
(listener, route, an answer of its own, backend and sandbox override, then each upstream
attempt); every attempt line ends with a bar placed on the request's time line, so
retries and their back-off show at a glance. A request known only from a routing key's
history (no trace) shows its one endpoint and no attempts. The server answers what is
still in its memory, the latest traced or keyed requests.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from turnout.cli.client import connect
from turnout.cli.errors import CliError
from turnout.cli.options import Connection
from turnout.cli.output import write
from turnout.cli.trace import clock, duration

PATH = "/api/v1/trace/requests/"
BAR = 32  # waterfall width in characters


def _text(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def bar(start: float, length: float, total: float, width: int = BAR) -> str:
    """A bar of ``length`` from ``start`` on a time line of ``total`` (all ms)."""
    if total <= 0:
        return "|" + "█" * width + "|"
    first = min(width - 1, int(start / total * width))
    size = max(1, round(length / total * width))
    size = min(size, width - first)
    return "|" + " " * first + "█" * size + " " * (width - first - size) + "|"


def _attempt(item: dict[str, Any], total: float) -> str:
    status = item.get("status")
    outcome = str(status) if status else "failed"
    start, took = _number(item.get("startMs")), _number(item.get("durationMs"))
    resend = item.get("resendCount")
    label = f"attempt {resend + 1 if isinstance(resend, int) else '?'}"
    line = (
        f"{label:<10} {_text(item.get('endpoint')):<22} {outcome:<6} "
        f"{duration(took):>9} {f'at +{start:.1f}ms':<13} {bar(start, took, total)}"
    )
    error = item.get("error")
    return f"{line} {error}" if error and not status else line


def render(flow: dict[str, Any]) -> str:
    """The tree (see the module docstring)."""
    total = _number(flow.get("durationMs"))
    head = (
        f"{_text(flow.get('method'))} {_text(flow.get('path') or flow.get('target'))} "
        f"→ {_text(flow.get('status'))} in {duration(total)}  "
        f"({clock(flow.get('time'))}, request {_text(flow.get('requestId'))})"
    )
    lines = [head]
    if flow.get("traceId"):
        kept = "sampled" if flow.get("sampled") else "kept as an error"
        lines[0] += f"\ntrace {flow['traceId']} ({kept})"
    hops: list[str] = []
    if flow.get("listener"):
        hops.append(f"listener   {flow['listener']}")
    hops.append(f"route      {_text(flow.get('route'))}")
    filters = [str(f) for f in flow.get("filters") or []]
    if filters:
        hops.append(f"filters    {' → '.join(filters)}")
    if flow.get("answeredBy"):
        hops.append(f"answered   by the gateway: {flow['answeredBy']}")
    if flow.get("backend"):
        line = f"backend    {flow['backend']}"
        key = flow.get("routingKey") or flow.get("key")
        if key:
            override = flow.get("sandboxOverride")
            if override is None:
                line += f"  (routing key {key})"
            else:
                line += f"  (routing key {key}: {'sandbox override' if override else 'baseline'})"
        hops.append(line)
    if flow.get("releaseVersion"):
        hops.append(f"release    {flow['releaseVersion']}")
    attempts = [a for a in flow.get("attempts") or [] if isinstance(a, dict)]
    hops.extend(_attempt(a, total) for a in attempts)
    for mirror in flow.get("mirrors") or []:
        if isinstance(mirror, dict):
            line = _attempt(mirror, total).replace("attempt 1 ", "mirror    ", 1)
            hops.append(f"{line}  → {_text(mirror.get('backend'))}")
    if not attempts and "attempts" not in flow and flow.get("endpoint"):
        hops.append(f"endpoint   {flow['endpoint']}  (no trace: hops unknown)")
    for i, hop in enumerate(hops):
        lines.append(("└─ " if i == len(hops) - 1 else "├─ ") + hop)
    return "\n".join(lines)


def show_request(conn: Connection, request_id: str, output: str) -> None:
    if output not in ("table", "json"):
        raise CliError(f"-o must be one of table, json, not {output!r}", 2)
    with connect(conn) as client:
        body = client.get_json(PATH + quote(request_id, safe=""))
    flow = body.get("request") if isinstance(body, dict) else None
    if not isinstance(flow, dict):
        raise CliError(f"the server sent an unexpected answer to GET {PATH}{request_id}")
    if output == "json":
        write(json.dumps(flow, indent=2, ensure_ascii=False))
        return
    write(render(flow))
