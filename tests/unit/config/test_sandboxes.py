"""Sandboxes and route groups resolved into the key table, and the problems that make a
set inconsistent (each located in its file)."""

from __future__ import annotations

from typing import Any

from turnout.config.parse import parse_text
from turnout.config.sandboxes import derived_key, resolve, tunnel_socket
from turnout.config.validate import validate
from turnout.testing.manifests import backend, dump


def sandbox(name: str, *overrides: dict[str, Any], **spec: Any) -> dict[str, Any]:
    labels = spec.pop("labels", {})
    return {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "Sandbox",
        "metadata": {"name": name, "labels": labels},
        "spec": {"overrides": list(overrides), **spec},
    }


def group(name: str, labels: dict[str, str], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "RouteGroup",
        "metadata": {"name": name},
        "spec": {"match": {"labels": labels}, **spec},
    }


def ov(name: str, port: int = 9100) -> dict[str, Any]:
    return {"backend": name, "endpoints": [{"address": f"127.0.0.1:{port}"}]}


BACKENDS = (backend("orders", 8080), backend("payments", 8080))


def problems(*objects: dict[str, Any]) -> list[tuple[str, int | None, str, str]]:
    resources, parse_problems = parse_text(dump(*BACKENDS, *objects), "s.yaml")
    assert parse_problems == []
    _, found = validate(resources)
    return [(p.severity, p.line, p.path, p.message) for p in found]


def table(*objects: dict[str, Any]) -> dict[str, Any]:
    resources, _ = parse_text(dump(*BACKENDS, *objects), "s.yaml")
    keys, _ = resolve(resources, {("default", "orders"), ("default", "payments")})
    return {
        k: sorted(f"{b[1]}:{o.sandbox[1]}" for b, o in e.overrides.items()) for k, e in keys.items()
    }


def test_keys_overrides_and_groups() -> None:
    got = table(
        sandbox("a", ov("orders"), routingKey="ka", labels={"f": "x"}),
        sandbox("b", ov("payments"), labels={"f": "x"}),
        group("g", {"f": "x"}, routingKey="kg"),
    )
    assert got == {
        "ka": ["orders:a"],
        derived_key("Sandbox", "default", "b"): ["payments:b"],
        "kg": ["orders:a", "payments:b"],
    }


def test_derived_keys_are_short_stable_and_distinct() -> None:
    a = derived_key("Sandbox", "default", "a")
    assert a == derived_key("Sandbox", "default", "a") and len(a) == 8
    assert a != derived_key("RouteGroup", "default", "a") != derived_key("Sandbox", "x", "a")


def test_a_consistent_set_has_no_problems() -> None:
    assert problems(sandbox("a", ov("orders"), {"backend": "payments", "local": {}})) == []


def test_same_backend_twice_is_an_error_at_its_line() -> None:
    found = problems(sandbox("a", ov("orders"), ov("orders", 9101)))
    assert len(found) == 1
    severity, line, path, message = found[0]
    assert severity == "error" and path == "spec.overrides[1].backend"
    assert line is not None and "overridden twice" in message


def test_keys_must_be_unique_the_older_object_keeps_it() -> None:
    found = problems(
        sandbox("a", ov("orders"), routingKey="k"),
        sandbox("b", ov("payments"), routingKey="k"),
        group("g", {"x": "y"}, routingKey="k"),
    )
    assert [(s, p) for s, _, p, _ in found] == [
        ("error", "spec.routingKey"),
        ("error", "spec.routingKey"),
    ]
    assert all("already used by Sandbox default/a" in m for *_, m in found)


def test_a_group_may_not_join_two_overrides_of_one_backend() -> None:
    found = problems(
        sandbox("a", ov("orders"), labels={"f": "x"}),
        sandbox("b", ov("orders", 9200), labels={"f": "x"}),
        group("g", {"f": "x"}),
    )
    assert len(found) == 1 and found[0][2] == "spec.match"
    assert "both override Backend default/orders" in found[0][3]


def test_override_shape_and_missing_backend() -> None:
    found = problems(
        sandbox("a", {"backend": "orders"}),
        sandbox("b", {"backend": "orders", "local": {}, "endpoints": [{"address": "h:1"}]}),
        sandbox("c", {"backend": "orders", "endpoints": [{"address": "host-without-port"}]}),
        sandbox("d", ov("inventory")),
    )
    assert [(s, p) for s, _, p, _ in found] == [
        ("error", "spec.overrides[0]"),
        ("error", "spec.overrides[0]"),
        ("error", "spec.overrides[0].endpoints[0].address"),
        ("warning", "spec.overrides[0].backend"),
    ]


def test_bad_keys_and_ttls_are_schema_errors() -> None:
    _, found = parse_text(
        dump(sandbox("a", ov("orders"), routingKey="no spaces"), sandbox("b", ttl="soon")),
        "s.yaml",
    )
    assert [p.path for p in found] == ["spec.routingKey", "spec.ttl"]


def test_tunnel_sockets_fit_a_unix_address() -> None:
    path = tunnel_socket("/tmp/turnout-tunnels-abcdefgh", ("a" * 253, "b" * 253), "c" * 253)
    assert len(path.encode()) < 108
    assert path != tunnel_socket("/tmp/turnout-tunnels-abcdefgh", ("a", "b"), "d")
