"""Files → one YAML request body, and problems mapped back to file:line:col."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from turnout.cli.errors import CliError, ServerProblem, ValidationFailed
from turnout.cli.manifests import (
    MANIFEST_SUFFIXES,
    Bundle,
    add_text,
    expand,
    locate_path,
    read_bundle,
)
from turnout.config.files import MANIFEST_SUFFIXES as CONFIG_SUFFIXES

ROUTE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: shop
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs:
    - name: shop
      port: 80
"""
BACKEND = """\
# a comment first
apiVersion: turnout.dev/v1alpha1
kind: Backend
metadata: {name: shop, namespace: web}
spec:
  endpoints: [{address: "127.0.0.1:9"}]"""  # no trailing newline on purpose


def test_suffixes_match_the_config_loader() -> None:
    assert MANIFEST_SUFFIXES == CONFIG_SUFFIXES


def test_files_are_joined_and_lines_map_back(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(ROUTE)
    (tmp_path / "b.yml").write_text(BACKEND)
    (tmp_path / "notes.txt").write_text("ignored")
    bundle = read_bundle([str(tmp_path)])
    assert bundle.documents == 2
    lines = bundle.body.splitlines()
    assert lines[len(ROUTE.splitlines())] == "---"
    assert bundle.body.endswith('"127.0.0.1:9"}]\n')
    # body line 3 is a.yaml:3; the line after the separator is b.yml:1
    assert bundle.locate(3) == (str(tmp_path / "a.yaml"), 3)
    first_b = len(ROUTE.splitlines()) + 2
    assert bundle.locate(first_b) == (str(tmp_path / "b.yml"), 1)
    assert bundle.locate(first_b + 3) == (str(tmp_path / "b.yml"), 4)
    assert lines[first_b + 3 - 1].startswith("metadata:")
    assert bundle.locate(10_000) == ("<request>", 10_000)


def test_request_problems_are_mapped_to_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(ROUTE)
    (tmp_path / "b.yaml").write_text(BACKEND)
    bundle = read_bundle([str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")])
    line = len(ROUTE.splitlines()) + 2 + 5  # b.yaml line 6 (endpoints)
    exc = ValidationFailed(
        "1 validation error(s)",
        [ServerProblem("<request>", line, 3, "spec.endpoints", "bad", "Backend web/shop")],
    )
    mapped = bundle.map_error(exc).problems[0]
    assert str(mapped) == f"{tmp_path / 'b.yaml'}:6:3: Backend web/shop: spec.endpoints: bad"


def test_object_problems_without_lines_are_located(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(ROUTE)
    bundle = read_bundle([str(tmp_path / "a.yaml")])
    p = ServerProblem(
        "api",
        None,
        None,
        "spec.rules[0].backendRefs[0]",
        "Backend default/shop not found",
        "HTTPRoute default/shop",
    )
    mapped = bundle.map_problem(p)
    assert (mapped.source, mapped.line, mapped.column) == (str(tmp_path / "a.yaml"), 9, 7)
    # an object that is not in the files stays as the server said
    other = ServerProblem("api", None, None, "spec", "x", "HTTPRoute default/other")
    assert bundle.map_problem(other) == other


def test_locate_path_stops_at_the_deepest_existing_part(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(ROUTE)
    bundle = read_bundle([str(tmp_path / "a.yaml")])
    node = bundle.objects["HTTPRoute default/shop"][1]
    assert locate_path(node, "spec.rules[0].backendRefs[0].port") == (10, 7)
    assert locate_path(node, "spec.rules[3].matches") == (7, 3)
    assert locate_path(node, "") == (1, 1)


def test_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(ROUTE))
    bundle = read_bundle(["-"])
    assert bundle.locate(2) == ("<stdin>", 2)
    with pytest.raises(CliError, match="only once"):
        expand(["-", "-"])


def test_list_documents_are_expanded() -> None:
    text = """\
apiVersion: v1
kind: List
metadata: {}
items:
- apiVersion: turnout.dev/v1alpha1
  kind: Backend
  metadata: {name: a}
  spec: {endpoints: [{address: "127.0.0.1:1"}]}
- apiVersion: turnout.dev/v1alpha1
  kind: Backend
  metadata: {name: b}
  spec: {endpoints: [{address: "127.0.0.1:2"}]}
"""
    bundle = Bundle()
    add_text(bundle, text, "list.yaml")
    assert bundle.documents == 2
    docs = bundle.body.split("---\n")
    assert len(docs) == 2 and "name: a" in docs[0] and "name: b" in docs[1]
    assert "kind: List" not in bundle.body
    assert bundle.locate(1) == ("list.yaml", 5)
    assert bundle.locate(len(docs[0].splitlines()) + 2) == ("list.yaml", 9)
    assert set(bundle.objects) == {"Backend default/a", "Backend default/b"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: [\n", r"bad\.yaml:2:1: invalid YAML"),
        ("- 1\n- 2\n", r"bad\.yaml:1: expected a manifest"),
        ("# nothing\n---\n", "no objects passed"),
    ],
)
def test_bad_input_is_refused_before_sending(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(CliError, match=message):
        read_bundle([str(tmp_path / "bad.yaml")])


def test_missing_paths(tmp_path: Path) -> None:
    with pytest.raises(CliError, match="no such file or directory"):
        expand([str(tmp_path / "nope.yaml")])
    with pytest.raises(CliError, match="holds no"):
        expand([str(tmp_path)])
    with pytest.raises(CliError, match="at least one -f"):
        expand([])
