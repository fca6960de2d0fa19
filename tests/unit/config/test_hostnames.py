"""Gateway API hostname semantics: wildcard matching, intersection, specificity."""

from __future__ import annotations

import pytest

from turnout.config.hostnames import (
    effective_hostnames,
    hostname_matches,
    intersect,
    specificity,
)


@pytest.mark.parametrize(
    ("pattern", "host", "expected"),
    [
        ("*.example.com", "a.example.com", True),
        ("*.example.com", "a.b.example.com", True),  # any number of extra labels
        ("*.example.com", "example.com", False),  # at least one extra label
        ("*.example.com", ".example.com", False),
        ("*.example.com", "aexample.com", False),  # suffix at a label boundary only
        ("*.example.com", "a.example.com.evil", False),
        ("*.com", "example.com", True),
        ("example.com", "example.com", True),
        ("example.com", "a.example.com", False),
        ("example.com", "example.org", False),
    ],
)
def test_hostname_matches(pattern: str, host: str, expected: bool) -> None:
    assert hostname_matches(pattern, host) is expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("foo.example.com", "foo.example.com", "foo.example.com"),
        ("foo.example.com", "bar.example.com", None),
        ("*.example.com", "foo.example.com", "foo.example.com"),
        ("*.example.com", "a.b.example.com", "a.b.example.com"),
        ("*.example.com", "example.com", None),
        ("*.example.com", "*.example.com", "*.example.com"),
        ("*.example.com", "*.foo.example.com", "*.foo.example.com"),
        ("*.com", "*.example.com", "*.example.com"),
        ("*.example.com", "*.example.org", None),
        ("*.ample.com", "*.example.com", None),  # not a label boundary
        ("*.foo.example.com", "bar.example.com", None),
    ],
)
def test_intersection_is_symmetric_and_narrowest(a: str, b: str, expected: str | None) -> None:
    assert intersect(a, b) == expected
    assert intersect(b, a) == expected


@pytest.mark.parametrize(
    ("listener", "route", "expected"),
    [
        (None, (), None),  # neither side restricts: every host
        ("a.example.com", (), ["a.example.com"]),
        (
            None,
            ("b.example.com", "*.example.org", "b.example.com"),
            ["b.example.com", "*.example.org"],
        ),
        (
            "*.example.com",
            ("a.example.com", "example.com", "*.a.example.com"),
            ["a.example.com", "*.a.example.com"],
        ),
        ("*.example.com", ("*.com",), ["*.example.com"]),
        ("*.example.com", ("*.example.com", "x.example.com"), ["*.example.com", "x.example.com"]),
        ("a.example.com", ("*.example.com", "a.example.com"), ["a.example.com"]),
        ("a.example.com", ("b.example.com",), []),  # no intersection: does not attach
    ],
)
def test_effective_hostnames(
    listener: str | None, route: tuple[str, ...], expected: list[str] | None
) -> None:
    assert effective_hostnames(listener, route) == expected


def test_specificity_orders_exact_then_longer_wildcards_then_none() -> None:
    names = [None, "*.com", "b.example.com", "*.example.com", "*.a.example.com", "example.com"]

    ranked = sorted(names, key=specificity, reverse=True)

    assert ranked == [
        "b.example.com",
        "example.com",
        "*.a.example.com",
        "*.example.com",
        "*.com",
        None,
    ]
