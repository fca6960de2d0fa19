"""What a rate-limit rule says: the algorithm, what it counts by, where the counter lives.

A ``RateLimitRule`` is the compiled, validated form the data plane uses (the config
model's ``rateLimit`` blocks compile into these). Fields follow the peers:

- ``algorithm``: ``TokenBucket(rate, interval, burst)`` (Envoy ``local_ratelimit``'s
  ``tokens_per_fill``/``fill_interval``/``max_tokens``) or ``SlidingWindow(requests,
  window)`` (APISIX ``limit-count`` ``count``/``time_window`` with ``window_type:
  sliding``).
- ``key``: what a request is counted by (Kong ``limit_by``: consumer, credential, ip,
  service, header, path; APISIX ``key_type``): ``client_ip``, ``header`` (a header name),
  ``route``, ``consumer`` or ``jwt_claim`` (a claim name). ``extract_key`` turns a
  request's facts into the key bytes; a request that lacks the key (no such header, no
  consumer, no token) is *not counted* by the rule, as an Envoy descriptor that does not
  match; put a ``client_ip`` rule beside it to cover anonymous traffic.
- ``scope``: ``local`` (one counter per host, shared by its workers: ``local``) or
  ``global`` (one counter in Redis for all replicas: ``redis_store``).
- ``timeout``: a *global* rule's bound on each Redis call (default: the store's, 50 ms).
- ``failure_mode``: what a *global* rule does when Redis cannot answer in time or the
  breaker is open: ``open`` (default; allow, send no ``RateLimit-Remaining``) or
  ``closed`` (refuse with 503 and a JSON error, since nothing was actually limited; 429
  stays reserved for real limits, as in Envoy).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from turnout.proxy.ratelimit.algorithms import Algorithm


class KeyBy(StrEnum):
    CLIENT_IP = "client_ip"
    HEADER = "header"
    ROUTE = "route"
    CONSUMER = "consumer"
    JWT_CLAIM = "jwt_claim"


@dataclass(frozen=True, slots=True)
class KeySpec:
    by: KeyBy = KeyBy.CLIENT_IP
    name: str = ""  # the header name (any case) or the JWT claim name
    header: bytes = field(init=False, repr=False, compare=False, default=b"")

    def __post_init__(self) -> None:
        if self.by in (KeyBy.HEADER, KeyBy.JWT_CLAIM) and not self.name:
            raise ValueError(f"rate-limit key {self.by.value} needs a name")
        object.__setattr__(self, "header", self.name.lower().encode("latin-1"))


@dataclass(frozen=True, slots=True)
class RateLimitRule:
    name: str  # stable across revisions: it names the counters (local hash, Redis key)
    algorithm: Algorithm
    key: KeySpec = KeySpec()
    scope: str = "local"  # "local" | "global"
    failure_mode: str = "open"  # "open" | "closed" (global rules only)
    timeout: float | None = None  # global rules: per Redis call; None = the store's default

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a rate-limit rule needs a name")
        if self.scope not in ("local", "global"):
            raise ValueError(f"rate-limit scope must be local or global, not {self.scope!r}")
        if self.failure_mode not in ("open", "closed"):
            raise ValueError(
                f"rate-limit failure mode must be open or closed, not {self.failure_mode!r}"
            )
        if self.timeout is not None and not 0 < self.timeout < float("inf"):
            raise ValueError("a rate-limit timeout must be a positive number of seconds")


def extract_key(
    spec: KeySpec,
    *,
    client_ip: bytes,
    headers: Mapping[bytes, bytes],
    route: bytes,
    consumer: bytes | None = None,
    claims: Mapping[str, object] | None = None,
) -> bytes | None:
    """The key bytes of one request for ``spec``, or ``None`` when the request has none.

    ``headers`` is the request's received-header index (lowercase names, repeated values
    joined with ","), ``RequestHead.received``.
    """
    by = spec.by
    if by is KeyBy.CLIENT_IP:
        return client_ip
    if by is KeyBy.HEADER:
        return headers.get(spec.header)
    if by is KeyBy.ROUTE:
        return route
    if by is KeyBy.CONSUMER:
        return consumer
    if claims is None:
        return None
    value = claims.get(spec.name)
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bytes):
        return value
    return str(value).encode()
