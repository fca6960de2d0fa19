"""Finding a routing key in a request: every carrier, the precedence between them, and
hostile values that must be ignored rather than fail."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from turnout.proxy.protocols.heads import RequestHead
from turnout.proxy.routing.keys import (
    FROM_BAGGAGE,
    FROM_COOKIE,
    FROM_HEADER,
    FROM_ITEM_HEADER,
    FROM_QUERY,
    FROM_TRACESTATE,
    find_key,
    preview_cookie,
)


def head(headers: list[tuple[bytes, bytes]], query: bytes = b"") -> RequestHead:
    return RequestHead(b"GET", b"/", query, headers)


@pytest.mark.parametrize(
    ("headers", "query", "expected"),
    [
        ([(b"x-turnout-routing-key", b" k1 ")], b"", (b"k1", FROM_HEADER)),
        ([(b"baggage", b"a=1, turnout-routing-key=k2;p=q")], b"", (b"k2", FROM_BAGGAGE)),
        ([(b"baggage", b"sd-routing-key=k3")], b"", (b"k3", FROM_BAGGAGE)),
        ([(b"tracestate", b"x=y,sd-routing-key=k4")], b"", (b"k4", FROM_TRACESTATE)),
        ([(b"ot-baggage-turnout-routing-key", b"k5")], b"", (b"k5", FROM_ITEM_HEADER)),
        ([(b"uberctx-sd-routing-key", b"k6")], b"", (b"k6", FROM_ITEM_HEADER)),
        ([(b"cookie", b"s=1; turnout-routing-key=k7")], b"", (b"k7", FROM_COOKIE)),
        ([], b"a=b&turnout-routing-key=k8", (b"k8", FROM_QUERY)),
        ([], b"", (b"", 0)),
        ([(b"baggage", b"userId=alice")], b"", (b"", 0)),
    ],
)
def test_each_carrier(
    headers: list[tuple[bytes, bytes]], query: bytes, expected: tuple[bytes, int]
) -> None:
    assert find_key(head(headers, query)) == expected


def test_precedence_header_then_baggage_then_the_rest() -> None:
    all_of_them = [
        (b"cookie", b"turnout-routing-key=c"),
        (b"uberctx-turnout-routing-key", b"u"),
        (b"tracestate", b"turnout-routing-key=t"),
        (b"baggage", b"turnout-routing-key=b"),
        (b"x-turnout-routing-key", b"h"),
    ]
    assert find_key(head(all_of_them, b"turnout-routing-key=q")) == (b"h", FROM_HEADER)
    assert find_key(head(all_of_them[:4])) == (b"b", FROM_BAGGAGE)
    # our member wins over the compatibility one in the same list
    both = [(b"baggage", b"sd-routing-key=sd,turnout-routing-key=ours")]
    assert find_key(head(both)) == (b"ours", FROM_BAGGAGE)


@pytest.mark.parametrize(
    "value",
    [b"", b"has space", b"a" * 64, b"caf\xc3\xa9", b'quote"', b"%41"],
)
def test_malformed_keys_are_ignored(value: bytes) -> None:
    assert find_key(head([(b"x-turnout-routing-key", value)])) == (b"", 0)
    assert find_key(head([(b"baggage", b"turnout-routing-key=" + value)])) == (b"", 0)


@given(st.binary(max_size=300), st.binary(max_size=300))
def test_any_bytes_never_raise(baggage: bytes, query: bytes) -> None:
    key, source = find_key(head([(b"baggage", baggage), (b"cookie", baggage)], query))
    assert (key == b"") == (source == 0)
    assert len(key) <= 63


def test_preview_cookie() -> None:
    assert preview_cookie(b"k") == b"turnout-routing-key=k; Path=/; HttpOnly; SameSite=Lax"
