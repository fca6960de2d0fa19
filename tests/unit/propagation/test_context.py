"""Extracting the propagation context (same key as the gateway finds, in the same order),
making it current, and injecting it into outbound headers of every common shape."""

from __future__ import annotations

import threading
from collections.abc import MutableMapping

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict
from requests.structures import CaseInsensitiveDict

from turnout.propagation import (
    EMPTY,
    Member,
    PropagationContext,
    bound_context,
    current,
    extract,
    inject,
    outbound_headers,
    use,
    wrap,
)
from turnout.proxy.protocols.heads import RequestHead
from turnout.proxy.routing.keys import FROM_COOKIE, find_key

# -- extract ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "key"),
    [
        ({"x-turnout-routing-key": "h1", "baggage": "turnout-routing-key=b1"}, "h1"),
        ({"x-turnout-routing-key": "bad key", "baggage": "turnout-routing-key=b1"}, "b1"),
        ({"baggage": "sd-routing-key=s1", "tracestate": "turnout-routing-key=t1"}, "s1"),
        ({"baggage": "other=1", "tracestate": "turnout-routing-key=t1"}, "t1"),
        ({"tracestate": "sd-routing-key=t2", "ot-baggage-turnout-routing-key": "o1"}, "t2"),
        ({"uberctx-turnout-routing-key": "u1", "ot-baggage-sd-routing-key": "o2"}, "u1"),
        ({"ot-baggage-turnout-routing-key": "o1", "uberctx-turnout-routing-key": "u1"}, "o1"),
        ({"uberctx-sd-routing-key": " u2 "}, "u2"),
        ({"ot-baggage-sd-routing-key": "o2", "uberctx-sd-routing-key": "u2"}, "o2"),
        ({"X-Turnout-Routing-Key": "Mixed.Case_1"}, "Mixed.Case_1"),
        ({"cookie": "turnout-routing-key=c1"}, None),  # gateway-only
        ({"x-turnout-routing-key": "k" * 64}, None),
        ({"x-turnout-routing-key": "ké"}, None),
        ({}, None),
    ],
)
def test_key_precedence(headers: dict[str, str], key: str | None) -> None:
    assert extract(headers).routing_key == key
    as_bytes = [(k.encode(), v.encode()) for k, v in headers.items()]
    assert extract(as_bytes).routing_key == key


def test_repeated_headers_are_one_list() -> None:
    ctx = extract([("Baggage", "a=1"), ("baggage", "turnout-routing-key=k1"), ("BAGGAGE", "b=2")])
    assert ctx.routing_key == "k1"
    assert ctx.baggage == {"a": "1", "turnout-routing-key": "k1", "b": "2"}
    # Two key headers are "k1,k2", which is no key (as at the gateway).
    assert extract([("x-turnout-routing-key", "k1"), ("x-turnout-routing-key", "k2")]) == EMPTY


def test_baggage_dict_is_first_wins_and_a_copy() -> None:
    ctx = extract({"baggage": "a=1,a=2,b=x%20y"})
    assert ctx.members == (Member("a", "1"), Member("a", "2"), Member("b", "x y"))
    assert ctx.baggage == {"a": "1", "b": "x y"}
    ctx.baggage["a"] = "changed"
    assert ctx.baggage["a"] == "1"


def test_no_propagation_headers_is_the_empty_context() -> None:
    assert extract({"host": "a", "accept": "*/*"}) is EMPTY
    assert not EMPTY
    assert PropagationContext(routing_key="k")
    assert PropagationContext(members=(Member("a", "1"),))


# Header names and values the gateway's finder and extract() must agree on.
NAMES = [
    "x-turnout-routing-key",
    "baggage",
    "tracestate",
    "ot-baggage-turnout-routing-key",
    "uberctx-turnout-routing-key",
    "ot-baggage-sd-routing-key",
    "uberctx-sd-routing-key",
    "accept",
]
TOKENS = ["k1", "K.2_x", "bad key", "", " k3 ", "k" * 63, "k" * 64, "é", "k4;p=1", "%41"]
member_names = st.sampled_from(
    ["turnout-routing-key", "sd-routing-key", "other", " sd-routing-key"]
)
list_values = st.lists(
    st.builds(
        lambda n, sep, v: f"{n}{sep}{v}",
        member_names,
        st.sampled_from(["=", " = ", ""]),
        st.sampled_from(TOKENS),
    ),
    max_size=4,
).map(",".join)
header_lists = st.lists(
    st.tuples(st.sampled_from(NAMES), st.one_of(st.sampled_from(TOKENS), list_values)), max_size=6
)


@given(header_lists)
def test_same_key_as_the_gateway(headers: list[tuple[str, str]]) -> None:
    raw = [(n.encode(), v.encode()) for n, v in headers]
    key, source = find_key(RequestHead(b"GET", b"/", b"", raw, b"example.com", "example.com"))
    expected = key.decode() if key and source < FROM_COOKIE else None
    assert extract(raw).routing_key == expected
    assert extract(headers).routing_key == expected


# -- current / use ----------------------------------------------------------------------------


def test_use_nests_and_restores() -> None:
    a, b = PropagationContext("a"), PropagationContext("b")
    assert current() is EMPTY
    with use(a):
        assert current() is a
        with use(b) as entered:
            assert entered is b
            assert current() is b
        assert current() is a
    assert current() is EMPTY


