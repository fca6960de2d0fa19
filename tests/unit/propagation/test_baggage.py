"""W3C Baggage / tracestate parsing and formatting: the grammar, percent-encoding, the
limits, and input from strangers (which must never raise and must stay bounded)."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from turnout.propagation.baggage import (
    MAX_BYTES,
    MAX_MEMBERS,
    MAX_SCAN,
    MAX_TRACESTATE_MEMBERS,
    Member,
    decode_value,
    encode_value,
    format_baggage,
    parse_baggage,
    parse_tracestate,
    routing_key_in,
    with_member,
)

TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

# -- the grammar ------------------------------------------------------------------------------


def test_parses_members_in_order() -> None:
    assert parse_baggage("a=1,b=2,c=3") == (Member("a", "1"), Member("b", "2"), Member("c", "3"))


def test_optional_whitespace_around_every_delimiter() -> None:
    header = " \ta \t= \t1 \t; \tp \t= \tx \t; \tq \t, \tb=2\t"
    assert parse_baggage(header) == (Member("a", "1", ("p=x", "q")), Member("b", "2"))


def test_properties_are_kept_normalised() -> None:
    (member,) = parse_baggage("k=v;ttl=60;flag;x=")
    assert member.properties == ("ttl=60", "flag", "x=")
    assert member.encoded() == "k=v;ttl=60;flag;x="


def test_empty_value_is_a_value() -> None:
    assert parse_baggage("k=") == (Member("k", ""),)


def test_keys_are_case_sensitive_and_duplicates_kept() -> None:
    assert parse_baggage("K=1,k=2,k=3") == (Member("K", "1"), Member("k", "2"), Member("k", "3"))


@pytest.mark.parametrize(
    "item",
    [
        "novalue",  # no '='
        "=v",  # no key
        "bad key=v",  # space in key
        "k(=v",  # '(' is not a token character
        'k="quoted"',  # DQUOTE is not a baggage octet
        "k=a b",  # nor is an inner space
        "k=back\\slash",
        "k=v;bad prop=1",  # a malformed property drops the whole member
        "k=v;p=a b",
        "k=v;=x",
        "ké=v",  # non-ASCII key
        "k=é",  # non-ASCII value not percent-encoded
        "k=\x00",
    ],
)
def test_malformed_members_are_dropped_alone(item: str) -> None:
    assert parse_baggage(f"a=1,{item},b=2") == (Member("a", "1"), Member("b", "2"))


@pytest.mark.parametrize("header", ["", ",", " , ,\t,", ";", "=", ";;;", "a"])
def test_nothing_readable_is_no_members(header: str) -> None:
    assert parse_baggage(header) == ()


def test_bytes_are_read_as_octets() -> None:
    assert parse_baggage(b"a=1,b=\xff,c=%C3%A9") == (Member("a", "1"), Member("c", "é"))


# -- percent-encoding -------------------------------------------------------------------------


def test_values_are_percent_decoded_as_utf8() -> None:
    (member,) = parse_baggage("k=Ada%20Lovelace%2C%20%E2%9C%93%3B%25")
    assert member.value == "Ada Lovelace, ✓;%"


def test_encoding_escapes_exactly_what_must_be() -> None:
    assert encode_value("plain-Value_1.~!#$&'()*+/:<=>?@[]^`{|}") == (
        "plain-Value_1.~!#$&'()*+/:<=>?@[]^`{|}"
    )
    assert encode_value(' ",;\\%é') == "%20%22%2C%3B%5C%25%C3%A9"


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("%", "%"),
        ("%zz", "%zz"),
        ("50%", "50%"),
        ("%4", "%4"),
        ("%C3", "\ufffd"),  # a truncated UTF-8 sequence
        ("%FF%FE", "\ufffd\ufffd"),
        ("%ED%A0%80", "\ufffd\ufffd\ufffd"),  # an encoded surrogate is not UTF-8
        ("%00", "\x00"),
    ],
)
def test_bad_escapes_decode_without_error(raw: str, decoded: str) -> None:
    assert decode_value(raw) == decoded
    assert parse_baggage(f"k={raw}") == (Member("k", decoded),)


def test_lone_surrogates_are_replaced_not_raised() -> None:
    assert format_baggage([Member("k", "a\ud800b")]) == "k=a?b"


def test_format_drops_members_it_cannot_write() -> None:
    members = [Member("ok", "1"), Member("bad key", "2"), Member("p", "3", ("bad prop",))]
    assert format_baggage(members) == "ok=1"


# -- limits -----------------------------------------------------------------------------------


def test_at_most_180_members() -> None:
    header = ",".join(f"k{i}={i}" for i in range(1000))
    members = parse_baggage(header)
    assert len(members) == MAX_MEMBERS == 180
    assert members[-1] == Member("k179", "179")
    assert len(parse_baggage(format_baggage(Member(f"k{i}", "v") for i in range(1000)))) == 180


def test_at_most_8192_bytes_and_no_member_is_cut() -> None:
    big = "x" * 3000
    header = ",".join(f"k{i}={big}" for i in range(5))
    members = parse_baggage(header)
    assert [m.key for m in members] == ["k0", "k1"]  # a third would pass 8192 bytes
    assert all(m.value == big for m in members)
    assert len(format_baggage(members)) <= MAX_BYTES


def test_a_member_too_big_is_skipped_and_smaller_ones_still_fit() -> None:
    header = f"a=1,huge={'x' * 9000},b=2"
    assert parse_baggage(header) == (Member("a", "1"), Member("b", "2"))


def test_the_limit_counts_encoded_bytes() -> None:
    # 2000 'é' are 4000 characters of text but 12000 bytes encoded (%C3%A9 each).
    assert parse_baggage(format_baggage([Member("k", "é" * 2000)])) == ()
    assert len(format_baggage([Member("k", "é" * 1364)])) <= MAX_BYTES


def test_exactly_at_the_byte_limit() -> None:
    member = Member("k", "v" * (MAX_BYTES - 2))
    assert format_baggage([member]) == member.encoded()
    assert format_baggage([Member("k", "v" * (MAX_BYTES - 1))]) == ""


@pytest.mark.parametrize(
    "header",
    [
        "," * 10_000_000,
        "k=" + "v" * 10_000_000,
        ("a=1;" + "p;" * 1000 + ",") * 10_000,
        "%" * 10_000_000,
        "k=" + "%" * 1_000_000,
        ("k=%E2%9C%93," * 1_000_000),
        "=" * 10_000_000,
    ],
    ids=["commas", "long-value", "many-props", "percents", "percent-value", "many", "equals"],
)
def test_hostile_headers_are_cheap_and_bounded(header: str) -> None:
    start = time.perf_counter()
    members = parse_baggage(header)
    parse_baggage(header.encode())
    parse_tracestate(header)
    routing_key_in(header)
    assert time.perf_counter() - start < 2.0
    assert len(members) <= MAX_MEMBERS
    assert len(format_baggage(members)) <= MAX_BYTES


def test_long_input_is_cut_at_a_member_boundary() -> None:
    header = "a=1," + "," * 70_000 + "b=2"
    assert parse_baggage(header) == (Member("a", "1"),)  # past the scan window: unread
    cut = "x" * (MAX_SCAN - len("turnout-routing-key=k1") - 1) + ",turnout-routing-key=k123"
    assert routing_key_in(cut) is None  # not "k1", the half that fits
    assert routing_key_in(cut[-100:]) == "k123"


# -- tracestate -------------------------------------------------------------------------------


def test_tracestate_members() -> None:
    header = "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7 ,tenant@vendor=x y,Bad=1,x=,=y,n=a=b"
    assert parse_tracestate(header) == (
        ("congo", "t61rcWkgMzE"),
        ("rojo", "00f067aa0ba902b7"),
        ("tenant@vendor", "x y"),
    )


def test_tracestate_keeps_first_of_a_key_and_at_most_32() -> None:
    assert parse_tracestate("a=1,a=2") == (("a", "1"),)
    many = ",".join(f"k{i}=v" for i in range(100))
    assert len(parse_tracestate(many)) == MAX_TRACESTATE_MEMBERS == 32


# -- the routing key, as the gateway reads it ----------------------------------------------------


@pytest.mark.parametrize(
    ("listing", "key"),
    [
        ("turnout-routing-key=k1", "k1"),
        ("a=1, turnout-routing-key = k1 ;prop=1 ,b=2", "k1"),
        ("sd-routing-key=s1", "s1"),
        ("sd-routing-key=s1,turnout-routing-key=k1", "k1"),  # ours is looked for first
        ("turnout-routing-key=bad key!,sd-routing-key=s1", "s1"),
        ("turnout-routing-key=bad!,turnout-routing-key=k2", None),  # only the first counts
        ("turnout-routing-key=", None),
        ("turnout-routing-key=k%31", None),  # compared as written, like the gateway
        ("x-turnout-routing-key=k1", None),
        ("turnout-routing-key=" + "k" * 64, None),
        ("", None),
    ],
)
def test_routing_key_in(listing: str, key: str | None) -> None:
    assert routing_key_in(listing) == key
    assert routing_key_in(listing.encode()) == key


def test_with_member_puts_it_first_once() -> None:
    members = (Member("a", "1"), Member("k", "old"), Member("b", "2"), Member("k", "older"))
    assert with_member(members, Member("k", "new")) == (
        Member("k", "new"),
        Member("a", "1"),
        Member("b", "2"),
    )


# -- properties -------------------------------------------------------------------------------

keys = st.text(alphabet=TCHARS, min_size=1, max_size=20)
props = st.one_of(
    keys,
    st.builds(
        lambda k, v: f"{k}={encode_value(v)}",
        keys,
        st.text(max_size=10),
    ),
)
members = st.builds(
    Member, keys, st.text(max_size=40), st.tuples() | st.lists(props, max_size=3).map(tuple)
)


@given(st.lists(members, max_size=8))  # small enough to stay within the limits
def test_format_then_parse_round_trips(ms: list[Member]) -> None:
    assert parse_baggage(format_baggage(ms)) == tuple(ms)


@given(st.lists(members, max_size=400))
@settings(max_examples=50)
def test_format_is_bounded_and_parse_reads_it_back(ms: list[Member]) -> None:
    header = format_baggage(ms)
    parsed = parse_baggage(header)
    assert len(header) <= MAX_BYTES
    assert len(parsed) <= MAX_MEMBERS
    assert format_baggage(parsed) == header
    # What was kept is an in-order subsequence of what was given.
    rest = iter(ms)
    assert all(any(p == m for m in rest) for p in parsed)


@given(st.text(max_size=5000))
def test_parsing_any_text_never_raises_and_stays_bounded(header: str) -> None:
    parsed = parse_baggage(header)
    assert len(parsed) <= MAX_MEMBERS
    assert len(format_baggage(parsed)) <= MAX_BYTES
    parse_tracestate(header)
    routing_key_in(header)


@given(st.binary(max_size=5000))
def test_parsing_any_bytes_never_raises(header: bytes) -> None:
    assert len(parse_baggage(header)) <= MAX_MEMBERS
    parse_tracestate(header)
    routing_key_in(header)


listish = st.lists(
    st.one_of(
        st.sampled_from(["turnout-routing-key", "sd-routing-key", " turnout-routing-key ", "k"]),
        st.text(alphabet="ab-%=;, \t", max_size=6),
    ).flatmap(
        lambda k: st.builds(
            lambda v, sep: f"{k}{sep}{v}",
            st.text(alphabet="ab1._-%=;, \t!é", max_size=8),
            st.sampled_from(["=", " = ", ""]),
        )
    ),
    max_size=6,
).map(",".join)


@given(st.text(max_size=200) | listish)
def test_decoded_values_encode_back_to_octets(text: str) -> None:
    for member in parse_baggage(text):
        encoded = encode_value(member.value)
        assert all(0x21 <= ord(c) <= 0x7E and c not in '",;\\' for c in encoded)
        assert decode_value(encoded) == member.value
