"""Host/authority validation and the canonical request path."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from turnout.proxy.protocols.hosts import (
    InvalidTarget,
    normalize_path,
    path_needs_normalizing,
    split_authority,
)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (b"/", b"/"),
        (b"/a/b", b"/a/b"),
        (b"/a/b/", b"/a/b/"),
        (b"//a///b", b"/a/b"),
        (b"/a/./b", b"/a/b"),
        (b"/a/b/.", b"/a/b/"),
        (b"/a/b/..", b"/a/"),
        (b"/a/b/../", b"/a/"),
        (b"/a/../b", b"/b"),
        (b"/a/..", b"/"),
        (b"/.", b"/"),
        (b"/./", b"/"),
        (b"/a/.../b", b"/a/.../b"),  # '...' is an ordinary segment
        (b"/a/..b/.c", b"/a/..b/.c"),
        (b"/%41%7a%30%2D%2e%5F%7E", b"/Az0-._~"),  # unreserved escapes are decoded
        (b"/%c3%a9", b"/%C3%A9"),  # others are upper-cased
        (b"/a%2fb", b"/a%2Fb"),  # an encoded slash never splits a segment
        (b"/a%5cb", b"/a%5Cb"),
        (b"/a/%2e%2E/b", b"/b"),  # encoded dots are dot segments
        (b"/a/%2e/b", b"/a/b"),
        (b"/%25", b"/%25"),  # an encoded '%' stays encoded
        (b"/%252e%252e/x", b"/%252e%252e/x"),  # no double decoding
        (b"/a b", b"/a b"),  # not its job to validate characters
    ],
)
def test_normalize_path(path: bytes, expected: bytes) -> None:
    assert normalize_path(path) == expected


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (b"a/b", "path must start with '/'"),
        (b"", "path must start with '/'"),
        (b"/..", "path escapes above the root"),
        (b"/../a", "path escapes above the root"),
        (b"/a/../../b", "path escapes above the root"),
        (b"/%2e%2e", "path escapes above the root"),
        (b"/a%", "truncated percent-escape in path"),
        (b"/a%4", "truncated percent-escape in path"),
        (b"/a%g1", "invalid percent-escape in path"),
        (b"/a%1g", "invalid percent-escape in path"),
        (b"/a%00", "NUL in path"),
    ],
)
def test_normalize_path_refuses(path: bytes, message: str) -> None:
    with pytest.raises(InvalidTarget, match=message):
        normalize_path(path)


@pytest.mark.parametrize(
    ("path", "needs"),
    [
        (b"/a/b", False),
        (b"/a.b/c", False),
        (b"/a/.b", True),
        (b"/a//b", True),
        (b"/a%20b", True),
    ],
)
def test_path_needs_normalizing(path: bytes, needs: bool) -> None:
    assert path_needs_normalizing(path) is needs


@pytest.mark.parametrize("path", [b"/a/b", b"/a.b/c-d_e~f", b"/", b"/x/y/", b"/a..b", b"/a."])
def test_paths_skipping_normalisation_are_already_canonical(path: bytes) -> None:
    assert not path_needs_normalizing(path)
    assert normalize_path(path) == path


# Segments from a small alphabet so dots, escapes and slashes collide often.
_PIECES = [
    b"a",
    b"b",
    b".",
    b"..",
    b"",
    b"%2e",
    b"%2E",
    b"%2f",
    b"%41",
    b"%c3",
    b"%25",
    b"~",
    b"%7e",
]
segments = st.lists(
    st.lists(st.sampled_from(_PIECES), max_size=3).map(b"".join), min_size=1, max_size=8
)


@settings(max_examples=400, deadline=None)
@given(segments)
def test_normalize_path_is_idempotent_and_has_no_dot_segments(parts: list[bytes]) -> None:
    path = b"/" + b"/".join(parts)
    try:
        once = normalize_path(path)
    except InvalidTarget:
        return

    assert normalize_path(once) == once
    assert once.startswith(b"/")
    assert b"//" not in once
    for seg in once.split(b"/")[1:]:
        assert seg not in (b".", b".."), once
        assert seg.upper() not in (b"%2E", b"%2E%2E", b".%2E", b"%2E."), once


@pytest.mark.parametrize(
    ("value", "host", "port"),
    [
        (b"example.com", "example.com", None),
        (b"Example.COM", "example.com", None),
        (b"example.com.", "example.com", None),
        (b"example.com:8080", "example.com", 8080),
        (b"a-b_c.example:1", "a-b_c.example", 1),
        (b"10.0.0.1", "10.0.0.1", None),
        (b"10.0.0.1:65535", "10.0.0.1", 65535),
        (b"[::1]", "[::1]", None),
        (b"[::1]:443", "[::1]", 443),
        (b"[2001:DB8::A]:80", "[2001:db8::a]", 80),
        (b"localhost", "localhost", None),
    ],
)
def test_split_authority(value: bytes, host: str, port: int | None) -> None:
    assert split_authority(value) == (host, port)


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b":80",
        b"a:",
        b"a:b",
        b"a:1:2",
        b"a:65536",
        b"a:123456",
        b"a b",
        b"a\tb",
        b"a\x00",
        b"user@a",
        b"a/b",
        b"a\\b",
        b"a..b",
        b"-a",
        b".a",
        b"[::1",
        b"::1",
        b"[::1]x",
        b"[zz::1]",
        b"a" * 254,
    ],
)
def test_split_authority_refuses(value: bytes) -> None:
    with pytest.raises(InvalidTarget):
        split_authority(value)
