"""``RateLimit-*`` and ``Retry-After`` header fields and the refusal bodies, as bytes.

The fields are the separate-fields form of the IETF ``RateLimit`` header-fields draft
(draft-ietf-httpapi-ratelimit-headers up to -06: ``RateLimit-Limit``,
``RateLimit-Remaining``, ``RateLimit-Reset``, ``RateLimit-Policy``), the form that is
widely deployed (the ``X-RateLimit-*`` family, Envoy's ``DRAFT_VERSION_03`` headers,
Kong's ``RateLimit-*``). Later drafts fold them into one structured ``RateLimit`` field;
clients read the separate fields today. Values are integers:

- ``RateLimit-Limit``: the quota, ``burst`` for a token bucket, ``requests`` for a window.
- ``RateLimit-Remaining``: requests still allowed now; omitted when unknown (a global rule
  that failed open because Redis did not answer).
- ``RateLimit-Reset``: seconds until the whole quota is available again, rounded up.
- ``RateLimit-Policy``: the quota policy in the draft's ``<quota>;w=<seconds>`` form:
  ``<requests>;w=<window>`` for a sliding window, ``<rate>;w=<interval>;burst=<burst>``
  for a token bucket (``burst`` is an extension parameter), so a client can pace itself.
- ``Retry-After`` (RFC 9110 §10.2.3, delay-seconds, at least 1) on refusals only.

A rate-limited request gets **429** with ``{"error":"rate_limited",...}``; a request refused
because the Redis store failed and the rule fails closed gets **503** with
``{"error":"rate_limit_unavailable",...}`` (nothing was limited: 429 would tell the client
it exceeded a quota it did not exceed, and Envoy too keeps 429 for real limits).
Header names are lowercase, as everywhere in the data plane (``protocols.heads``).
"""

from __future__ import annotations

import math
from typing import Final, NamedTuple

from turnout.proxy.ratelimit.algorithms import Algorithm, Decision, TokenBucket

Headers = list[tuple[bytes, bytes]]

LIMIT: Final = b"ratelimit-limit"
REMAINING: Final = b"ratelimit-remaining"
RESET: Final = b"ratelimit-reset"
POLICY: Final = b"ratelimit-policy"
RETRY_AFTER: Final = b"retry-after"

RATE_LIMITED: Final = b"rate_limited"
UNAVAILABLE: Final = b"rate_limit_unavailable"
_BODY: Final = b'{"error":"%s","message":"%s","retry_after":%d}\n'


def seconds(value: float) -> int:
    """Whole seconds, rounded up (a client that waits this long is never early)."""
    if value <= 0.0:
        return 0
    if value >= 2147483647.0:
        return 2147483647
    return math.ceil(value - 1e-9)


def policy(algorithm: Algorithm) -> bytes:
    """The ``RateLimit-Policy`` value for a rule (computed once per snapshot)."""
    if isinstance(algorithm, TokenBucket):
        interval = algorithm.interval
        if interval >= 1.0 and interval == int(interval):
            rate, window = algorithm.rate, int(interval)
        else:  # sub-second or fractional intervals: say it per whole seconds
            window = max(1, round(interval))
            rate = max(1, round(algorithm.per_second * window))
        return b"%d;w=%d;burst=%d" % (rate, window, algorithm.burst)
    return b"%d;w=%d" % (algorithm.requests, max(1, seconds(algorithm.window)))


def rate_limit_headers(decision: Decision, policy_value: bytes) -> Headers:
    """The ``RateLimit-*`` fields for a response the limiter let through (or refused)."""
    limit = b"%d" % decision.limit
    remaining = decision.remaining
    if remaining is None:
        return [(LIMIT, limit), (POLICY, policy_value)]
    return [
        (LIMIT, limit),
        (REMAINING, b"%d" % remaining),
        (RESET, b"%d" % seconds(decision.reset_after)),
        (POLICY, policy_value),
    ]


class Rejection(NamedTuple):
    """How to refuse a request: status, error code and message, headers, JSON body.

    ``headers`` carries no framing or ``content-type``: hand ``status``, ``code``,
    ``message`` and ``headers`` to the exchange's ``local_reply`` (which writes the JSON
    body with the request id), or send ``body`` with ``content-type: application/json``.
    """

    status: int
    code: bytes
    message: bytes
    headers: Headers
    body: bytes


def rejection(decision: Decision, policy_value: bytes) -> Rejection:
    """The refusal for a decision that is not ``allowed`` (429, or 503 when degraded)."""
    retry = max(1, seconds(decision.retry_after))
    if decision.degraded:
        message = b"the rate-limit store is unavailable; retry in %d s" % retry
        return Rejection(
            503,
            UNAVAILABLE,
            message,
            [(RETRY_AFTER, b"%d" % retry)],
            _BODY % (UNAVAILABLE, message, retry),
        )
    headers = rate_limit_headers(decision, policy_value)
    headers.append((RETRY_AFTER, b"%d" % retry))
    message = b"rate limit exceeded; retry in %d s" % retry
    return Rejection(429, RATE_LIMITED, message, headers, _BODY % (RATE_LIMITED, message, retry))
