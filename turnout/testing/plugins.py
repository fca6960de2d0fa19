"""Unit-test a filter plugin without sockets: ``PluginHarness``.

    async def test_signs() -> None:
        async with PluginHarness(SigningPlugin, {"secret": "s3cret"}) as h:
            out = await h.request("GET", "/orders", headers={"date": "..."})
            assert out.forwarded
            assert out.header("x-signature") == "..."

The harness validates the configuration with the plugin's ``config_model`` (a
``PluginConfigError`` lists the problems, with their path in the config), runs
``setup``/``close`` around the block, and drives each hook through the very filters
the data plane uses (``proxy.filters.plugin``), so timeouts, exceptions and
``failOpen`` behave as in a worker and are counted in ``failures``. Asynchronous hooks
run on the test's event loop; a call-out may target a real local server or a fake.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any

from turnout.config.model.plugins import FilterPluginSpec
from turnout.config.plugins import parse_plugin_config
from turnout.observe.stats import WorkerStats
from turnout.proxy.filters.auth.chain import Principal
from turnout.proxy.filters.base import PROCEED, FilterContext, LocalReply
from turnout.proxy.filters.plugin import PluginFailures
from turnout.proxy.filters.plugin_host import LoadedPlugin
from turnout.proxy.protocols.heads import Headers, RequestHead, ResponseHead


class PluginConfigError(ValueError):
    def __init__(self, problems: list[tuple[tuple[str | int, ...], str]]) -> None:
        self.problems = problems
        super().__init__(
            "; ".join(f"config.{'.'.join(map(str, p)) or '(root)'}: {m}" for p, m in problems)
        )


def _headers(given: dict[str, str] | Headers | None) -> Headers:
    if given is None:
        return []
    if isinstance(given, dict):
        return [(k.lower().encode(), v.encode("latin-1")) for k, v in given.items()]
    return list(given)


def _get(headers: Headers, name: str) -> str | None:
    key = name.lower().encode()
    for n, v in headers:
        if n == key:
            return v.decode("latin-1")
    return None


class RequestOutcome:
    """What the request hook decided: forwarded (with ``head`` as it would go upstream)
    or answered (``reply``)."""

    __slots__ = ("ctx", "head", "reply")

    def __init__(self, ctx: FilterContext, reply: LocalReply | None) -> None:
        self.ctx = ctx
        self.head = ctx.head
        self.reply = reply

    @property
    def forwarded(self) -> bool:
        return self.reply is None

    @property
    def status(self) -> int | None:
        return None if self.reply is None else self.reply.status

    def header(self, name: str) -> str | None:
        """The (first) value of request header ``name`` as it would be forwarded."""
        return _get(self.head.headers, name)


class ResponseOutcome:
    __slots__ = ("head", "reply")

    def __init__(self, head: ResponseHead, reply: LocalReply | None) -> None:
        self.head = head
        self.reply = reply

    def header(self, name: str) -> str | None:
        return _get(self.head.headers, name)


class _Host:
    """The exchange's side of a filter context, reduced to a future."""

    __slots__ = ("done",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.done: asyncio.Future[LocalReply | None] = loop.create_future()

    def filters_passed(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def filter_answered(self, reply: LocalReply) -> None:
        if not self.done.done():
            self.done.set_result(reply)

    def flush(self) -> None:
        pass


class PluginHarness:
    def __init__(
        self,
        plugin: type[Any],
        config: dict[str, Any] | None = None,
        *,
        timeout: str = "1s",
        fail_open: bool = False,
        failure_status: int = 500,
        route: str = "default/test",
        name: str = "default/test-plugin",
    ) -> None:
        parsed, problems = parse_plugin_config(plugin, config or {})
        if problems:
            raise PluginConfigError([(p.path, p.message) for p in problems])
        self.stats = WorkerStats()
        self.route = route
        self.instance = plugin(parsed)
        spec = FilterPluginSpec.model_validate(
            {
                "plugin": name,
                "config": config or {},
                "timeout": timeout,
                "failOpen": fail_open,
                "failureStatus": failure_status,
            }
        )
        failures = PluginFailures(name, fail_open, failure_status, self.stats)
        self.loaded = LoadedPlugin(name, self.instance, spec, parsed, failures)
        self._request, self._response = self.loaded.filters()

    @property
    def failures(self) -> dict[str, int]:
        """Failures so far by reason (error, timeout, verdict)."""
        return {reason: n for (_, reason), n in self.stats.plugin_failures.items()}

    async def __aenter__(self) -> PluginHarness:
        result = self.instance.setup()
        if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            await result
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        result = self.instance.close()
        if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            await result

    async def request(
        self,
        method: str = "GET",
        path: str = "/",
        *,
        headers: dict[str, str] | Headers | None = None,
        query: str = "",
        authority: str = "example.com",
        client_ip: str = "127.0.0.1",
        principal: Principal | None = None,
        backend: str = "",
    ) -> RequestOutcome:
        """Run the request hook on one request; waits for an asynchronous hook."""
        loop = asyncio.get_running_loop()
        head = RequestHead(
            method.encode(),
            path.encode(),
            query.encode(),
            _headers(headers),
            authority=authority.encode(),
            host=authority,
        )
        host = _Host(loop)
        ctx = FilterContext(
            host, head, loop, client_ip=client_ip.encode(), route=self.route, started=loop.time()
        )
        ctx.principal = principal
        ctx.backend = backend
        if self._request is None:
            return RequestOutcome(ctx, None)
        if ctx.run((self._request,)) == PROCEED:
            return RequestOutcome(ctx, None)
        try:
            return RequestOutcome(ctx, await host.done)
        finally:
            ctx.cancel()

    def response(
        self,
        request: RequestOutcome,
        status: int = 200,
        headers: dict[str, str] | Headers | None = None,
    ) -> ResponseOutcome:
        """Run the response hook on an upstream response to ``request``."""
        head = ResponseHead(status, _headers(headers))
        ctx = request.ctx
        if ctx.response_headers is not None:
            head.headers.extend(ctx.response_headers)
        if self._response is None:
            return ResponseOutcome(head, None)
        return ResponseOutcome(head, self._response.on_response(ctx, head))
