"""HTTP/1.1 proxying behaviour over real sockets: keep-alive, pipelining, bodies both ways,
interim responses, HEAD/204/304, error statuses, timeouts and the stale-connection retry.

One Turnout process serves the whole module; upstreams are the echo service, the fault
upstream (``turnout.testing.faults``) and ports nobody listens on.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tests.conftest import EchoFactory, ServeFactory
from turnout.samples.echo import EchoState
from turnout.testing import BackgroundLoop, TurnoutProcess, free_port
from turnout.testing.faults import FaultState, start_faults
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.rawhttp import exchange, parse_responses
from turnout.testing.requests import request


@dataclass
class Env:
    gw: TurnoutProcess
    port: int
    echo: EchoState
    faults: FaultState
    refused_port: int


@pytest.fixture(scope="module")
def blackhole() -> Iterator[int]:
    """A port whose accept queue is full: SYNs are dropped, so connects hang."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(s)
    time.sleep(0.2)
    yield port
    for s in fillers:
        s.close()
    listener.close()


def _strip(prefix: str) -> dict[str, object]:
    return {
        "type": "URLRewrite",
        "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}},
    }


@pytest.fixture(scope="module")
def env(
    bg: BackgroundLoop, echo_module: EchoFactory, serve_module: ServeFactory, blackhole: int
) -> Iterator[Env]:
    echo = echo_module(pod="echo-local-0")
    fault_server, faults = bg.run(start_faults())
    port = free_port()
    refused = free_port()
    config = dump(
        gateway("gw", port),
        backend("echo", echo.port),
        backend("faults", faults.port),
        backend("refused", refused),
        backend("empty"),
        backend("blackhole", blackhole, timeout={"connect": "1s"}),
        route(
            "main",
            [
                to("echo", "/echo"),
                to("faults", "/f", filters=[_strip("/f")]),
                to("refused", "/refused"),
                to("empty", "/empty"),
                to("blackhole", "/blackhole"),
                to(
                    "faults",
                    "/slow-request",
                    filters=[_strip("/slow-request")],
                    timeouts={"request": "500ms"},
                ),
                to(
                    "faults",
                    "/slow-backend",
                    filters=[_strip("/slow-backend")],
                    timeouts={"backendRequest": "500ms"},
                ),
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/ghost"}}],
                    "backendRefs": [{"name": "does-not-exist"}],
                },
            ],
        ),
    )
    gw = serve_module(config, args=["--stream-idle-timeout", "3s"])
    yield Env(gw, port, echo, faults, refused)
    bg.call(fault_server.close)


def _conn(env: Env) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", env.port, timeout=10)


ConnFactory = Callable[[], http.client.HTTPConnection]


@pytest.fixture
def conns(env: Env) -> Iterator[ConnFactory]:
    """Client connections to the gateway, closed after the test."""
    opened: list[http.client.HTTPConnection] = []

    def make() -> http.client.HTTPConnection:
        opened.append(_conn(env))
        return opened[-1]

    yield make
    for conn in opened:
        conn.close()


def _get(
    env: Env, path: str, method: str = "GET", **headers: str
) -> tuple[int, dict[str, str], bytes]:
    reply = request(env.port, path, method=method, headers=headers)
    return reply.status, reply.headers, reply.body


# -- keep-alive, pooling, pipelining ---------------------------------------------------------


def test_keep_alive_reuses_client_and_upstream_connections(conns: ConnFactory, env: Env) -> None:
    before = env.faults.connections
    conn = conns()
    for _ in range(5):
        conn.request("GET", "/f/ok")
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.read() == b"ok"
    conn.close()
    assert env.faults.connections - before <= 1  # one pooled upstream connection served all


