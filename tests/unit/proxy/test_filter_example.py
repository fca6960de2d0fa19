"""Worked example: writing a filter, compiling it into a route rule, exercising it.

docs/architecture.md ("Where do I add a filter") points here. A filter is any object
with the hooks of its phase (``turnout.proxy.filters.base``): ``on_request``/``resume``
for the request phase, ``on_response`` for the response phase. It is built once per
rule at snapshot build and shared by all its requests, so per-request values go on the
``FilterContext`` (here ``ctx.values()``), never on the filter.
"""

from __future__ import annotations

from turnout.proxy.filters.base import FilterContext, LocalReply, Suspend, Verdict
from turnout.proxy.protocols.heads import ResponseHead
from turnout.testing.exchange import ExchangeHarness
from turnout.testing.manifests import backend, dump, gateway, route, to

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


class RequireApiVersion:
    """Refuses requests without a supported ``x-api-version`` (answers locally), passes
    the major version on upstream (modifies the request head) and reports the version
    that answered (modifies the response head)."""

    def __init__(self, supported: frozenset[bytes]) -> None:
        self.supported = supported

    def on_request(self, ctx: FilterContext) -> Verdict:
        version = ctx.head.get(b"x-api-version")
        if version not in self.supported:
            return LocalReply(400, b"bad_api_version", b"send x-api-version: 1 or 2")
        ctx.values()["api-version"] = version
        ctx.head.headers.append((b"x-api-major", version.partition(b".")[0]))
        return None  # continue

    def resume(self, ctx: FilterContext, outcome: object) -> Verdict:
        return None  # never suspends

    def on_response(self, ctx: FilterContext, head: ResponseHead) -> LocalReply | None:
        version = ctx.values().get("api-version")
        if isinstance(version, bytes):
            head.headers.append((b"x-api-version", version))
        return None


class QuotaService:
    """Stands for something asynchronous (a remote quota service)."""

    async def remaining(self, route: str, client: bytes) -> int:
        raise NotImplementedError  # never runs: the test decides the answer


class QuotaCheck:
    """Suspends the request until the quota service answers, then lets it through or
    answers 429."""

    def __init__(self, service: QuotaService) -> None:
        self.service = service

    def on_request(self, ctx: FilterContext) -> Verdict:
        return Suspend(self.service.remaining(ctx.route, ctx.client_ip))

    def resume(self, ctx: FilterContext, outcome: object) -> Verdict:
        if isinstance(outcome, int) and outcome > 0:
            return None
        return LocalReply(429, b"quota_exhausted", b"no requests left today")


def _harness() -> ExchangeHarness:
    h = ExchangeHarness(dump(gateway(), backend("app", 9000), route("api", [to("app")])))
    # Compile the filters into the rule, as the snapshot builder does with built-ins.
    versions = RequireApiVersion(frozenset({b"1", b"2.1"}))
    h.action().add_filters(request=(versions, QuotaCheck(QuotaService())), response=(versions,))
    return h


def test_the_filter_answers_locally_without_contacting_the_upstream() -> None:
    h = _harness()
    call = h.request(headers=[(b"x-api-version", b"3")])
    assert call.down.status == 400
    assert b'"error":"bad_api_version"' in bytes(call.down.body)
    assert call.exchange.forward is None and h.loop.pending_tasks() == []


def test_the_request_waits_for_the_quota_then_goes_through_modified() -> None:
    h = _harness()
    call = h.request(headers=[(b"x-api-version", b"2.1")])
    (quota,) = h.loop.pending_tasks()  # suspended: nothing sent anywhere yet
    assert call.exchange.forward is None and call.down.head is None

    quota.set_result(10)
    h.loop.run_ready()
    up = h.connect(call)
    assert b"\r\nx-api-major: 2\r\n" in up.received
    h.respond(up, OK)
    assert call.down.status == 200
    assert call.down.header(b"x-api-version") == b"2.1"


def test_an_exhausted_quota_is_answered_locally() -> None:
    h = _harness()
    call = h.request(headers=[(b"x-api-version", b"1")])
    (quota,) = h.loop.pending_tasks()
    quota.set_result(0)
    h.loop.run_ready()
    assert call.down.status == 429 and call.exchange.forward is None


def test_a_failing_decision_answers_500() -> None:
    h = _harness()
    call = h.request(headers=[(b"x-api-version", b"1")])
    (quota,) = h.loop.pending_tasks()
    quota.set_exception(ConnectionError("quota service down"))
    h.loop.run_ready()
    assert call.down.status == 500
    assert b'"error":"filter_error"' in bytes(call.down.body)


def test_a_local_answer_to_a_grpc_call_takes_the_grpc_form() -> None:
    h = _harness()
    call = h.request(b"POST", b"/shop.Orders/Get", headers=[(b"content-type", b"application/grpc")])
    assert call.down.status == 200  # gRPC clients read the status from the trailers
    trailers = dict(call.down.trailers or [])
    assert trailers[b"grpc-status"] != b"0"
    assert b"x-api-version" in trailers[b"grpc-message"]
