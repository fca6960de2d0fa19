"""Multi-document YAML: values, line/column of every field, duplicate keys, syntax errors."""

from __future__ import annotations

import pytest

from turnout.config.yamldocs import load_documents

TWO_DOCS = """\
kind: Gateway
metadata:
  name: gw
spec:
  listeners:
  - name: http
    port: 80
---
kind: HTTPRoute
metadata: {name: shop}
spec:
  rules:
  - matches:
    - path: {type: Exact, value: /}
"""


def test_every_document_is_loaded_with_its_start_line() -> None:
    docs, problems = load_documents(TWO_DOCS, "a.yaml")

    assert problems == []
    assert [d.index for d in docs] == [0, 1]
    assert [d.line for d in docs] == [1, 9]
    assert [d.source for d in docs] == ["a.yaml", "a.yaml"]
    assert docs[0].data["spec"]["listeners"][0] == {"name": "http", "port": 80}
    assert docs[1].data["spec"]["rules"][0]["matches"][0]["path"]["type"] == "Exact"


@pytest.mark.parametrize(
    ("doc", "path", "where"),
    [
        (0, ("kind",), (1, 1)),
        (0, ("metadata", "name"), (3, 3)),
        (0, ("spec", "listeners"), (5, 3)),
        (0, ("spec", "listeners", 0), (6, 5)),
        (0, ("spec", "listeners", 0, "port"), (7, 5)),
        (1, ("metadata",), (10, 1)),
        (1, ("metadata", "name"), (10, 12)),
        (1, ("spec", "rules", 0, "matches"), (13, 5)),
        (1, ("spec", "rules", 0, "matches", 0, "path", "value"), (14, 27)),
    ],
)
def test_fields_are_located_by_line_and_column(
    doc: int, path: tuple[str | int, ...], where: tuple[int, int]
) -> None:
    docs, _ = load_documents(TWO_DOCS, "a.yaml")

    assert docs[doc].locate(path) == where


def test_locate_falls_back_to_the_nearest_located_ancestor() -> None:
    docs, _ = load_documents(TWO_DOCS, "a.yaml")

    assert docs[0].locate(("spec", "listeners", 0, "hostname")) == (6, 5)
    assert docs[0].locate(("spec", "listeners", 5, "name")) == (5, 3)
    assert docs[1].locate(("nothing", "here")) == (9, None)


def test_empty_documents_are_skipped_but_still_counted() -> None:
    docs, problems = load_documents("---\n---\n---\na: 1\n---\n", "a.yaml")

    assert problems == []
    assert len(docs) == 1
    assert docs[0].data == {"a": 1}
    assert docs[0].index == 2
    assert docs[0].line == 4


def test_duplicate_keys_are_reported_with_their_location() -> None:
    text = "metadata:\n  name: a\n  labels: {x: '1', x: '2'}\n  name: b\n"

    docs, problems = load_documents(text, "dup.yaml")

    assert [str(p) for p in problems] == [
        "dup.yaml:3:20: metadata.labels.x: duplicate key 'x'",
        "dup.yaml:4:3: metadata.name: duplicate key 'name'",
    ]
    assert docs[0].data["metadata"]["name"] == "b"  # the document still loads


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("a: [1, 2\n", "bad.yaml:2:1: invalid YAML: "),
        ("a: b\n c: d\n", "bad.yaml:2:3: invalid YAML: "),
        ("a: 'open\n", "bad.yaml:2:1: invalid YAML: "),
        ("a:\n\t- b\n", "bad.yaml:2:1: invalid YAML: "),
    ],
)
def test_syntax_errors_become_located_problems(text: str, where: str) -> None:
    docs, problems = load_documents(text, "bad.yaml")

    assert docs == []
    assert len(problems) == 1
    # The wording comes from libyaml or PyYAML; the location is ours.
    assert str(problems[0]).startswith(where)
    assert problems[0].severity == "error"


def test_documents_before_a_syntax_error_are_kept() -> None:
    docs, problems = load_documents("a: 1\n---\nb: [\n", "x.yaml")

    assert [d.data for d in docs] == [{"a": 1}]
    assert len(problems) == 1
    assert problems[0].line == 4


def test_aliases_are_expanded() -> None:
    docs, problems = load_documents("a: &x {k: 1}\nb: *x\n", "m.yaml")

    assert problems == []
    assert docs[0].data == {"a": {"k": 1}, "b": {"k": 1}}


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("? [a, b]\n: 1\n", "k.yaml:1:3"),
        ("metadata:\n  ? {x: 1}\n  : 2\n", "k.yaml:2:5"),
    ],
)
def test_a_complex_key_is_a_located_problem(text: str, where: str) -> None:
    # Found by bench/fuzz.py (config): the duplicate-key walk hashed the key node's value,
    # a list for a sequence or mapping key, and the parser raised TypeError.
    docs, problems = load_documents(text, "k.yaml")

    assert docs == []
    assert [str(p) for p in problems] == [f"{where}: invalid YAML: found unhashable key"]


def test_overriding_a_merged_key_is_not_a_duplicate() -> None:
    text = "base: &base {port: 80, name: a}\nother:\n  <<: *base\n  port: 81\n"

    docs, problems = load_documents(text, "m.yaml")

    assert problems == []
    assert docs[0].data["other"] == {"port": 81, "name": "a"}
