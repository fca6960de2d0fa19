"""``SecurityPolicy.extAuth``: ask an HTTP authorization service about each request.

As Envoy's HTTP ext_authz (which Envoy Gateway configures): the check is a request to the
service with the original method, ``http.path`` + the original path and query, no body,
the client's ``headersToExtAuth`` (``authorization`` when none are listed) plus
``x-forwarded-host`` and ``x-forwarded-for``. The service's answer decides:

* 2xx: allowed; its ``headersToBackend`` replace those of the request sent upstream.
* 3xx/4xx: refused with that status; ``www-authenticate``, ``location`` and
  ``set-cookie`` are relayed (a login redirect works), the body is the gateway's JSON
  error ``ext_auth_denied``.
* 5xx, no answer within ``timeout``, no endpoint: an error — 403 ``ext_auth_error``, as
  Envoy's default, or the request goes on with ``failOpen``.

With ``cache``, decisions (never errors) are kept per worker for ``ttl``, keyed by the
method, authority, path, query and the values of the headers sent, bounded by
``maxEntries`` (oldest dropped first); a cached decision costs a dict lookup, no
call-out. The filter runs after the policy's own authentication (jwt, apiKeyAuth,
basicAuth), like Envoy Gateway's filter order. One ``httpx.AsyncClient`` per worker loop
serves every check (its pool keeps connections to the service open); httpx is imported
when a snapshot with extAuth is built, so workers without it never load it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Final

from turnout.proxy.filters.base import FilterContext, LocalReply, Suspend, Verdict
from turnout.proxy.protocols.heads import Headers

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("turnout.extauth")

RELAYED: Final = (b"www-authenticate", b"location", b"set-cookie")
_ERROR: Final = object()  # the check failed (5xx, timeout, unreachable)


class Decision:
    __slots__ = ("headers", "reply")

    def __init__(self, headers: Headers, reply: LocalReply | None) -> None:
        self.headers = headers  # allowed: headersToBackend from the service
        self.reply = reply  # refused: the answer to give


class _Client:
    """One client per worker loop, created on first use."""

    loop: asyncio.AbstractEventLoop | None = None
    client: httpx.AsyncClient | None = None

    @classmethod
    def get(cls) -> httpx.AsyncClient:
        import httpx

        loop = asyncio.get_running_loop()
        if cls.client is None or cls.loop is not loop:
            logging.getLogger("httpx").setLevel(logging.WARNING)  # a check is not news
            cls.loop = loop
            cls.client = httpx.AsyncClient(
                follow_redirects=False,
                trust_env=False,
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
            )
        return cls.client


class ExtAuthFilter:
    """The request hooks (wrapped by ``filters.base.request_filter`` at build time: this
    module is not compiled, and compiled base classes take no interpreted subclasses)."""

    __slots__ = (
        "cache",
        "copy",
        "error",
        "fail_open",
        "failures",
        "max_entries",
        "name",
        "next",
        "prefix",
        "send",
        "timeout",
        "ttl",
        "urls",
    )

    def __init__(
        self,
        name: str,
        urls: list[str],
        prefix: str,
        send: tuple[bytes, ...],
        copy: tuple[bytes, ...],
        timeout: float,
        fail_open: bool,
        ttl: float = 0.0,
        max_entries: int = 10_000,
    ) -> None:
        self.name = name
        self.urls = urls  # "http://host:port" of the service's endpoints (round robin)
        self.next = 0
        self.prefix = prefix
        self.send = send or (b"authorization",)
        self.copy = frozenset(copy)
        self.timeout = timeout
        self.fail_open = fail_open
        self.ttl = ttl
        self.max_entries = max_entries
        self.cache: dict[bytes, tuple[float, Decision]] = {}
        self.failures = 0  # failed checks in this worker (logged 1st, 2nd, 4th, ...)
        self.error = LocalReply(403, b"ext_auth_error", b"the authorization service failed")
        import httpx  # noqa: F401 - now, at snapshot build, not inside the first check's timeout

    def on_request(self, ctx: FilterContext) -> Verdict:
        key = None
        if self.ttl:
            key = self._key(ctx)
            hit = self.cache.get(key)
            if hit is not None:
                if hit[0] > ctx.loop.time():
                    return self._apply(ctx, hit[1])
                del self.cache[key]
        if not self.urls:
            return self._failed("no endpoint")
        return Suspend(self._check(ctx, key))

    def resume(self, ctx: FilterContext, outcome: object) -> Verdict:
        if isinstance(outcome, Decision):
            return self._apply(ctx, outcome)
        return self._failed(str(outcome))

    def _key(self, ctx: FilterContext) -> bytes:
        head = ctx.head
        received = head.received
        parts = [head.method, head.authority, head.path, head.query]
        parts.extend(received.get(name, b"") for name in self.send)
        return b"\0".join(parts)

    def _apply(self, ctx: FilterContext, decision: Decision) -> Verdict:
        if decision.reply is not None:
            return decision.reply
        if decision.headers:
            copy = self.copy
            head = ctx.head
            head.headers = [h for h in head.headers if h[0] not in copy]
            head.headers.extend(decision.headers)
        return None

    def _failed(self, why: str) -> Verdict:
        n = self.failures = self.failures + 1
        if n & (n - 1) == 0:  # an outage must not flood the log
            log.warning(
                "extAuth %s: %s (%d failed checks so far in this worker)%s",
                self.name,
                why,
                n,
                "; failing open" if self.fail_open else "",
            )
        return None if self.fail_open else self.error

    async def _check(self, ctx: FilterContext, key: bytes | None) -> object:
        head = ctx.head
        url = self.urls[self.next % len(self.urls)]
        self.next += 1
        target = url + self.prefix + head.path.decode("latin-1")
        if head.query:
            target += "?" + head.query.decode("latin-1")
        headers = [
            (name, value) for name in self.send if (value := head.received.get(name)) is not None
        ]
        headers.append((b"x-forwarded-host", head.authority))
        headers.append((b"x-forwarded-for", ctx.client_ip))
        try:
            async with asyncio.timeout(self.timeout):
                answer = await _Client.get().request(
                    head.method.decode("latin-1"), target, headers=headers
                )
        except TimeoutError:
            return "no answer in time"
        except Exception as exc:  # connection refused, protocol error, ...
            return f"check failed: {exc!r}"
        status = answer.status_code
        if status >= 500:
            return f"the service answered {status}"
        raw = answer.headers.raw
        if status < 300:
            copy = self.copy
            decision = Decision([(n.lower(), v) for n, v in raw if n.lower() in copy], None)
        else:
            relayed = [(n.lower(), v) for n, v in raw if n.lower() in RELAYED]
            decision = Decision(
                [],
                LocalReply(
                    status,
                    b"ext_auth_denied",
                    b"the authorization service refused the request",
                    relayed or None,
                ),
            )
        if key is not None:
            cache = self.cache
            if len(cache) >= self.max_entries:
                del cache[next(iter(cache))]  # the oldest entry
            cache[key] = (ctx.loop.time() + self.ttl, decision)
        return decision

    def __repr__(self) -> str:
        return f"<ExtAuthFilter {self.name}>"
