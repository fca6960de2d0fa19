"""``get``, ``describe`` and ``delete``: reading and removing objects by kind and name.

Arguments follow kubectl: ``KIND [NAME...]``, ``KIND1,KIND2``, ``all`` (every kind), or
``KIND/NAME...``. Kinds resolve through ``turnout.cli.kinds`` (built-in table, the server
only for unknown names). Lists are fetched page by page (``continue`` tokens) and sorted
by namespace and name. ``delete`` of one object uses ``DELETE``; several objects
(several names, ``--all``, ``-l``) go in one ``POST /api/v1/delete`` so the deletion is a
single revision — all or nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from turnout.cli import columns
from turnout.cli.client import DRY_RUN, Client, connect
from turnout.cli.errors import CliError
from turnout.cli.kinds import BUILTIN, KindInfo, display_of
from turnout.cli.kinds import resolve as resolve_kind
from turnout.cli.options import Connection
from turnout.cli.output import (
    as_list,
    print_structured,
    render_table,
    timestamp,
    to_yaml,
    write,
)

OUTPUTS = ("table", "wide", "yaml", "json", "name")
PAGE = 500


@dataclass(frozen=True, slots=True)
class Query:
    """What to read: per kind, either names or a whole (filtered) list."""

    namespace: str | None  # None: every namespace
    selector: str


@dataclass(slots=True)
class Selection:
    kinds: list[KindInfo]
    names: dict[str, list[str]]  # kind -> names ([] = list)


def parse_args(args: list[str], client: Client) -> Selection:
    """``KIND [NAME...]`` | ``KIND,KIND`` | ``all`` | ``KIND/NAME...`` → kinds and names."""
    if not args:
        raise CliError(
            "say which kind: e.g. `turnout get httproutes` (kinds: "
            + ", ".join(k.plural for k in BUILTIN)
            + ")",
            2,
        )
    if "/" in args[0]:
        sel = Selection([], {})
        for arg in args:
            kind_text, sep, name = arg.partition("/")
            if not sep or not name or not kind_text:
                raise CliError(f"{arg!r}: mix of KIND/NAME and plain arguments; use KIND/NAME", 2)
            info = resolve_kind(kind_text, client)
            if info.kind not in sel.names:
                sel.kinds.append(info)
                sel.names[info.kind] = []
            sel.names[info.kind].append(name)
        return sel
    kinds: list[KindInfo] = []
    for part in args[0].split(","):
        if not part:
            continue
        found = (
            [k for k in BUILTIN if k.namespaced]
            if part.lower() == "all"
            else [resolve_kind(part, client)]
        )
        kinds.extend(k for k in found if k not in kinds)
    names = args[1:]
    for name in names:
        if "/" in name:
            raise CliError(f"{name!r}: a NAME cannot contain '/'", 2)
    if names and len(kinds) > 1:
        raise CliError("NAMEs can be given with one kind only (or use KIND/NAME)", 2)
    return Selection(kinds, {k.kind: list(names) for k in kinds})


def fetch_list(client: Client, info: KindInfo, q: Query) -> list[dict[str, Any]]:
    path = info.collection_path(q.namespace if info.namespaced else None)
    items: list[dict[str, Any]] = []
    cont: str | None = None
    while True:
        body = client.get_json(
            path, params={"labelSelector": q.selector, "limit": PAGE, "continue": cont}
        )
        if not isinstance(body, dict):
            raise CliError(f"the server sent an unexpected answer to GET {path}")
        items.extend(i for i in body.get("items") or [] if isinstance(i, dict))
        cont = (body.get("metadata") or {}).get("continue")
        if not cont:
            break
    items.sort(
        key=lambda m: (columns.meta(m).get("namespace") or "", columns.meta(m).get("name") or "")
    )
    return items


def fetch_one(client: Client, info: KindInfo, namespace: str, name: str) -> dict[str, Any]:
    body = client.get_json(info.object_path(namespace, name))
    if not isinstance(body, dict):
        raise CliError(f"the server sent an unexpected answer for {info.kind} {name}")
    return body


def _namespace(client: Client, namespace: str | None) -> str:
    return namespace or client.target.namespace or "default"


def _collect(
    client: Client, sel: Selection, namespace: str | None, all_namespaces: bool, selector: str
) -> list[tuple[KindInfo, list[dict[str, Any]]]]:
    ns = _namespace(client, namespace)
    out = []
    for info in sel.kinds:
        names = sel.names[info.kind]
        if names:
            if selector:
                raise CliError("a label selector (-l) cannot be combined with NAMEs", 2)
            if all_namespaces:
                raise CliError("-A/--all-namespaces cannot be combined with NAMEs", 2)
            out.append((info, [fetch_one(client, info, ns, n) for n in names]))
        else:
            q = Query(None if all_namespaces else ns, selector)
            out.append((info, fetch_list(client, info, q)))
    return out


def get(
    conn: Connection,
    args: list[str],
    namespace: str | None,
    all_namespaces: bool,
    selector: str,
    output: str,
) -> None:
    if output not in OUTPUTS:
        raise CliError(f"-o must be one of {', '.join(OUTPUTS)}, not {output!r}", 2)
    with connect(conn) as client:
        sel = parse_args(args, client)
        found = _collect(client, sel, namespace, all_namespaces, selector)
        ns = _namespace(client, namespace)
    everything = [m for _, items in found for m in items]
    single = len(sel.kinds) == 1 and len(sel.names[sel.kinds[0].kind]) == 1
    if output in ("yaml", "json"):
        print_structured(everything[0] if single else as_list(everything), output)
        return
    if output == "name":
        write(
            "".join(
                f"{display_of(str(m.get('kind')))}/{columns.meta(m).get('name')}\n"
                for m in everything
            )
        )
        return
    if not everything:
        where = "" if all_namespaces else f" in {ns} namespace"
        cluster_only = all(not k.namespaced for k in sel.kinds)
        write(f"No resources found{'' if cluster_only else where}.", err=True)
        return
    blocks = []
    for info, items in found:
        if not items:
            continue
        prefix = f"{info.display}/" if len(sel.kinds) > 1 else ""
        headers, rows = columns.table(
            info.kind,
            items,
            wide=output == "wide",
            namespaced_column=all_namespaces and info.namespaced,
            name_prefix=prefix,
        )
        blocks.append(render_table(headers, rows))
    write("\n".join(blocks))


# -- describe --------------------------------------------------------------------------


def describe(
    conn: Connection, args: list[str], namespace: str | None, all_namespaces: bool, selector: str
) -> None:
    with connect(conn) as client:
        sel = parse_args(args, client)
        found = _collect(client, sel, namespace, all_namespaces, selector)
        ns = _namespace(client, namespace)
    everything = [m for _, items in found for m in items]
    if not everything:
        write(f"No resources found{'' if all_namespaces else f' in {ns} namespace'}.", err=True)
        return
    write("\n\n".join(render_describe(m) for m in everything))


def render_describe(m: dict[str, Any]) -> str:
    meta = columns.meta(m)
    lines: list[str] = []

    def field(label: str, value: Any) -> None:
        lines.append(f"{label + ':':<18}{value}")

    field("Name", meta.get("name"))
    if meta.get("namespace"):
        field("Namespace", meta.get("namespace"))
    field("Kind", m.get("kind"))
    field("API Version", m.get("apiVersion"))
    _mapping(lines, "Labels", meta.get("labels"))
    annotations = {
        k: v for k, v in (meta.get("annotations") or {}).items() if k != columns.OWNER_ANNOTATION
    }
    _mapping(lines, "Annotations", annotations)
    field("Owner", columns.owner(m))
    field("Created", timestamp(meta.get("creationTimestamp")))
    field("Resource Version", meta.get("resourceVersion") or "-")
    field("Generation", meta.get("generation") or "-")
    lines.append("Spec:")
    spec = m.get("spec")
    if spec:
        lines.extend("  " + ln for ln in to_yaml(spec).rstrip("\n").splitlines())
    else:
        lines.append("  <none>")
    conds = columns.conditions(m)
    lines.append("Conditions:")
    if conds:
        rows = [
            [
                str(c.get("type", "")),
                str(c.get("status", "")),
                str(c.get("reason", "")),
                str(c.get("observedGeneration", "")),
                str(c.get("message", "")),
            ]
            for c in conds
        ]
        lines.append(
            render_table(
                ["TYPE", "STATUS", "REASON", "GENERATION", "MESSAGE"], rows, indent=2
            ).rstrip("\n")
        )
    else:
        lines.append("  <none>")
    workers = (m.get("status") or {}).get("workers") if isinstance(m.get("status"), dict) else None
    if isinstance(workers, list) and workers:
        lines.append("Workers:")
        rows = [
            [str(w.get("pid", "")), str(w.get("revision", "")), str(w.get("storeRevision", "-"))]
            for w in workers
            if isinstance(w, dict)
        ]
        lines.append(
            render_table(["PID", "REVISION", "STORE REVISION"], rows, indent=2).rstrip("\n")
        )
    return "\n".join(lines)


def _mapping(lines: list[str], label: str, value: Any) -> None:
    items = list(value.items()) if isinstance(value, dict) else []
    if not items:
        lines.append(f"{label + ':':<18}<none>")
        return
    for i, (k, v) in enumerate(items):
        lines.append(f"{(label + ':') if i == 0 else '':<18}{k}={v}")


# -- delete ----------------------------------------------------------------------------


def delete(
    conn: Connection,
    args: list[str],
    namespace: str | None,
    selector: str,
    all_objects: bool,
    ignore_not_found: bool,
    dry_run: bool,
    message: str | None,
) -> None:
    suffix = " (dry run)" if dry_run else ""
    with connect(conn) as client:
        sel = parse_args(args, client)
        ns = _namespace(client, namespace)
        targets: list[tuple[KindInfo, str, str]] = []
        for info in sel.kinds:
            names = sel.names[info.kind]
            target_ns = ns if info.namespaced else ""
            if names:
                if selector or all_objects:
                    raise CliError("NAMEs cannot be combined with -l or --all", 2)
                targets.extend((info, target_ns, n) for n in names)
                continue
            if not (selector or all_objects):
                raise CliError(
                    f"say which {info.plural} to delete: NAME..., -l SELECTOR or --all", 2
                )
            for m in fetch_list(client, info, Query(ns, selector)):
                targets.append(
                    (
                        info,
                        str(columns.meta(m).get("namespace") or ""),
                        str(columns.meta(m).get("name")),
                    )
                )
        if not targets:
            write(f"No resources found in {ns} namespace.", err=True)
            return
        params = {**(DRY_RUN if dry_run else {}), "message": message}
        if len(targets) == 1:
            info, target_ns, name = targets[0]
            try:
                client.call("DELETE", info.object_path(target_ns, name), params=params)
            except CliError as exc:
                if ignore_not_found and exc.status == 404:
                    return
                raise
            write(f"{info.display}/{name} deleted{suffix}")
            return
        manifests = [
            {
                "apiVersion": info.api_version,
                "kind": info.kind,
                "metadata": {"name": name, **({"namespace": t_ns} if t_ns else {})},
            }
            for info, t_ns, name in targets
        ]
        body = client.call("POST", "/api/v1/delete", params=params, json={"manifests": manifests})
    print_delete_results(body, suffix, ignore_not_found)


def print_delete_results(body: Any, suffix: str, ignore_not_found: bool) -> None:
    missing = 0
    for r in (body or {}).get("results") or []:
        name = f"{display_of(str(r.get('kind')))}/{r.get('name')}"
        if r.get("action") == "deleted":
            write(f"{name} deleted{suffix}")
        else:
            missing += 1
            if not ignore_not_found:
                write(f"{name} {r.get('action') or 'not found'}", err=True)
    if missing and not ignore_not_found:
        raise CliError(f"{missing} object(s) not found (--ignore-not-found to accept)")
