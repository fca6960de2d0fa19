"""Load balancers: pick an endpoint for each request.

``RoundRobinBalancer`` is smooth weighted round robin (the nginx algorithm): every pick
adds each endpoint's weight to its running score and takes the highest, then subtracts
the total from the winner. With weights 5:1:1 it yields a,a,b,a,c,a,a rather than
bursts, and with equal weights it degenerates to a plain rotation, which has its own
fast path. Endpoints with weight 0 are never picked.
"""

from __future__ import annotations

from turnout.proxy.upstream.endpoints import Endpoint


class RoundRobinBalancer:
    __slots__ = ("_current", "_endpoints", "_equal", "_next", "_total", "_weights")

    def __init__(self, endpoints: list[Endpoint]) -> None:
        live = [e for e in endpoints if e.weight > 0]
        self._endpoints = live
        self._weights = [e.weight for e in live]
        self._total = sum(self._weights)
        self._equal = len(set(self._weights)) <= 1
        self._current = [0] * len(live)
        self._next = 0

    @property
    def endpoints(self) -> list[Endpoint]:
        return self._endpoints

    def pick(self) -> Endpoint | None:
        eps = self._endpoints
        n = len(eps)
        if n <= 1:
            return eps[0] if n else None
        if self._equal:
            i = self._next
            self._next = (i + 1) % n
            return eps[i]
        current = self._current
        weights = self._weights
        best = 0
        best_score = -1
        for i in range(n):
            score = current[i] + weights[i]
            current[i] = score
            if score > best_score:
                best, best_score = i, score
        current[best] -= self._total
        return eps[best]
