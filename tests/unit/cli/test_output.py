"""Ages, tables, kinds and per-kind columns (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from turnout.cli import columns
from turnout.cli.errors import ServerProblem
from turnout.cli.kinds import BUILTIN, KindInfo, match
from turnout.cli.output import age, human_duration, render_diff, render_table, to_yaml


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (119, "119s"),
        (150, "2m30s"),
        (600, "10m"),
        (3 * 3600 + 5, "3h"),
        (5 * 3600 + 30 * 60, "5h30m"),
        (30 * 3600, "30h"),
        (3 * 86400 + 5 * 3600, "3d5h"),
        (400 * 86400, "400d"),
        (3 * 365 * 86400, "3y"),
        (-5, "0s"),
    ],
)
def test_human_duration(seconds: int, text: str) -> None:
    assert human_duration(seconds) == text


def test_age_of_timestamps() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert age("2026-01-02T03:03:05Z", now) == "60s"
    assert age((now - timedelta(days=2)).isoformat(), now) == "2d"
    assert age("not a time", now) == "<unknown>"


def test_tables_have_no_trailing_blanks_and_never_truncate() -> None:
    long = "x" * 300
    out = render_table(["NAME", "VALUE"], [["a", long], ["bbbb", "1"]])
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "VALUE"]
    assert lines[1] == "a      " + long
    assert lines[2] == "bbbb   1"
    assert all(line == line.rstrip() for line in lines)


def test_rich_markup_in_values_is_printed_verbatim() -> None:
    out = render_table(["NAME"], [["[bold]x[/bold]"]])
    assert "[bold]x[/bold]" in out


def test_yaml_uses_block_strings_for_diffs() -> None:
    assert to_yaml({"diff": "a\nb\n"}) == "diff: |\n  a\n  b\n"


def test_diff_colour_only_on_a_terminal() -> None:
    text = "--- a\n+++ b\n@@ -1 +1 @@\n-x\n+y\n"
    assert render_diff(text, tty=False) == text
    coloured = render_diff(text, tty=True)
    assert "\x1b[31m-x\x1b[0m" in coloured and "\x1b[32m+y\x1b[0m" in coloured


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("HTTPRoute", "HTTPRoute"),
        ("httproutes", "HTTPRoute"),
        ("routes", "HTTPRoute"),
        ("httproute.gateway.networking.k8s.io", "HTTPRoute"),
        ("GW", "Gateway"),
        ("gatewayclasses", "GatewayClass"),
        ("ns", "Namespace"),
        ("be", "Backend"),
        ("backends.turnout.dev", "Backend"),
    ],
)
def test_kind_names(name: str, kind: str) -> None:
    found = match(name, BUILTIN)
    assert found is not None and found.kind == kind


def test_kind_paths_and_display() -> None:
    route = match("httproute", BUILTIN)
    ns = match("namespace", BUILTIN)
    assert route is not None and ns is not None
    assert route.object_path("web", "shop") == "/api/v1/namespaces/web/httproutes/shop"
    assert route.collection_path(None) == "/api/v1/httproutes"
    assert ns.object_path("ignored", "web") == "/api/v1/namespaces/web"
    assert route.display == "httproute.gateway.networking.k8s.io"
    assert ns.display == "namespace"
    assert match("widgets", BUILTIN) is None
    custom = KindInfo.from_json({"kind": "Widget", "apiVersion": "x.dev/v1", "shortNames": ["wd"]})
    assert match("wd", [custom]) == custom and custom.plural == "widgets"


ROUTE: dict[str, Any] = {
    "apiVersion": "gateway.networking.k8s.io/v1",
    "kind": "HTTPRoute",
    "metadata": {
        "name": "shop",
        "namespace": "web",
        "resourceVersion": "7",
        "annotations": {"turnout.dev/owner": "api"},
    },
    "spec": {
        "hostnames": ["shop.example.com"],
        "parentRefs": [{"name": "gw", "namespace": "infra", "sectionName": "http"}],
        "rules": [
            {"backendRefs": [{"name": f"b{i}", "port": 80} for i in range(4)]},
            {"backendRefs": [{"name": "b0", "port": 80}]},
        ],
    },
    "status": {
        "conditions": [
            {"type": "Accepted", "status": "True"},
            {"type": "ResolvedRefs", "status": "False", "reason": "BackendNotFound"},
        ]
    },
}


def test_route_columns() -> None:
    headers, rows = columns.table("HTTPRoute", [ROUTE], wide=False, namespaced_column=True)
    assert headers == ["NAMESPACE", "NAME", "HOSTNAMES", "PARENTS", "BACKENDS", "AGE"]
    assert rows[0] == [
        "web",
        "shop",
        "shop.example.com",
        "infra/gw/http",
        "b0:80,b1:80,b2:80,+1 more",
        "-",
    ]
    headers, rows = columns.table("HTTPRoute", [ROUTE], wide=True, namespaced_column=False)
    assert headers[-4:] == ["AGE", "CONDITIONS", "OWNER", "REVISION"]
    assert "RULES" in headers
    row = dict(zip(headers, rows[0], strict=True))
    assert row["BACKENDS"] == "b0:80,b1:80,b2:80,b3:80"
    assert row["CONDITIONS"] == "Accepted,ResolvedRefs=False(BackendNotFound)"
    assert (row["OWNER"], row["REVISION"], row["RULES"]) == ("api", "7", "2")


def test_gateway_and_backend_columns() -> None:
    gw = {
        "kind": "Gateway",
        "metadata": {"name": "gw"},
        "spec": {
            "gatewayClassName": "turnout",
            "addresses": [{"value": "127.0.0.1"}],
            "listeners": [{"name": "http", "port": 8080, "protocol": "HTTP"}],
        },
        "status": {"conditions": [{"type": "Programmed", "status": "True"}]},
    }
    headers, rows = columns.table("Gateway", [gw], wide=False, namespaced_column=False)
    assert dict(zip(headers, rows[0], strict=True)) == {
        "NAME": "gw",
        "CLASS": "turnout",
        "ADDRESS": "127.0.0.1",
        "LISTENERS": "http=8080/HTTP",
        "PROGRAMMED": "True",
        "AGE": "-",
    }
    be = {"kind": "Backend", "metadata": {"name": "b"}, "spec": {"endpoints": []}}
    headers, rows = columns.table("Backend", [be], wide=True, namespaced_column=False)
    row = dict(zip(headers, rows[0], strict=True))
    assert (row["ENDPOINTS"], row["PROTOCOL"], row["CONDITIONS"]) == ("-", "http", "-")


def test_problem_lines() -> None:
    p = ServerProblem("a.yaml", 3, 5, "spec.x", "bad", "Backend default/b")
    assert str(p) == "a.yaml:3:5: Backend default/b: spec.x: bad"
    w = ServerProblem.from_json({"source": "api", "message": "m", "severity": "warning"})
    assert str(w) == "api: warning: m"
    assert str(ServerProblem.from_json("weird")) == "weird"
