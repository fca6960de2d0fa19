"""A ``SecurityPolicy`` as a filter: authentication, authorization, IP rules, CORS.

Request phase: ``AuthFilter.check`` answers at once (an ``AuthVerdict``) or, when a
JWKS must be fetched or a password checked with bcrypt, with a coroutine: the filter
suspends on it and ``resume`` concludes with its verdict. A refusal (or a CORS
preflight) answers locally; success records the principal on the context, for the rate
limits after it (which may count by Consumer or JWT claim).

Response phase: the policy's response headers (security headers, CORS answers) are set
on the upstream's response; they depend only on the request's ``Origin``, so they are
derived again here rather than kept per request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from turnout.proxy.filters.auth.chain import MISSING_CREDENTIALS, AuthFilter, AuthVerdict
from turnout.proxy.filters.base import (
    FilterContext,
    LocalReply,
    RequestFilter,
    ResponseFilter,
    Suspend,
    Verdict,
)
from turnout.proxy.protocols.heads import ResponseHead

if TYPE_CHECKING:
    from turnout.proxy.filters.bruteforce import BruteForceGuard


class SecurityFilter(RequestFilter):
    __slots__ = ("auth", "guard")

    def __init__(self, auth: AuthFilter, guard: BruteForceGuard | None = None) -> None:
        self.auth = auth
        self.guard = guard  # bruteForce: bans after failed authentications

    def on_request(self, ctx: FilterContext) -> Verdict:
        guard = self.guard
        if guard is not None:
            banned = guard.check(ctx)
            if banned is not None:
                return banned
        verdict = self.auth.check(ctx.head, ctx.client_ip, ctx.loop, ctx.client_cert)
        if isinstance(verdict, AuthVerdict):
            return self._concluded(ctx, verdict)
        return Suspend(verdict)

    def resume(self, ctx: FilterContext, outcome: object) -> Verdict:
        assert isinstance(outcome, AuthVerdict)
        return self._concluded(ctx, outcome)

    def _concluded(self, ctx: FilterContext, verdict: AuthVerdict) -> Verdict:
        if (
            verdict.status == 401
            and self.guard is not None
            and verdict.message not in MISSING_CREDENTIALS
        ):
            self.guard.failed(ctx)  # a credential was given, and it was wrong
        return _concluded(ctx, verdict)


class SecurityResponseFilter(ResponseFilter):
    __slots__ = ("auth",)

    def __init__(self, auth: AuthFilter) -> None:
        self.auth = auth

    def on_response(self, ctx: FilterContext, head: ResponseHead) -> LocalReply | None:
        origin = ctx.head.received.get(b"origin") if self.auth.cors is not None else None
        response = self.auth.response_headers(origin)
        if response is not None:
            head.headers = response.apply(head.headers)
        return None


def _concluded(ctx: FilterContext, verdict: AuthVerdict) -> Verdict:
    if verdict.status:
        return LocalReply(verdict.status, verdict.code, verdict.message, verdict.headers)
    ctx.principal = verdict.principal
    return None
