"""Printing: kubectl-style tables (Rich), YAML/JSON manifests, ages and coloured diffs.

Tables are rendered by Rich without borders into a wide off-screen console and written
line by line with trailing blanks stripped, so columns never wrap or get truncated when
piped (a terminal wraps long lines itself, like kubectl). Colour (bold headers, red/green
diff lines) is used only when stdout is a terminal and ``NO_COLOR`` is unset. YAML keeps
key order and prints multi-line strings (diffs) as ``|`` blocks.
"""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table
from rich.text import Text


def colour(stream: Any = None) -> bool:
    stream = stream or sys.stdout
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def write(text: str, *, err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    stream.write(text if text.endswith("\n") or not text else text + "\n")
    stream.flush()


# -- tables ------------------------------------------------------------------------


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, indent: int = 0) -> str:
    tty = colour()
    table = Table(
        box=None,
        pad_edge=False,
        show_edge=False,
        padding=(0, 3, 0, 0),
        header_style="bold" if tty else "",
        show_header=True,
    )
    for h in headers:
        table.add_column(h, no_wrap=True, overflow="ignore")
    for row in rows:
        table.add_row(*(Text(str(c)) for c in row))
    buf = io.StringIO()
    console = Console(
        file=buf,
        width=100_000,
        force_terminal=tty,
        color_system="standard" if tty else None,
        highlight=False,
        legacy_windows=False,
    )
    console.print(table)
    pad = " " * indent
    return "".join(pad + line.rstrip() + "\n" for line in buf.getvalue().splitlines())


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    write(render_table(headers, rows))


# -- manifests ---------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    pass


def _str_representer(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str_representer)


def to_yaml(value: Any) -> str:
    return yaml.dump(
        value, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True
    )


def to_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def as_list(items: list[Any]) -> dict[str, Any]:
    """kubectl's ``kind: List`` wrapper for ``-o yaml|json`` of several objects."""
    return {"apiVersion": "v1", "kind": "List", "items": items, "metadata": {}}


def print_structured(value: Any, fmt: str) -> None:
    write(to_json(value) if fmt == "json" else to_yaml(value))


# -- diffs -------------------------------------------------------------------------


def render_diff(text: str, *, tty: bool | None = None) -> str:
    tty = colour() if tty is None else tty
    if not text.endswith("\n"):
        text += "\n"
    if not tty:
        return text
    out = []
    for line in text.splitlines():
        if line.startswith(("+++", "---")):
            out.append(f"\x1b[1m{line}\x1b[0m")
        elif line.startswith("+"):
            out.append(f"\x1b[32m{line}\x1b[0m")
        elif line.startswith("-"):
            out.append(f"\x1b[31m{line}\x1b[0m")
        elif line.startswith("@@"):
            out.append(f"\x1b[36m{line}\x1b[0m")
        else:
            out.append(line)
    return "\n".join(out) + "\n"


# -- times -------------------------------------------------------------------------


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def human_duration(seconds: float) -> str:
    """kubectl's ``HumanDuration``: ``45s``, ``5m30s``, ``45m``, ``5h30m``, ``30h``,
    ``3d5h``, ``400d``, ``3y``."""
    s = max(int(seconds), 0)
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = s // 3600
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    d = h // 24
    if h < 24 * 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    if d < 365 * 2:
        return f"{d}d"
    return f"{d // 365}y"


def age(value: Any, now: datetime | None = None) -> str:
    ts = parse_time(value)
    if ts is None:
        return "<unknown>"
    now = now or datetime.now(UTC)
    return human_duration((now - ts).total_seconds())


def timestamp(value: Any) -> str:
    """``2026-11-22 03:48:02 UTC (5m ago)`` for a server time, or ``-``."""
    ts = parse_time(value)
    if ts is None:
        return "-" if value in (None, "") else str(value)
    when = ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    delta = (datetime.now(UTC) - ts).total_seconds()
    rel = f"{human_duration(delta)} ago" if delta >= 0 else f"in {human_duration(-delta)}"
    return f"{when} ({rel})"