def test_use_restores_on_error() -> None:
    with pytest.raises(RuntimeError), use(PropagationContext("a")):
        raise RuntimeError
    assert current() is EMPTY


def test_a_new_thread_starts_empty_but_wrap_carries_the_context() -> None:
    seen: dict[str, str | None] = {}

    def look(name: str) -> None:
        seen[name] = current().routing_key

    with use(PropagationContext("k1")):
        plain = threading.Thread(target=look, args=("plain",))
        wrapped = threading.Thread(target=wrap(look), args=("wrapped",))
    for thread in (plain, wrapped):
        thread.start()
        thread.join()
    assert seen == {"plain": None, "wrapped": "k1"}


def test_a_wrapped_function_may_run_in_several_threads_at_once() -> None:
    barrier = threading.Barrier(4)
    seen: list[str | None] = []

    def look() -> None:
        barrier.wait(timeout=5)  # all four inside the same wrapped function together
        seen.append(current().routing_key)

    with use(PropagationContext("k1")):
        fn = wrap(look)
    threads = [threading.Thread(target=fn) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == ["k1"] * 4


def test_bound_context_leaves_the_callers_context_alone() -> None:
    context = bound_context(PropagationContext("k1"))
    assert context.run(current).routing_key == "k1"
    assert current() is EMPTY


# -- inject -----------------------------------------------------------------------------------


def test_outside_a_request_nothing_is_injected() -> None:
    headers = {"baggage": "a=1"}
    inject(headers)
    assert headers == {"baggage": "a=1"}
    assert outbound_headers() == {}


def test_key_and_baggage_are_injected() -> None:
    headers: dict[str, str] = {}
    with use(extract({"baggage": "turnout-routing-key=k1,other=x"})):
        inject(headers)
    assert headers == {"baggage": "turnout-routing-key=k1,other=x", "x-turnout-routing-key": "k1"}


def test_key_from_a_header_becomes_the_first_baggage_member() -> None:
    ctx = extract({"uberctx-turnout-routing-key": "k1", "baggage": "a=1"})
    with use(ctx):
        assert outbound_headers() == {
            "baggage": "turnout-routing-key=k1,a=1",
            "x-turnout-routing-key": "k1",
        }


def test_baggage_without_a_key_travels_without_one() -> None:
    with use(extract({"baggage": "a=1,b=%20"})):
        assert outbound_headers() == {"baggage": "a=1,b=%20"}


def test_merging_keeps_the_callers_members_and_sets_the_key() -> None:
    inbound = "turnout-routing-key=k1,sd-routing-key=old,shared=inbound,only-in=1"
    with use(extract({"baggage": inbound, "x-turnout-routing-key": "k1"})):
        out = outbound_headers(["shared=caller;p", "turnout-routing-key=stale,mine=2"])
    assert out == {
        "baggage": "turnout-routing-key=k1,shared=caller;p,mine=2,sd-routing-key=k1,only-in=1",
        "x-turnout-routing-key": "k1",
    }


def test_the_key_member_survives_a_full_list() -> None:
    crowded = ",".join(f"m{i}=v" for i in range(300))
    with use(PropagationContext("k1")):
        out = outbound_headers([crowded])
    assert out["baggage"].startswith("turnout-routing-key=k1,m0=v,")
    assert out["baggage"].count(",") == 179


@pytest.mark.parametrize(
    "make",
    [dict, CaseInsensitiveDict, CIMultiDict, httpx.Headers],
    ids=["dict", "requests", "multidict", "httpx"],
)
def test_inject_into_every_header_type(make: type[MutableMapping[str, str]]) -> None:
    headers = make()
    headers["Accept"] = "*/*"
    headers["Baggage"] = "mine=1"
    headers["X-Turnout-Routing-Key"] = "stale"
    with use(extract({"baggage": "turnout-routing-key=k1,other=x"})):
        inject(headers)
        inject(headers)  # idempotent
    names = [name.lower() for name in headers]
    assert sorted(names) == ["accept", "baggage", "x-turnout-routing-key"]
    assert headers["baggage"] == "turnout-routing-key=k1,mine=1,other=x"
    assert headers["x-turnout-routing-key"] == "k1"


def test_inject_merges_every_baggage_value_of_a_multidict() -> None:
    headers: CIMultiDict[str] = CIMultiDict([("baggage", "a=1"), ("Baggage", "b=2")])
    with use(PropagationContext("k1")):
        inject(headers)
    assert headers.getall("baggage") == ["turnout-routing-key=k1,a=1,b=2"]


def test_inject_into_a_dict_with_differently_cased_names() -> None:
    headers = {"baggage": "a=1", "BAGGAGE": "b=2"}
    with use(PropagationContext("k1")):
        inject(headers)
    assert headers == {"baggage": "turnout-routing-key=k1,a=1,b=2", "x-turnout-routing-key": "k1"}


@pytest.mark.parametrize("key", ["", "a b", "k\r\nx-injected: 1", "a,b", "k" * 64])
def test_a_made_up_context_cannot_carry_an_invalid_key(key: str) -> None:
    with pytest.raises(ValueError, match="routing key"):
        PropagationContext(key)


def test_duplicate_members_go_out_once_first_wins() -> None:
    with use(extract({"baggage": "a=1,a=2,b=1"})):
        assert outbound_headers(["c=1,c=2,b=caller"]) == {"baggage": "c=1,b=caller,a=1"}
