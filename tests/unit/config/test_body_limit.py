"""TrafficPolicy ``requestBodyLimit``: bytes or ``Ki``/``Mi``/``Gi`` sizes, bad values are
located errors, and the most specific policy's limit reaches the compiled rule."""

from __future__ import annotations

from typing import Any

import pytest

from turnout.config.model.traffic import body_limit_bytes
from turnout.config.parse import parse_text
from turnout.config.validate import validate
from turnout.testing.manifests import backend, dump, gateway, route, to


def _policy(limit: Any) -> dict[str, Any]:
    return {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "TrafficPolicy",
        "metadata": {"name": "p"},
        "spec": {"targetRefs": [{"kind": "HTTPRoute", "name": "r"}], "requestBodyLimit": limit},
    }


@pytest.mark.parametrize(
    ("value", "size"), [(1, 1), (4096, 4096), ("512", 512), ("64Ki", 65536), ("10Mi", 10 << 20)]
)
def test_sizes(value: int | str, size: int) -> None:
    assert body_limit_bytes(value) == size


@pytest.mark.parametrize("value", [0, -1, "1Ti", "1.5Mi", "Mi", "01Mi", "1 Mi", True])
def test_bad_limits_are_located_errors(value: Any) -> None:
    text = dump(gateway(), backend("b", 8080), route("r", [to("b")]), _policy(value))
    _, problems = parse_text(text, "m.yaml")
    assert problems, value
    assert any("requestBodyLimit" in p.path for p in problems), problems
    assert all(p.source == "m.yaml" and p.line for p in problems)


def test_a_policy_with_only_a_limit_is_not_empty() -> None:
    text = dump(gateway(), backend("b", 8080), route("r", [to("b")]), _policy("1Mi"))
    resources, problems = parse_text(text, "m.yaml")
    assert problems == []
    _, problems = validate(resources)
    assert problems == []
