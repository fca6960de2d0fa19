"""The kinds registry (turnout/config/kinds.py) is the only place kinds are listed.

Everything else derives from it: the parser's kind → model dispatch, the admin API's
kinds, routes and OpenAPI enums, the CLI's kind table and columns, the control plane's
kind sets. These tests hold the derived views to the registry, and fail when a module
lists kinds on its own again. ``test_a_new_kind_is_one_entry`` is the worked example of
"where do I add a kind" (docs/architecture.md).
"""

from __future__ import annotations

import ast
import typing
from pathlib import Path
from typing import Any, Literal

import pytest

from turnout.cli import columns
from turnout.cli.kinds import BUILTIN, builtin_table, match
from turnout.config import model, parse
from turnout.config.attach import ROUTE_KINDS_BY_PROTOCOL
from turnout.config.kinds import (
    KINDS,
    REGISTRY,
    ROUTING_KEY_KINDS,
    TURNOUT_GROUP,
    KindEntry,
    KindRegistry,
    route_kinds_by_protocol,
)
from turnout.config.model.base import ObjectMeta, Spec
from turnout.config.parse import parse_text
from turnout.control.api.objects import path_plurals
from turnout.control.objects import BY_PLURAL, KIND_INFO, api_kinds

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "turnout"
REGISTRY_FILE = PACKAGE / "config" / "kinds.py"
LITERALS = (ast.Set, ast.Tuple, ast.List, ast.Dict)


def _kind_names() -> frozenset[str]:
    return frozenset(name for e in REGISTRY for name in (e.kind, e.plural))


def kind_listings(source: str, names: frozenset[str]) -> list[tuple[int, list[str]]]:
    """Set/tuple/list/dict literals (nested ones included) naming three or more kinds."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, LITERALS):
            continue
        held = {
            sub.value
            for sub in ast.walk(node)
            if isinstance(sub, ast.Constant) and isinstance(sub.value, str) and sub.value in names
        }
        if len(held) >= 3:
            found.append((node.lineno, sorted(held)))
    return found


def test_no_module_lists_kinds_on_its_own() -> None:
    names = _kind_names()
    offenders = []
    for file in sorted(PACKAGE.rglob("*.py")):
        if file == REGISTRY_FILE:
            continue
        seen: set[int] = set()
        for line, held in kind_listings(file.read_text(), names):
            if line not in seen:  # an outer literal and its inner one on the same line
                seen.add(line)
                offenders.append(f"{file.relative_to(ROOT)}:{line}: lists {', '.join(held)}")
    assert offenders == [], (
        "kinds are declared once, in turnout/config/kinds.py; derive from the registry "
        "instead of listing them:\n" + "\n".join(offenders)
    )


def test_the_scan_sees_a_listing() -> None:
    names = _kind_names()
    source = 'X = {"HTTPRoute": 1, "Gateway": 2}\nY = ("httproutes", ("gateways", "Backend"))\n'
    assert kind_listings(source, names) == [(2, ["Backend", "gateways", "httproutes"])]


def _literal_args(annotation: Any) -> set[str]:
    return set(typing.get_args(annotation))


@pytest.mark.parametrize("entry", REGISTRY, ids=lambda e: e.kind)
def test_each_model_matches_its_entry(entry: KindEntry) -> None:
    obj_model = model.KINDS[entry.kind]
    assert obj_model.__name__ == entry.model
    fields = obj_model.model_fields
    assert _literal_args(fields["kind"].annotation) == {entry.kind}
    assert _literal_args(fields["api_version"].annotation) == set(entry.api_versions)


def test_config_object_union_names_every_model() -> None:
    assert set(typing.get_args(model.ConfigObject)) == set(model.KINDS.values())


def test_derived_views_follow_the_registry() -> None:
    order = [e.kind for e in REGISTRY]
    assert list(model.KINDS) == order
    assert list(KIND_INFO) == [e.kind for e in REGISTRY if e.served]
    assert [k.kind for k in BUILTIN] == [e.kind for e in REGISTRY if e.served]
    assert set(BY_PLURAL) == {e.plural for e in REGISTRY if e.served}
    assert frozenset({"Sandbox", "RouteGroup"}) == ROUTING_KEY_KINDS
    assert ROUTE_KINDS_BY_PROTOCOL == {
        "HTTP": ("HTTPRoute", "GRPCRoute"),
        "HTTPS": ("HTTPRoute", "GRPCRoute"),
        "TCP": ("TCPRoute",),
        "TLS": ("TLSRoute",),
    }
    for entry in REGISTRY:
        for header in (*entry.columns, *entry.wide_columns):
            assert header in columns.GETTERS, f"{entry.kind}: no getter for column {header}"


def test_cli_accepts_every_alias() -> None:
    for entry in REGISTRY:
        for name in (entry.kind, entry.plural, *entry.short_names, entry.kind.upper()):
            found = match(name, BUILTIN)
            assert found is not None and found.kind == entry.kind, name
    route = match("routes", BUILTIN)
    assert route is not None and route.kind == "HTTPRoute"


def test_the_registry_refuses_a_name_used_twice() -> None:
    clash = KindEntry("Widget", "widgets", TURNOUT_GROUP, "v1alpha1", "X", short_names=("gw",))
    with pytest.raises(ValueError, match="'gw' names both Gateway and Widget"):
        KindRegistry((*REGISTRY, clash))


# -- worked example: adding a kind ---------------------------------------------------------


class WidgetSpec(Spec):
    size: int = 1


class WidgetObject(Spec):
    api_version: Literal["turnout.dev/v1alpha1"]
    kind: Literal["Widget"]
    metadata: ObjectMeta
    spec: WidgetSpec
    status: dict[str, Any] | None = None


WIDGET = KindEntry(
    "Widget",
    "widgets",
    TURNOUT_GROUP,
    "v1alpha1",
    "WidgetObject",
    short_names=("wd",),
    columns=("KEY",),
)


def test_a_new_kind_is_one_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    """One ``KindEntry`` (and the model it names) is all a new kind needs: the parser,
    the admin API's kinds and path enums and the CLI's table all pick it up."""
    registry = KindRegistry((*REGISTRY, WIDGET))

    # The parser dispatches on the derived kind -> model table.
    monkeypatch.setattr(
        parse, "KINDS", model.object_models(registry, {"WidgetObject": WidgetObject})
    )
    text = "apiVersion: turnout.dev/v1alpha1\nkind: Widget\nmetadata: {name: w}\nspec: {size: 3}\n"
    resources, problems = parse_text(text, "widget.yaml")
    assert problems == []
    assert isinstance(resources[0].obj, WidgetObject)
    assert resources[0].key == ("Widget", "default", "w")

    # The admin API: GET /api/v1/kinds and the {plural} path enums of the OpenAPI document.
    served = api_kinds(registry)
    assert served["Widget"].as_json()["apiVersion"] == "turnout.dev/v1alpha1"
    every, namespaced, cluster = path_plurals({k.plural: k for k in served.values()})
    assert "widgets" in every and "widgets" in namespaced and "widgets" not in cluster

    # The CLI: `turnout get wd` resolves without asking the server.
    widget = match("wd", builtin_table(registry))
    assert widget is not None and widget.collection_path("ns") == "/api/v1/namespaces/ns/widgets"

    # And nothing else had to be listed by hand.
    assert route_kinds_by_protocol(registry) == ROUTE_KINDS_BY_PROTOCOL
    assert KINDS.get("Widget") is None  # the real registry is untouched
