"""The Release kind: strict spec errors with their path, and cross-object checks."""

from __future__ import annotations

from typing import Any

from turnout.config.parse import parse_text
from turnout.config.validate import validate
from turnout.testing.manifests import backend, dump


def release(name: str = "orders-v2", **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "backend": "orders",
        "candidate": {"backend": "orders-v2"},
        "strategy": {"canary": {"steps": [{"setWeight": 10}]}},
    }
    return {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": name},
        "spec": {**base, **spec},
    }


def problems(*objects: dict[str, Any]) -> list[tuple[str, str, str]]:
    resources, parse_problems = parse_text(dump(*objects), "r.yaml")
    if parse_problems:
        return [(p.severity, p.path, p.message) for p in parse_problems]
    _, found = validate(resources)
    return [(p.severity, p.path, p.message) for p in found]


def test_a_valid_release_has_no_problems() -> None:
    assert problems(backend("orders", 1), backend("orders-v2", 2), release()) == []


def test_spec_errors_name_the_field() -> None:
    found = problems(release(strategy={"canary": {"steps": [{"setWeight": 10, "pause": {}}]}}))
    assert any("exactly one of 'setWeight', 'pause', 'analysis'" in m for _, _, m in found)
    found = problems(release(strategy={}))
    assert any("exactly one of 'canary', 'blueGreen', 'abTest'" in m for _, _, m in found)
    found = problems(release(candidate={}))
    assert any("exactly one of 'backend' and 'endpoints'" in m for _, _, m in found)
    found = problems(release(split={"by": "header"}))
    assert any("needs 'name'" in m for _, _, m in found)
    found = problems(release(analysis={"minSamples": 0}))
    assert any("minSamples" in p for _, p, _ in found)


def test_missing_backends_warn_and_a_second_release_of_one_backend_is_an_error() -> None:
    found = problems(backend("orders", 1), release())
    assert [(s, p) for s, p, _ in found] == [("warning", "spec.candidate.backend")]
    found = problems(backend("orders", 1), backend("orders-v2", 2), release(), release("orders-v3"))
    assert [(s, p) for s, p, _ in found] == [("error", "spec.backend")]
    assert "already released by Release default/orders-v2" in found[0][2]


def environment(name: str, *namespaces: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "Environment",
        "metadata": {"name": name},
        "spec": {"namespaces": list(namespaces), **spec},
    }


def test_environments_allow_queued_releases_of_one_backend_and_are_checked() -> None:
    two = (backend("orders", 1), backend("orders-v2", 2), release(), release("orders-v3"))
    assert [p for p in problems(*two, environment("prod", "default")) if p[0] == "error"] == []
    found = problems(
        environment("a", "default", next="a"),
        environment("b", "default", "shop", next="c"),
    )
    assert ("error", "spec.next", "an Environment cannot be its own next") in found
    assert (
        "error",
        "spec.namespaces[0]",
        "namespace default is already in Environment a: a namespace belongs to one environment",
    ) in found
    assert ("warning", "spec.next", "Environment c not found: promoted releases stay here") in found
    bad = problems(environment("x", "default", blackouts=[{"name": "w", "cron": "nope"}]))
    assert bad and bad[0][0] == "error" and "cron" in bad[0][2]
