"""A request's routing key and baggage cross a chain of three real services:
A (ASGI on uvicorn) -> B (sync gRPC server, every call shape) -> C (WSGI on wsgiref),
each hop instrumented only with the propagation kit (see conftest.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import httpx
import pytest
from websockets.sync.client import connect

from tests.integration.propagation.conftest import NO_PROXY, ServiceA
from turnout.propagation import extract, use
from turnout.propagation.grpc import client_interceptor

SHAPES = ["unary_unary", "unary_stream", "stream_unary", "stream_stream"]
COUNTS = {"unary_unary": 1, "unary_stream": 3, "stream_unary": 1, "stream_stream": 2}


def get(url: str, headers: dict[str, str] | None = None) -> Any:
    with httpx.Client(trust_env=False, timeout=20) as client:
        response = client.get(url, headers=headers)
        response.raise_for_status()
        return response.json()


@pytest.mark.parametrize("shape", SHAPES)
def test_key_and_baggage_reach_c(service_a: ServiceA, shape: str) -> None:
    result = get(
        f"{service_a.url}/chain?shape={shape}",
        {"baggage": "turnout-routing-key=k1,other=x"},
    )
    assert result["a"] == "k1"
    assert len(result["answers"]) == COUNTS[shape]
    for answer in result["answers"]:
        assert answer["b"] == "k1"
        seen = answer["c"]
        assert seen["header"] == "k1"
        assert seen["baggage"] == "turnout-routing-key=k1,other=x"
        assert seen["key"] == "k1"
        assert seen["members"] == {"turnout-routing-key": "k1", "other": "x"}


@pytest.mark.parametrize("shape", SHAPES)
def test_no_key_reaches_c_as_no_key(service_a: ServiceA, shape: str) -> None:
    result = get(f"{service_a.url}/chain?shape={shape}")
    assert result["a"] is None
    for answer in result["answers"]:
        assert answer["b"] is None
        assert answer["c"] == {"baggage": None, "header": None, "key": None, "members": {}}


def test_baggage_without_a_key_travels_alone(service_a: ServiceA) -> None:
    result = get(f"{service_a.url}/chain?shape=unary_unary", {"baggage": "user=ada%20l"})
    seen = result["answers"][0]["c"]
    assert seen["header"] is None
    assert seen["baggage"] == "user=ada%20l"
    assert seen["members"] == {"user": "ada l"}


@pytest.mark.parametrize(
    "headers",
    [
        {"x-turnout-routing-key": "k2"},
        {"tracestate": "sd-routing-key=k2"},
        {"uberctx-turnout-routing-key": "k2"},
        {"ot-baggage-sd-routing-key": "k2"},
    ],
    ids=lambda h: next(iter(h)),
)
def test_a_key_found_anywhere_travels_as_baggage(
    service_a: ServiceA, headers: dict[str, str]
) -> None:
    seen = get(f"{service_a.url}/chain?shape=unary_unary", headers)["answers"][0]["c"]
    assert seen["header"] == "k2"
    assert seen["baggage"] == "turnout-routing-key=k2"


def test_an_invalid_key_is_dropped_and_the_rest_travels(service_a: ServiceA) -> None:
    headers = {"x-turnout-routing-key": "not a key!", "baggage": "other=x"}
    seen = get(f"{service_a.url}/chain?shape=unary_unary", headers)["answers"][0]["c"]
    assert seen["header"] is None
    assert seen["baggage"] == "other=x"


def test_concurrent_requests_keep_their_own_keys(service_a: ServiceA) -> None:
    """Sixteen requests at once through shared pools and threads: no key leaks from one
    request to another (every hop sets the context per request and restores it)."""

    def one(i: int) -> tuple[int, list[str | None]]:
        shape = SHAPES[i % len(SHAPES)]
        headers = {"baggage": f"turnout-routing-key=key{i},n={i}"} if i % 3 else {}
        result = get(f"{service_a.url}/chain?shape={shape}", headers)
        return i, [a["c"]["key"] for a in result["answers"]]

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(one, range(16)))
    for i, keys in results:
        expected = f"key{i}" if i % 3 else None
        assert keys and all(key == expected for key in keys), (i, keys)


def test_asyncio_fan_out_inside_a_request(service_a: ServiceA) -> None:
    seen = get(f"{service_a.url}/fanout", {"baggage": "turnout-routing-key=k3,other=y"})
    assert len(seen) == 5
    for one in seen:
        assert one["header"] == "k3"
        assert one["members"] == {"turnout-routing-key": "k3", "other": "y"}
    assert all(one["key"] is None for one in get(f"{service_a.url}/fanout"))


def test_websocket_scope(service_a: ServiceA) -> None:
    url = service_a.url.replace("http://", "ws://") + "/ws"
    with connect(url, additional_headers={"x-turnout-routing-key": "ws1"}) as ws:
        assert json.loads(ws.recv(timeout=10)) == "ws1"
    with connect(url) as ws:
        assert json.loads(ws.recv(timeout=10)) is None


def test_lifespan_passes_through(service_a: ServiceA) -> None:
    assert service_a.lifespan[0] == "lifespan.startup:None"


@pytest.fixture
def channel_to_b(service_b: str) -> Iterator[grpc.Channel]:
    plain = grpc.insecure_channel(service_b, options=NO_PROXY)
    yield grpc.intercept_channel(plain, client_interceptor())
    plain.close()


def test_grpc_metadata_merges_with_the_callers(channel_to_b: grpc.Channel) -> None:
    call = channel_to_b.unary_unary("/chain.B/Call")
    with use(extract({"baggage": "turnout-routing-key=k1,other=x"})):
        answer = json.loads(call(b"", metadata=[("baggage", "mine=1"), ("other-md", "v")]))
    assert answer["b"] == "k1"
    assert answer["c"]["baggage"] == "turnout-routing-key=k1,mine=1,other=x"


def test_grpc_unknown_method_is_still_unimplemented(channel_to_b: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        channel_to_b.unary_unary("/chain.B/Nope")(b"", timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
