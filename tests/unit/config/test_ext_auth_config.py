"""SecurityPolicy ``extAuth`` configuration checks, located in the manifest."""

from __future__ import annotations

from typing import Any

from turnout.config.parse import parse_text
from turnout.config.validate import validate
from turnout.testing.manifests import backend, dump, gateway, route, to


def _policy(**ext: Any) -> dict[str, Any]:
    return {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "SecurityPolicy",
        "metadata": {"name": "p"},
        "spec": {"targetRefs": [{"kind": "HTTPRoute", "name": "r"}], "extAuth": ext},
    }


def _problems(*objects: dict[str, Any]) -> list[tuple[str, str, str]]:
    resources, parse_problems = parse_text(dump(*objects), "x.yaml")
    assert parse_problems == []
    _, problems = validate(resources)
    return [(p.path, p.message, p.severity) for p in problems]


BASE = (gateway(), backend("svc", 9), route("r", [to("svc")]))


def test_valid_ext_auth_has_no_problems() -> None:
    ext = {
        "http": {"backendRef": {"name": "authz"}, "path": "/check", "headersToBackend": ["x-u"]},
        "headersToExtAuth": ["authorization", "cookie"],
        "failOpen": True,
        "timeout": "250ms",
        "cache": {"ttl": "10s", "maxEntries": 100},
    }
    assert _problems(*BASE, backend("authz", 10), _policy(**ext)) == []


def test_bad_ext_auth_is_located() -> None:
    ext = {"http": {"backendRef": {"name": "authz"}, "path": "check"}, "timeout": "0s"}
    assert _problems(*BASE, _policy(**ext)) == [
        (
            "spec.extAuth.http.backendRef.name",
            "Backend default/authz does not exist; requests answer 403",
            "warning",
        ),
        ("spec.extAuth.http.path", "path must start with '/'", "error"),
        ("spec.extAuth.timeout", "must be longer than 0s", "error"),
    ]


def test_ext_auth_fields_are_strict() -> None:
    _, problems = parse_text(
        dump(_policy(http={"backendRef": {"name": "a"}}, failOpen="yes")), "x.yaml"
    )
    assert [p.path for p in problems] == ["spec.extAuth.failOpen"]