def test_pipelined_requests_are_answered_in_order(env: Env) -> None:
    raw = (
        b"".join(b"GET /echo/%d HTTP/1.1\r\nHost: a\r\n\r\n" % i for i in range(5))
        + b"GET /echo/last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    data, closed = exchange(env.port, raw)
    responses = parse_responses(data)
    assert [json.loads(r.body)["path"] for r in responses] == [
        "/echo/0",
        "/echo/1",
        "/echo/2",
        "/echo/3",
        "/echo/4",
        "/echo/last",
    ]
    assert closed


# -- bodies ----------------------------------------------------------------------------------


def test_chunked_request_body_is_streamed_to_the_upstream(conns: ConnFactory, env: Env) -> None:
    chunks = [b"a" * 70000] * 80  # 5.6 MB in pieces
    conn = conns()
    conn.request("POST", "/echo/upload", body=iter(chunks), encode_chunked=True)
    resp = conn.getresponse()
    body = json.loads(resp.read())
    assert resp.status == 200
    assert body["body_bytes"] == 70000 * 80
    assert body["headers"]["Transfer-Encoding"] == ["chunked"]


def test_content_length_request_body(conns: ConnFactory, env: Env) -> None:
    conn = conns()
    conn.request("PUT", "/echo/put", body=b"z" * 100_000)
    body = json.loads(conn.getresponse().read())
    assert body["body_bytes"] == 100_000
    assert body["headers"]["Content-Length"] == ["100000"]


@pytest.mark.parametrize("chunked", [False, True])
def test_response_bodies_stream_through(conns: ConnFactory, env: Env, chunked: bool) -> None:
    conn = conns()
    conn.request("GET", f"/f/bytes/3000000{'?chunked=1' if chunked else ''}")
    resp = conn.getresponse()
    assert resp.status == 200
    assert len(resp.read()) == 3_000_000
    conn.request("GET", "/f/ok")  # the same client connection stays usable
    assert conn.getresponse().read() == b"ok"


def test_close_delimited_upstream_body_is_rechunked_for_http11_clients(
    conns: ConnFactory, env: Env
) -> None:
    conn = conns()
    conn.request("GET", "/f/close-delimited")
    resp = conn.getresponse()
    assert resp.getheader("transfer-encoding") == "chunked"
    assert resp.read() == b"until-the-end"
    conn.request("GET", "/f/ok")
    assert conn.getresponse().read() == b"ok"


def test_close_delimited_body_for_http10_clients_ends_with_close(env: Env) -> None:
    data, closed = exchange(env.port, b"GET /f/close-delimited HTTP/1.0\r\nHost: a\r\n\r\n")
    assert closed
    assert data.endswith(b"until-the-end")
    assert b"transfer-encoding" not in data.lower()


def test_expect_100_continue(env: Env) -> None:
    with socket.create_connection(("127.0.0.1", env.port), timeout=5) as s:
        s.sendall(
            b"POST /echo/e HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        assert s.recv(1024).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        s.sendall(b"hello")
        data = b""
        while b"body_bytes" not in data:
            data += s.recv(65536)
    (resp,) = parse_responses(data)
    body = json.loads(resp.body)
    assert body["body_bytes"] == 5
    assert "Expect" not in body["headers"]


# -- HEAD, 1xx, 204/304 ----------------------------------------------------------------------


def test_head_response_has_no_body_and_keeps_the_connection(conns: ConnFactory, env: Env) -> None:
    conn = conns()
    conn.request("HEAD", "/f/head-cl")
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.getheader("content-length") == "5"
    assert resp.read() == b""
    conn.request("GET", "/f/head-cl")
    assert conn.getresponse().read() == b"hello"


@pytest.mark.parametrize("code", [204, 304])
def test_no_body_statuses(env: Env, code: int) -> None:
    raw = (
        b"GET /f/status/%d HTTP/1.1\r\nHost: a\r\n\r\nGET /f/ok HTTP/1.1\r\nHost: a\r\n\r\n" % code
    )
    data, _ = exchange(env.port, raw, read_until_close=False, expect=2)
    first, second = parse_responses(data)
    assert first.status == code and first.body == b""
    assert second.body == b"ok"


def test_interim_responses_are_relayed(env: Env) -> None:
    data, _ = exchange(
        env.port, b"GET /f/interim HTTP/1.1\r\nHost: a\r\n\r\n", read_until_close=False, expect=2
    )
    assert data.startswith(b"HTTP/1.1 103 Early Hints\r\n")
    assert parse_responses(data)[-1].body == b"ok"


# -- errors ----------------------------------------------------------------------------------


def _error(env: Env, path: str, method: str = "GET") -> tuple[int, dict[str, str], dict[str, str]]:
    status, headers, body = _get(env, path, method)
    return status, headers, json.loads(body)


def test_no_route_is_404_with_the_request_id(env: Env) -> None:
    status, headers, body = _error(env, "/nothing-here")
    assert status == 404
    assert body["error"] == "no_route"
    assert body["request_id"] == headers["x-request-id"]
    assert headers["content-type"] == "application/json"


def test_backend_without_endpoints_is_503(env: Env) -> None:
    status, _, body = _error(env, "/empty")
    assert status == 503 and body["error"] == "no_endpoint"


def test_missing_backend_is_500(env: Env) -> None:
    status, _, body = _error(env, "/ghost")
    assert status == 500 and body["error"] == "backend_not_found"


def test_connection_refused_is_502(env: Env) -> None:
    status, _, body = _error(env, "/refused")
    assert status == 502 and body["error"] == "upstream_connect_failed"


@pytest.mark.parametrize("path", ["/f/close-before-headers", "/f/reset-before-headers"])
def test_upstream_failure_before_the_head_is_502(env: Env, path: str) -> None:
    status, _, body = _error(env, path, method="POST")  # POST: never retried
    assert status == 502 and body["error"] == "upstream_error"


@pytest.mark.parametrize("path", ["/f/headers-then-reset", "/f/truncated"])
def test_truncated_content_length_body_never_looks_complete(env: Env, path: str) -> None:
    data, closed = exchange(env.port, b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % path.encode())
    (resp,) = parse_responses(data)
    assert resp.status == 200
    assert not resp.complete  # 10 of 1000 bytes, then the gateway closed
    assert closed


def test_unterminated_chunked_body_never_gets_a_last_chunk(env: Env) -> None:
    data, closed = exchange(env.port, b"GET /f/chunked-unterminated HTTP/1.1\r\nHost: a\r\n\r\n")
    (resp,) = parse_responses(data)
    assert resp.body == b"0123456789"
    assert not resp.complete
    assert closed


def test_stale_pooled_connection_is_retried_once_for_idempotent_requests(
    conns: ConnFactory, env: Env
) -> None:
    conn = conns()
    conn.request("GET", "/f/ok-then-drop")
    assert conn.getresponse().read() == b"ok"
    before = env.faults.connections
    conn.request("GET", "/f/ok")  # rides the pooled connection, which drops it unanswered
    resp = conn.getresponse()
    assert resp.status == 200 and resp.read() == b"ok"
    assert env.faults.connections == before + 1  # retried on a fresh connection


def test_stale_pooled_connection_is_not_retried_for_post(conns: ConnFactory, env: Env) -> None:
    conn = conns()
    conn.request("GET", "/f/ok-then-drop")
    assert conn.getresponse().read() == b"ok"
    conn.request("POST", "/f/ok", body=b"data")
    resp = conn.getresponse()
    assert resp.status == 502


# -- timeouts --------------------------------------------------------------------------------


def test_route_request_timeout_is_504(env: Env) -> None:
    started = time.monotonic()
    status, _, body = _error(env, "/slow-request/sleep/3")
    assert status == 504 and body["error"] == "request_timeout"
    assert time.monotonic() - started < 2.5


def test_route_backend_request_timeout_is_504(env: Env) -> None:
    status, _, body = _error(env, "/slow-backend/sleep/3")
    assert status == 504 and body["error"] == "backend_timeout"


def test_connect_timeout_is_504(env: Env) -> None:
    status, _, body = _error(env, "/blackhole")
    assert status == 504 and body["error"] == "upstream_connect_timeout"


def test_stalled_stream_is_cut_by_the_stream_idle_timeout(env: Env) -> None:
    status, _, body = _error(env, "/f/never-answer")
    assert status == 504 and body["error"] == "stream_idle_timeout"
