"""A TrafficPolicy ``rateLimit`` as a request filter.

Each of the rule's limits derives its key from the request (client IP, a header, the
route, the Consumer or a JWT claim the security filter found before it) and is counted
in the snapshot's ``RateLimiter``. Local limits decide at once; global ones (Redis)
return awaitables, and the filter suspends on all of them together. The first refused
limit answers (429, or 503 for a store failing closed); otherwise the ``RateLimit-*``
fields of the tightest limit are added to the upstream's response.

``limiter`` and ``limits`` are set once the snapshot's one limiter is compiled (see
``snapshot/limits.py``), after every rule's filters exist.
"""

from __future__ import annotations

from collections.abc import Awaitable

from turnout.proxy.filters.base import (
    FilterContext,
    LocalReply,
    RequestFilter,
    Suspend,
    Verdict,
)
from turnout.proxy.ratelimit.algorithms import Decision
from turnout.proxy.ratelimit.limiter import RateLimiter
from turnout.proxy.ratelimit.rules import KeySpec, extract_key

Decided = list[tuple[int, Decision]]


async def _decisions(decided: Decided, waits: list[tuple[int, Awaitable[Decision]]]) -> Decided:
    for index, pending in waits:
        decided.append((index, await pending))
    return decided


class RateLimitFilter(RequestFilter):
    __slots__ = ("limiter", "limits")

    def __init__(self) -> None:
        self.limiter: RateLimiter | None = None
        # (rule index in the limiter, key spec) of each of the rule's limits
        self.limits: tuple[tuple[int, KeySpec], ...] = ()

    def on_request(self, ctx: FilterContext) -> Verdict:
        limiter = self.limiter
        assert limiter is not None
        head = ctx.head
        principal = ctx.principal
        consumer = principal.consumer_key if principal is not None else None
        claims = principal.claims if principal is not None else None
        decided: Decided = []
        waits: list[tuple[int, Awaitable[Decision]]] | None = None
        for index, spec in self.limits:
            key = extract_key(
                spec,
                client_ip=ctx.client_ip,
                headers=head.received,
                route=ctx.route_json,
                consumer=consumer,
                claims=claims,
            )
            if key is None:
                continue
            decision = limiter.decide(key, index)
            if isinstance(decision, Decision):
                if not decision.allowed:
                    return _refused(limiter, index, decision)
                decided.append((index, decision))
            elif waits is None:
                waits = [(index, decision)]
            else:
                waits.append((index, decision))
        if waits is not None:
            return Suspend(_decisions(decided, waits))
        return self._allowed(ctx, limiter, decided)

    def resume(self, ctx: FilterContext, outcome: object) -> Verdict:
        limiter = self.limiter
        assert limiter is not None and isinstance(outcome, list)
        for index, decision in outcome:
            if not decision.allowed:
                return _refused(limiter, index, decision)
        return self._allowed(ctx, limiter, outcome)

    @staticmethod
    def _allowed(ctx: FilterContext, limiter: RateLimiter, decided: Decided) -> Verdict:
        """Keep the RateLimit-* fields of the tightest limit for the response."""
        best = -1
        best_index = 0
        best_decision: Decision | None = None
        for index, decision in decided:
            remaining = decision.remaining
            if remaining is not None and (best < 0 or remaining < best):
                best = remaining
                best_index = index
                best_decision = decision
        if best_decision is not None:
            ctx.add_response_headers(limiter.headers(best_index, best_decision))
        return None


def _refused(limiter: RateLimiter, index: int, decision: Decision) -> LocalReply:
    rejection = limiter.rejection(index, decision)
    return LocalReply(rejection.status, rejection.code, rejection.message, list(rejection.headers))
