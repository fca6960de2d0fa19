"""Load balancers: pick an endpoint for each request.

Every balancer implements ``pick(hash_key, now)``: ``hash_key`` is the request's 64-bit
consistent-hash key (``hashing.hash_bytes``; -1 when there is none) and ``now`` is the
caller's ``time.perf_counter()``. Endpoints with weight 0 are dropped at construction
and never picked; ``endpoints`` lists the rest.

Availability, panic mode and slow start (shared by all balancers)
    An endpoint is a candidate only while ``endpoint.health.available(now)`` (active
    checks pass and outlier detection does not eject it). When fewer than
    ``PANIC_THRESHOLD`` (50 %) of the endpoints are available, availability is ignored
    and traffic is balanced over all of them at their configured weights (Envoy's panic
    mode): a mass outage degrades to "try everything", not "503 everything". So a single
    endpoint is always picked, and ``None`` only means "no endpoint at all".
    With ``slow_start_window > 0`` an endpoint that became available ``t`` seconds ago
    (``health.available_since``; 0 means "always") counts with weight
    ``weight × max(0.1, t / window)`` while ``t < window`` (linear ramp, aggression 1.0).
    Maglev ignores slow start (its weights are baked into its table, as in Envoy).

Fast and degraded modes
    Scanning every endpoint's health on every pick would make the common case (all up,
    nothing ramping) cost O(n) method calls. So the weighted balancers first pick as if
    everything were healthy, from the static weights, and check only the winner (for
    least-request the two candidates). If a winner turns out unavailable or ramping, the
    balancer drops to degraded mode: every pick then scans the endpoints once, computes
    effective weights (0 when unavailable, ramped when slow-starting; the static weights
    in panic) into preallocated lists, and picks over those. The scan that finds every
    endpoint available and none ramping returns the balancer to fast mode. A ramping or
    ejected endpoint is noticed at the latest when it would next have been picked, so
    it never gets a request it should not get. Nothing allocates per pick.

``RoundRobinBalancer`` — smooth weighted round robin (the nginx algorithm): each pick
    adds each endpoint's weight to its running score, takes the highest and subtracts
    the total from it, so weights 5:1:1 give a,a,b,a,c,a,a rather than bursts. After
    one cycle (the sum of the weights divided by their gcd) every score is back at zero,
    so the cycle is precomputed (``smooth_sequence``, up to ``MAX_SEQUENCE`` picks) and a
    fast pick is one list index, weighted or not; with equal weights the cycle is a
    plain rotation. An unavailable endpoint met in the cycle is skipped by walking on to
    the next available entry and consuming the positions walked over, which keeps the
    survivors' shares exactly proportional to their weights, so round robin stays in
    fast mode through ejections and only slow start sends it to degraded mode. There
    (and for weights whose cycle is too long to precompute) it runs the smooth
    algorithm step by step over the effective weights; scores of unavailable endpoints
    stay frozen until they return.

``RandomBalancer`` — weighted random: fast mode draws from the static weights with
    Vose's alias method (one uniform draw, two list reads; ``int(random() * n)`` when
    the weights are equal); degraded mode bisects a draw over the running sums of the
    effective weights.

``LeastRequestBalancer`` — power of two choices: draw two distinct endpoints at random,
    weighted (the second from the weights without the first: an alias draw, redrawn by
    bisection over the others when it hits the first), and take the one with fewer
    ``health.inflight`` requests; on a tie, the first drawn. With equal weights this is
    Envoy's P2C. Weights and slow start shape the draw, so at light load (ties) traffic
    follows them exactly, while under load the in-flight comparison dominates (unlike
    Envoy, which switches to weighted EDF when weights differ). With two endpoints both
    are always drawn: compare, and break ties with one weighted coin flip.

``MaglevBalancer`` — Maglev consistent hashing (Eisenbud et al., NSDI 2016). Each
    endpoint gets a permutation of the ``table_size`` slots (a prime): ``offset =
    h1(key) % M``, ``skip = h2(key) % (M - 1) + 1``, slot ``j`` is ``(offset + j·skip) %
    M``. Endpoints take turns claiming the next free slot of their permutation until the
    table is full; weights set how often an endpoint gets a turn (Envoy's scheme: with
    ``w_max`` the largest weight, an endpoint of weight ``w`` takes a turn in round ``r``
    once ``r·w`` reaches its running target, then raises the target by ``w_max``). The
    permutations come from ``hashing.hash_bytes`` of the endpoint's address and the
    endpoints are processed sorted by address, so every worker and replica builds the
    same table whatever the configured order, and removing one of N endpoints moves
    little more than the 1/N of the keys it owned. Lookup is ``table[hash_key % M]``; if
    that endpoint is unavailable, the lookup walks forward through the table to the
    first available entry (deterministic, and it spreads an ejected endpoint's keys over
    the others in proportion to their shares). Requests without a key (-1) get a random
    slot. Built tables are cached by (addresses, weights, size), as a reload usually
    rebuilds identical backends and a 65537-slot build takes tens of milliseconds.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections.abc import Callable
from typing import Final

from turnout.proxy.upstream.endpoints import Endpoint
from turnout.proxy.upstream.hashing import hash_bytes
from turnout.proxy.upstream.health import EndpointHealth

PANIC_THRESHOLD: Final = 0.5  # below this share of available endpoints: ignore health
SLOW_START_MIN_FACTOR: Final = 0.1  # a slow-starting endpoint gets at least this share
DEFAULT_TABLE_SIZE: Final = 65537
BALANCER_KINDS: Final = ("RoundRobin", "LeastRequest", "Random", "ConsistentHash")


class Balancer:
    """Base of the balancers: ``endpoints`` (weight > 0, in configured order) and ``pick``."""

    __slots__ = ("endpoints",)

    def __init__(self, endpoints: list[Endpoint]) -> None:
        self.endpoints: list[Endpoint] = [e for e in endpoints if e.weight > 0]

    def pick(self, hash_key: int, now: float) -> Endpoint | None:
        """The endpoint for one request; None only when there are no endpoints."""
        raise NotImplementedError


class _WeightedBalancer(Balancer):
    """Shared state of the balancers that honour health, panic mode and slow start."""

    __slots__ = (
        "_alias",
        "_cum_eff",
        "_cumulative",
        "_effective",
        "_equal",
        "_fast",
        "_health",
        "_prob",
        "_skips",
        "_total",
        "_weights",
        "_window",
    )

    def __init__(self, endpoints: list[Endpoint], slow_start_window: float) -> None:
        super().__init__(endpoints)
        live = self.endpoints
        self._health: list[EndpointHealth] = [e.health for e in live]
        self._weights: list[float] = [float(e.weight) for e in live]
        self._total = float(sum(e.weight for e in live))
        self._cumulative: list[float] = []  # running sums of the static weights
        running = 0.0
        for w in self._weights:
            running += w
            self._cumulative.append(running)
        self._prob, self._alias = alias_table(self._weights)
        self._equal = len({e.weight for e in live}) <= 1
        self._window = max(0.0, slow_start_window)
        # Degraded-mode scratch: effective weights and their running sums (no allocation
        # per pick).
        self._effective: list[float] = [0.0] * len(live)
        self._cum_eff: list[float] = [0.0] * len(live)
        self._fast = True  # pick from the static weights, check only the winner
        self._skips = False  # fast mode copes with unavailable endpoints by itself

    def _healthy(self, h: EndpointHealth, now: float) -> bool:
        """Available and not slow-starting: the winner check of fast mode."""
        if not h.available(now):
            return False
        window = self._window
        return window == 0.0 or now - h.available_since >= window

    def _alias_draw(self, r: float) -> int:
        """A draw by the static weights from one uniform ``r`` (Vose's alias method)."""
        u = r * len(self._prob)
        i = int(u)
        if u - i < self._prob[i]:
            return i
        return self._alias[i]

    def _scan(self, now: float) -> float:
        """Degraded mode: fill the effective weights and their running sums.

        Returns the effective total; switches back to fast mode when nothing is ramping
        and everything is available (or fast mode can skip the unavailable itself). In
        panic mode the static weights are used.
        """
        health = self._health
        weights = self._weights
        effective = self._effective
        cumulative_eff = self._cum_eff
        window = self._window
        n = len(health)
        up = 0
        ramping = False
        total = 0.0
        for i in range(n):
            h = health[i]
            w = 0.0
            if h.available(now):
                up += 1
                w = weights[i]
                if window > 0.0:
                    since = h.available_since
                    if since > 0.0 and now - since < window:
                        ramping = True
                        w *= max(SLOW_START_MIN_FACTOR, (now - since) / window)
            effective[i] = w
            total += w
            cumulative_eff[i] = total
        if not ramping and (up == n or self._skips):
            self._fast = True
        if up < n * PANIC_THRESHOLD:
            for i in range(n):
                effective[i] = weights[i]
                cumulative_eff[i] = self._cumulative[i]
            return self._total
        return total


def alias_table(weights: list[float]) -> tuple[list[float], list[int]]:
    """Vose's alias method: column ``i`` keeps ``i`` with probability ``prob[i]`` and
    otherwise gives ``alias[i]``, so one uniform draw picks by weight in O(1)."""
    n = len(weights)
    prob = [1.0] * n
    alias = list(range(n))
    total = sum(weights)
    if n == 0 or total <= 0.0:
        return prob, alias
    scaled = [w * n / total for w in weights]
    small = [i for i in range(n) if scaled[i] < 1.0]
    large = [i for i in range(n) if scaled[i] >= 1.0]
    while small and large:
        s = small.pop()
        g = large.pop()
        prob[s] = scaled[s]
        alias[s] = g
        scaled[g] = scaled[g] + scaled[s] - 1.0
        if scaled[g] < 1.0:
            small.append(g)
        else:
            large.append(g)
    return prob, alias  # leftovers (rounding) keep probability 1


MAX_SEQUENCE: Final = 16384  # longest precomputed round-robin cycle


def smooth_sequence(weights: list[int], limit: int = MAX_SEQUENCE) -> list[int]:
    """One full cycle of smooth weighted round robin from a zero state (the weights
    divided by their gcd first); empty when the cycle would exceed ``limit``. After a
    cycle every running score is back at zero, so repeating it is exact."""
    if not weights:
        return []
    g = 0
    for w in weights:
        g = math.gcd(g, w)
    reduced = [w // g for w in weights]
    total = sum(reduced)
    if total > limit:
        return []
    current = [0] * len(reduced)
    out: list[int] = []
    for _ in range(total):
        best = 0
        for i in range(len(reduced)):
            current[i] += reduced[i]
            if current[i] > current[best]:
                best = i
        current[best] -= total
        out.append(best)
    return out


class RoundRobinBalancer(_WeightedBalancer):
    """Smooth weighted round robin honouring availability and slow start."""

    __slots__ = ("_current", "_pos", "_sequence")

    def __init__(self, endpoints: list[Endpoint], slow_start_window: float = 0.0) -> None:
        super().__init__(endpoints, slow_start_window)
        self._current: list[float] = [0.0] * len(self.endpoints)
        self._sequence: list[int] = smooth_sequence([e.weight for e in self.endpoints])
        self._pos = 0
        self._skips = bool(self._sequence)

    def pick(self, hash_key: int, now: float) -> Endpoint | None:
        eps = self.endpoints
        n = len(eps)
        if n <= 1:
            return eps[0] if n else None
        if self._fast:
            seq = self._sequence
            if seq:
                pos = self._pos
                i = seq[pos]
                pos += 1
                self._pos = 0 if pos == len(seq) else pos
                h = self._health[i]
                if h.available(now):
                    window = self._window
                    if window == 0.0 or now - h.available_since >= window:
                        return eps[i]
                else:
                    found = self._skip(i, now)
                    if found is not None:
                        return found
                self._fast = False
            else:
                best = self._smooth(self._weights, self._total)
                if self._healthy(self._health[best], now):
                    return eps[best]
                self._unsmooth(best)
                self._fast = False
        total = self._scan(now)
        return eps[self._smooth(self._effective, total)]

    def _skip(self, i: int, now: float) -> Endpoint | None:
        """The cycle reached unavailable endpoint ``i``: in panic take it anyway, else
        walk on through the cycle to the next available one. Consuming the skipped
        positions keeps the survivors' shares exactly proportional to their weights.
        None when that one is slow-starting (degraded mode must weigh it)."""
        eps = self.endpoints
        health = self._health
        n = len(eps)
        up = 0
        for h in health:
            if h.available(now):
                up += 1
        if up < n * PANIC_THRESHOLD:
            return eps[i]
        seq = self._sequence
        size = len(seq)
        pos = self._pos
        while True:
            j = seq[pos]
            pos += 1
            if pos == size:
                pos = 0
            if health[j].available(now):
                break
        self._pos = pos
        if self._window > 0.0 and not self._healthy(health[j], now):
            return None
        return eps[j]

    def _smooth(self, weights: list[float], total: float) -> int:
        """One step of smooth WRR over ``weights`` (zero weights are left alone)."""
        current = self._current
        best = -1
        best_score = 0.0
        for i in range(len(weights)):
            w = weights[i]
            if w > 0.0:
                score = current[i] + w
                current[i] = score
                if best < 0 or score > best_score:
                    best = i
                    best_score = score
        current[best] -= total
        return best

    def _unsmooth(self, best: int) -> None:
        """Undo a fast-mode step whose winner turned out unhealthy."""
        current = self._current
        weights = self._weights
        for i in range(len(weights)):
            current[i] -= weights[i]
        current[best] += self._total


class _DrawingBalancer(_WeightedBalancer):
    """A weighted balancer that draws random numbers (seedable for tests)."""

    __slots__ = ("_random",)

    def __init__(
        self,
        endpoints: list[Endpoint],
        rand: random.Random | None = None,
        slow_start_window: float = 0.0,
    ) -> None:
        super().__init__(endpoints, slow_start_window)
        self._random: Callable[[], float] = (rand or random.Random()).random


class RandomBalancer(_DrawingBalancer):
    """Weighted random choice honouring availability and slow start."""

    __slots__ = ()

    def pick(self, hash_key: int, now: float) -> Endpoint | None:
        eps = self.endpoints
        n = len(eps)
        if n <= 1:
            return eps[0] if n else None
        if self._fast:
            r = self._random()
            i = int(r * n) if self._equal else self._alias_draw(r)
            if self._healthy(self._health[i], now):
                return eps[i]
            self._fast = False
        total = self._scan(now)
        return eps[_draw(self._cum_eff, total, self._random())]


def _draw(cumulative: list[float], total: float, r: float) -> int:
    """The index whose interval of ``cumulative`` holds ``r × total`` (a weight-0 entry
    has an empty interval, so it is never returned)."""
    x = r * total
    if x >= total:  # float rounding of r × total for r just below 1
        x = 0.0
    return bisect_right(cumulative, x)


class LeastRequestBalancer(_DrawingBalancer):
    """Power of two choices by in-flight requests, weighted draws."""

    __slots__ = ()

    def pick(self, hash_key: int, now: float) -> Endpoint | None:
        eps = self.endpoints
        n = len(eps)
        if n <= 1:
            return eps[0] if n else None
        health = self._health
        if self._fast:
            if n == 2:
                h0 = health[0]
                h1 = health[1]
                if self._healthy(h0, now) and self._healthy(h1, now):
                    a = h0.inflight
                    b = h1.inflight
                    if a != b:
                        return eps[0] if a < b else eps[1]
                    return eps[0] if self._random() * self._total < self._weights[0] else eps[1]
            else:
                rnd = self._random
                if self._equal:
                    i = int(rnd() * n)
                    j = int(rnd() * (n - 1))
                    if j >= i:
                        j += 1
                else:
                    i = self._alias_draw(rnd())
                    j = self._alias_draw(rnd())
                    if j == i:
                        # Drawing again from the weights without ``i`` completes the
                        # distribution of a second draw conditioned on differing.
                        j = _draw_other(self._cumulative, self._weights, self._total, i, rnd())
                hi = health[i]
                hj = health[j]
                if self._healthy(hi, now) and self._healthy(hj, now):
                    return eps[j] if hj.inflight < hi.inflight else eps[i]
            self._fast = False
        total = self._scan(now)
        cum = self._cum_eff
        i = _draw(cum, total, self._random())
        j = _draw_other(cum, self._effective, total, i, self._random())
        if j < 0:
            return eps[i]  # only one candidate
        return eps[j] if health[j].inflight < health[i].inflight else eps[i]


def _draw_other(
    cumulative: list[float], weights: list[float], total: float, first: int, r: float
) -> int:
    """A weighted draw that excludes index ``first``; -1 when nothing else has weight."""
    w = weights[first]
    rest = total - w
    if rest <= 0.0:
        return -1
    x = r * rest
    start = cumulative[first] - w  # where ``first``'s interval begins
    if x >= start:
        x += w  # jump over ``first``'s interval
    j = bisect_right(cumulative, x)
    if j >= len(cumulative) or j == first:  # float rounding at an interval edge
        return -1
    return j


# --- Maglev ------------------------------------------------------------------------------

_TABLE_CACHE_SIZE: Final = 32
_tables: dict[tuple[tuple[tuple[str, int], ...], int], list[int]] = {}


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    f = 3
    while f * f <= n:
        if n % f == 0:
            return False
        f += 2
    return True


def maglev_table(entries: list[tuple[str, int]], size: int) -> list[int]:
    """The Maglev lookup table for ``entries`` ((address, weight > 0), in this order):
    ``size`` slots, each holding an index into ``entries``. ``size`` must be prime."""
    n = len(entries)
    table = [-1] * size
    if n == 0:
        return table
    offsets: list[int] = []
    skips: list[int] = []
    weights: list[int] = []
    for key, weight in entries:
        data = key.encode("utf-8", "surrogatepass")
        offsets.append(hash_bytes(b"maglev-offset\x00" + data) % size)
        skips.append(hash_bytes(b"maglev-skip\x00" + data) % (size - 1) + 1)
        weights.append(weight)
    positions = offsets  # next slot of each permutation to try
    targets = [0] * n
    max_weight = max(weights)
    filled = 0
    turn = 0
    while True:
        turn += 1
        for i in range(n):
            if turn * weights[i] < targets[i]:
                continue
            targets[i] += max_weight
            c = positions[i]
            skip = skips[i]
            while table[c] >= 0:
                c += skip
                if c >= size:
                    c -= size
            table[c] = i
            c += skip
            if c >= size:
                c -= size
            positions[i] = c
            filled += 1
            if filled == size:
                return table


def _cached_table(entries: list[tuple[str, int]], size: int) -> list[int]:
    cache_key = (tuple(entries), size)
    table = _tables.get(cache_key)
    if table is None:
        table = maglev_table(entries, size)
        if len(_tables) >= _TABLE_CACHE_SIZE:
            del _tables[next(iter(_tables))]  # oldest first
        _tables[cache_key] = table
    return table


def _table_order(endpoint: Endpoint) -> tuple[str, int]:
    return (endpoint.key, endpoint.weight)


class MaglevBalancer(Balancer):
    """Maglev consistent hashing with a forward walk past unavailable endpoints."""

    __slots__ = ("_health", "_ordered", "_random", "_size", "_table")

    def __init__(
        self,
        endpoints: list[Endpoint],
        table_size: int = DEFAULT_TABLE_SIZE,
        rand: random.Random | None = None,
    ) -> None:
        if not is_prime(table_size):
            raise ValueError(f"the Maglev table size must be a prime number, not {table_size}")
        super().__init__(endpoints)
        # Table order = sorted by address, so the configured order does not matter.
        ordered = sorted(self.endpoints, key=_table_order)
        self._ordered: list[Endpoint] = ordered
        self._health: list[EndpointHealth] = [e.health for e in ordered]
        self._size = table_size
        self._table: list[int] = _cached_table([(e.key, e.weight) for e in ordered], table_size)
        self._random: Callable[[], float] = (rand or random.Random()).random

    @property
    def table(self) -> list[int]:
        """Slot → index into ``ordered`` (read-only; shared between instances)."""
        return self._table

    @property
    def ordered(self) -> list[Endpoint]:
        """The endpoints in table order (sorted by address)."""
        return self._ordered

    def pick(self, hash_key: int, now: float) -> Endpoint | None:
        ordered = self._ordered
        n = len(ordered)
        if n <= 1:
            return ordered[0] if n else None
        size = self._size
        slot = hash_key % size if hash_key >= 0 else int(self._random() * size)
        i = self._table[slot]
        if self._health[i].available(now):
            return ordered[i]
        return self._walk(slot, i, now)

    def _walk(self, slot: int, i: int, now: float) -> Endpoint:
        """The entry at ``slot`` is unavailable: panic, or the next available entry."""
        ordered = self._ordered
        health = self._health
        n = len(ordered)
        up = 0
        for h in health:
            if h.available(now):
                up += 1
        if up < n * PANIC_THRESHOLD:
            return ordered[i]
        table = self._table
        size = self._size
        while True:
            slot += 1
            if slot == size:
                slot = 0
            i = table[slot]
            if health[i].available(now):
                return ordered[i]


def build_balancer(
    kind: str,
    endpoints: list[Endpoint],
    *,
    slow_start_window: float = 0.0,
    table_size: int = DEFAULT_TABLE_SIZE,
    rand: random.Random | None = None,
) -> Balancer:
    """The balancer of a backend's ``loadBalancer.type`` (ConsistentHash is Maglev)."""
    if kind == "RoundRobin":
        return RoundRobinBalancer(endpoints, slow_start_window)
    if kind == "LeastRequest":
        return LeastRequestBalancer(endpoints, rand, slow_start_window)
    if kind == "Random":
        return RandomBalancer(endpoints, rand, slow_start_window)
    if kind == "ConsistentHash":
        return MaglevBalancer(endpoints, table_size, rand)
    raise ValueError(f"unknown load balancer type {kind!r}; expected one of {BALANCER_KINDS}")
