"""Orderings of events around one ``Exchange`` that sockets cannot provoke on demand.

Each test drives a real exchange (real snapshot, pools, upstream codec) through
``turnout.testing.exchange.ExchangeHarness``: the loop's clock moves only when the test
says so and every task (connect, password check) ends when the test resolves it.
"""

from __future__ import annotations

import base64
from typing import Any

import bcrypt

from turnout.proxy.filters.auth import AuthVerdict
from turnout.testing.exchange import ExchangeHarness
from turnout.testing.manifests import backend, dump, gateway, route, to

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
UNAVAILABLE = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n"
PASSWORD_HASH = bcrypt.hashpw(b"secret", bcrypt.gensalt(rounds=4)).decode()


def _harness(*extra: dict[str, Any], rule: dict[str, Any] | None = None, **spec: Any) -> Any:
    return ExchangeHarness(
        dump(
            gateway(),
            backend("app", 9000, **spec),
            route("api", [rule or to("app")]),
            *extra,
        )
    )


def _basic_auth_policy() -> dict[str, Any]:
    return {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "SecurityPolicy",
        "metadata": {"name": "basic"},
        "spec": {
            "targetRefs": [{"kind": "HTTPRoute", "name": "api"}],
            "basicAuth": {"users": {"inline": f"alice:{PASSWORD_HASH}\n"}},
        },
    }


def _credentials() -> list[tuple[bytes, bytes]]:
    return [(b"authorization", b"Basic " + base64.b64encode(b"alice:secret"))]


def test_client_leaves_while_the_password_check_is_pending() -> None:
    h = _harness(_basic_auth_policy())
    call = h.request(headers=_credentials())
    (check,) = h.loop.pending_tasks()  # the bcrypt check: the exchange is suspended
    assert call.down.head is None and call.exchange.forward is None

    call.down.leave(call.exchange)
    h.loop.run_ready()

    assert check.cancelled()  # the pending decision is dropped with the request
    assert call.exchange.finished and call.exchange.status == 499
    assert call.exchange.forward is None and call.exchange.endpoint is None
    assert call.down.late == []  # nothing was written to the gone client


def test_a_decision_arriving_after_the_request_timed_out_is_ignored() -> None:
    h = _harness(
        _basic_auth_policy(),
        rule=to("app", timeouts={"request": "2s"}),
    )
    call = h.request(headers=_credentials())
    (check,) = h.loop.pending_tasks()

    h.loop.advance(2.5)  # the request timer fires during the suspension
    assert call.down.status == 504 and call.down.ended
    assert check.cancelled()
    assert call.exchange.forward is None  # the upstream is never contacted


def test_the_suspended_request_resumes_with_the_decision() -> None:
    h = _harness(_basic_auth_policy())
    call = h.request(headers=_credentials())
    (check,) = h.loop.pending_tasks()

    check.set_result(AuthVerdict(0))
    h.loop.run_ready()
    up = h.connect(call)
    assert up.received.startswith(b"GET / HTTP/1.1\r\n")
    h.respond(up, OK)
    assert call.down.status == 200 and bytes(call.down.body) == b"ok"


def test_request_timer_fires_during_the_retry_back_off() -> None:
    retry = {
        "numRetries": 2,
        "retryOn": {"triggers": ["5xx"]},
        "perRetry": {"backOff": {"baseInterval": "5s", "maxInterval": "5s"}},
    }
    h = _harness(rule=to("app", timeouts={"request": "3s"}), retry=retry)
    call = h.request()
    up = h.connect(call)
    h.loop.advance(1.0)
    h.respond(up, UNAVAILABLE)  # a retryable answer: back off 2.5-5 s, then try again
    ex = h.forwarder(call)
    back_off = ex.retry_timer
    assert back_off is not None and ex.attempt == 1 and call.down.head is None
    assert back_off.when() > h.loop.time() + 2.0  # still backing off at t = 3 s

    h.loop.advance(2.0)  # t = 3 s: the request timer fires inside the back-off
    assert call.down.status == 504 and call.down.ended
    assert back_off.cancelled()
    assert ex.retry_timer is None  # the back-off was cancelled with it
    h.loop.advance(10.0)
    assert ex.connecting is None and ex.upstream is None  # and no retry started later
    assert call.down.late == []


def test_the_failed_attempts_backend_timer_never_fires_while_the_retry_connects() -> None:
    retry = {
        "numRetries": 1,
        "retryOn": {"triggers": ["reset"]},
        "perRetry": {"timeout": "2s", "backOff": {"baseInterval": "10ms", "maxInterval": "10ms"}},
    }
    h = _harness(retry=retry)
    call = h.request()
    first = h.connect(call)
    h.reset(first)  # reset before any response: retried after the back-off
    h.loop.advance(0.05)
    ex = h.forwarder(call)
    assert ex.connecting is not None  # the retry is connecting
    assert ex.backend_timer is None  # the first attempt's per-try timer went with it

    h.loop.advance(5.0)  # far past the per-try timeout while still connecting
    assert call.down.head is None
    second = h.connect(call)
    assert ex.backend_timer is not None  # armed again for the new attempt
    h.respond(second, OK)
    assert call.down.status == 200


def test_request_timer_fires_while_connecting_and_the_late_connection_is_closed() -> None:
    h = _harness(rule=to("app", timeouts={"request": "1s"}))
    call = h.request()
    fw = h.forwarder(call)
    task = h.connecting(call)
    h.loop.advance(1.5)
    assert call.down.status == 504 and task.cancelled()
    assert fw.connecting is None


def test_a_request_filter_answers_locally_and_no_upstream_is_contacted() -> None:
    redirect = {
        "type": "RequestRedirect",
        "requestRedirect": {"hostname": "elsewhere.example", "statusCode": 301},
    }
    h = _harness(rule=to("app", filters=[redirect]))
    call = h.request(target=b"/a?b=1")
    assert call.down.status == 301
    assert call.down.header(b"location") == b"http://elsewhere.example:8080/a?b=1"
    assert call.exchange.forward is None and call.exchange.endpoint is None
    assert h.loop.pending_tasks() == []
    pool = next(iter(h.snapshot.pools.values()))
    assert pool.open_count == 0


def test_a_response_filter_modifies_the_upstream_response_head() -> None:
    modifier = {
        "type": "ResponseHeaderModifier",
        "responseHeaderModifier": {
            "set": [{"name": "X-Served-By", "value": "turnout"}],
            "remove": ["Server"],
        },
    }
    h = _harness(rule=to("app", filters=[modifier]))
    call = h.request()
    up = h.connect(call)
    h.respond(up, b"HTTP/1.1 200 OK\r\nserver: nginx\r\ncontent-length: 2\r\n\r\nok")
    assert call.down.header(b"x-served-by") == b"turnout"
    assert call.down.header(b"server") is None
    assert bytes(call.down.body) == b"ok"


def test_a_rule_without_filters_has_empty_chains_and_no_context() -> None:
    h = _harness()
    action = h.action()
    assert action.request_filters == () and action.forward_filters == ()
    assert not action.needs_context
    assert all(c.request_filters == () == c.response_filters for c in action.choices)
    call = h.request()
    assert call.exchange.ctx is None
