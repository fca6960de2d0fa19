"""``turnout explain METHOD URL [-H 'name: value'] [-f FILE]``: how a request would be routed.

Without ``-f`` it asks the server (``POST /api/v1/explain``), which answers from the
revision it serves; with ``-f`` it runs the same code (``proxy.explain``) on the files,
compiled as revision 0, without a server. Prints a readable report, or the JSON answer
with ``-o json``; exits 1 when the request would get no route.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console

from turnout.cli.client import connect
from turnout.cli.errors import CliError
from turnout.cli.options import Connection

OUTPUTS = ("text", "json")


def parse_headers(values: list[str]) -> list[tuple[str, str]]:
    out = []
    for value in values:
        name, sep, rest = value.partition(":")
        if not sep or not name.strip():
            raise CliError(f"-H {value!r}: expected 'name: value'")
        out.append((name.strip(), rest.strip()))
    return out


def run(
    conn: Connection,
    method: str,
    url: str,
    headers: list[str],
    files: list[str],
    output: str,
) -> int:
    if output not in OUTPUTS:
        raise CliError(f"-o {output!r}: expected one of {', '.join(OUTPUTS)}")
    pairs = parse_headers(headers)
    answer = local(files, method, url, pairs) if files else remote(conn, method, url, pairs)
    if output == "json":
        print(json.dumps(answer, indent=2))
    else:
        render(answer, Console(highlight=False, soft_wrap=True))
    return 0 if "route" in answer else 1


def remote(conn: Connection, method: str, url: str, pairs: list[tuple[str, str]]) -> Any:
    with connect(conn) as client:
        body = {"method": method, "url": url, "headers": dict(pairs)}
        return client.call("POST", "/api/v1/explain", json=body)


def local(files: list[str], method: str, url: str, pairs: list[tuple[str, str]]) -> Any:
    from turnout.config.files import load_files
    from turnout.config.problems import ConfigError
    from turnout.proxy.explain import ExplainError, ExplainRequest, explain

    config, problems = load_files(files)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise CliError("; ".join(str(p) for p in errors[:5]))
    try:
        return explain(config, 0, ExplainRequest(method, url, pairs))
    except ExplainError as exc:
        raise CliError(str(exc)) from None
    except ConfigError as exc:  # a CompileError: TLS material OpenSSL refuses
        raise CliError("; ".join(str(p) for p in exc.problems[:5])) from None


def render(answer: dict[str, Any], out: Console) -> None:
    req = answer["request"]
    target = req["path"] + (f"?{req['query']}" if req["query"] else "")
    out.print(
        f"[bold]{req['method']} {req['scheme']}://{req['host']}:{req['port']}{target}[/bold]"
        f"  (revision {answer['revision']})"
    )
    for lst in answer.get("listeners", []):
        mark = "[green]✓[/green]" if lst["selected"] else "[dim]✗[/dim]"
        host = lst["hostname"] or "(any host)"
        out.print(f"  listener {mark} {lst['gateway']}/{lst['name']} {host}: {lst['reason']}")
    for cand in answer.get("candidates", []):
        mark = "[green]✓[/green]" if cand["selected"] else "[dim]✗[/dim]"
        out.print(
            f"  route    {mark} {cand['route']} rule {cand['rule']} {_match(cand['match'])}: "
            f"{cand['reason']}"
        )
    key = answer.get("routingKey")
    if key:
        owner = key["owner"] or "no Sandbox or RouteGroup (ignored)"
        out.print(f"  routing key {key['key']!r}: {owner}")
    filters = answer.get("filters")
    if filters:
        names = ", ".join(filters["request"] + filters["forward"]) or "none"
        out.print(f"  filters  {names}")
        if "rateLimitPolicy" in filters:
            out.print(f"  rate limit from {filters['rateLimitPolicy']}")
    for backend in answer.get("backends", []):
        sandbox = " [yellow](sandbox endpoints)[/yellow]" if backend["sandbox"] else ""
        out.print(
            f"  backend  {backend['backend']} weight {backend['weight']} "
            f"({backend['share']:.0%}){sandbox} {backend.get('balancer', 'unresolved')}"
        )
        for ep in backend["endpoints"]:
            health = {True: "healthy", False: "unhealthy", None: "not checked"}[ep["healthy"]]
            out.print(f"           → {ep['address']} weight {ep['weight']} ({health})")
    out.print(f"[bold]{answer['verdict']}[/bold]")


def _match(match: dict[str, Any]) -> str:
    parts = [f"{match['path']['type']} {match['path']['value']}"]
    if "method" in match:
        parts.append(match["method"])
    for h in match.get("headers", []):
        parts.append(f"{h['name']}{'=' if h['type'] == 'Exact' else '~'}{h['value']}")
    for q in match.get("queryParams", []):
        parts.append(f"?{q['name']}{'=' if q['type'] == 'Exact' else '~'}{q['value']}")
    return "[" + " ".join(parts) + "]"
