"""The upstream side of an exchange (``proxy/forward.py``) driven on its own.

A ``Forwarder`` is built by the test from a real snapshot (``ExchangeHarness``) and
driven through its interface: the request goes up through ``admit``/``send``, events
come back through ``UpstreamSink``. The sink is a bare ``Exchange`` over a fake client
(no routing or filters ran: a compiled ``UpstreamSink`` cannot be subclassed by a test
class), so what the forwarder reports shows as what the client receives. The fake loop
moves time only when told; connects end when the test says so.
"""

from __future__ import annotations

from typing import Any, cast

from turnout.proxy.forward import Forwarder
from turnout.proxy.streams import Exchange
from turnout.testing.exchange import ExchangeHarness, Upstream
from turnout.testing.fakeloop import FakeTask
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.peers import FakeDownstream

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
UNAVAILABLE = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n"
FAST_BACK_OFF = {"baseInterval": "10ms", "maxInterval": "10ms"}


def _harness(*ports: int, rule: dict[str, Any] | None = None, **spec: Any) -> ExchangeHarness:
    return ExchangeHarness(
        dump(
            gateway(),
            backend("app", *(ports or (9000,)), **spec),
            route("api", [rule or to("app")]),
        )
    )


def _forward(
    h: ExchangeHarness,
    method: bytes = b"GET",
    content_length: int | None = None,
) -> tuple[Forwarder, FakeDownstream]:
    """Admit and send a request the way the exchange does; returns the client it answers."""
    action = h.action()
    choice = action.single or action.choices[0]
    assert choice.cluster is not None
    down = FakeDownstream()
    head = h.head(method, b"/", content_length=content_length)
    sink = Exchange(h.rt, down, head, h.loop.time())
    fw = sink.forward = Forwarder(
        h.rt, sink, head, choice, choice.cluster, action.backend_timeout, b"192.0.2.1", b"http"
    )
    assert fw.admit(h.loop.time())
    fw.send(None, 0, content_length is None, None)
    h.loop.run_ready()
    return fw, down


def _connect(h: ExchangeHarness, fw: Forwarder) -> Upstream:
    task = cast(FakeTask, fw.connecting)
    assert task is not None and fw.endpoint is not None
    up = h.open(fw.endpoint.pool)
    task.set_result(up.conn)
    h.loop.run_ready()
    return up


def test_retry_backs_off_then_succeeds_on_the_other_endpoint() -> None:
    retry = {
        "numRetries": 1,
        "retryOn": {"triggers": ["5xx"]},
        "perRetry": {"backOff": FAST_BACK_OFF},
    }
    h = _harness(9000, 9001, retry=retry)
    fw, down = _forward(h)
    first = _connect(h, fw)
    failed_endpoint = fw.endpoint
    h.respond(first, UNAVAILABLE)

    assert down.head is None  # not relayed, nothing answered: retried
    assert fw.attempt == 1 and fw.endpoint is None and fw.retry_timer is not None
    assert h.loop.pending_tasks() == []  # nothing happens during the back-off
    assert first.socket.aborted

    h.loop.advance(0.02)
    assert fw.connecting is not None and fw.endpoint is not failed_endpoint
    second = _connect(h, fw)
    assert second.received.startswith(b"GET / HTTP/1.1\r\n")
    h.respond(second, OK)
    assert down.status == 200 and bytes(down.body) == b"ok" and down.ended
    guard = fw.cluster.guard
    assert guard.retries == 0 and guard.active == 0  # the request was counted
    assert fw.done and fw.upstream is None


def test_the_per_try_timer_fires_on_a_slow_upstream() -> None:
    h = _harness(rule=to("app", timeouts={"request": "10s", "backendRequest": "1s"}))
    fw, down = _forward(h)
    up = _connect(h, fw)
    assert fw.backend_timer is not None

    h.loop.advance(1.5)  # no answer within the per-try timeout, and no retry policy
    assert down.status == 504 and b"backend_timeout" in down.body
    assert up.socket.aborted and fw.upstream is None and fw.gateway_error


def test_the_per_try_timer_retries_when_the_policy_covers_it() -> None:
    retry = {
        "numRetries": 1,
        "retryOn": {"triggers": ["reset"]},
        "perRetry": {"timeout": "1s", "backOff": FAST_BACK_OFF},
    }
    h = _harness(retry=retry)
    fw, down = _forward(h)
    slow = _connect(h, fw)
    h.loop.advance(1.5)
    assert down.head is None and fw.attempt == 1 and slow.socket.aborted
    h.loop.advance(0.02)
    fast = _connect(h, fw)
    h.respond(fast, OK)
    assert down.status == 200 and down.ended


def test_a_reset_after_the_response_head_breaks_the_response() -> None:
    h = _harness()
    fw, down = _forward(h)
    up = _connect(h, fw)
    h.respond(up, b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\npart")
    assert down.status == 200 and bytes(down.body) == b"part"

    h.reset(up)
    assert down.aborted and not down.ended  # a truncated body never looks complete
    assert down.status == 200  # never answered locally once the head went out
    assert fw.upstream is None and fw.gateway_error


def _stale(h: ExchangeHarness) -> Upstream:
    """A pooled connection that served a request before (its socket may have died)."""
    pool = next(iter(h.snapshot.pools.values()))
    up = h.idle(pool)
    up.conn.requests = 1
    return up


def test_a_dead_pooled_connection_is_retried_once_for_an_idempotent_request() -> None:
    h = _harness()
    stale = _stale(h)
    fw, down = _forward(h)
    assert fw.upstream is stale.conn and stale.received.startswith(b"GET /")
    h.reset(stale)  # died before any response byte
    assert down.head is None and fw.retried
    fresh = _connect(h, fw)  # a fresh connection, not a policy retry
    assert fw.attempt == 0
    h.reset(fresh)  # only once: the second loss is a failure
    assert down.status == 502 and b"upstream_error" in down.body


def test_a_dead_pooled_connection_is_not_retried_for_a_request_with_a_body() -> None:
    h = _harness()
    stale = _stale(h)
    fw, down = _forward(h, b"POST", content_length=5)
    assert fw.upstream is stale.conn
    fw.request_body(b"hello", False)
    fw.request_end(None)
    h.reset(stale)
    assert down.status == 502 and b"upstream_error" in down.body
    assert fw.connecting is None
