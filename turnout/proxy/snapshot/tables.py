"""The compiled tables of a ``Snapshot``: what a request reads, never writes.

``RouteAction`` is a compiled ``HTTPRouteRule`` (its filter chains, backendRefs with
cumulative weights, timeouts, the stats cell), ``BackendChoice`` one backendRef,
``Cluster`` a ``Backend`` through one port (balancer, pools, breaker, affinity),
``L4Route`` a TCPRoute/TLSRoute rule, and ``Snapshot`` the per-socket tables of one
revision. The builder (``builder.py``) fills them in; nothing mutates them afterwards
except the per-worker counters they point at.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Final

from turnout.config.model.traffic import RateLimitSpec
from turnout.config.tls import (
    Certificate,
)
from turnout.observe.accesslog import json_string
from turnout.observe.stats import RouteStats
from turnout.proxy.filters.auth.chain import Principal, claim_key
from turnout.proxy.filters.base import (
    ForwardFilter,
    ForwardHooks,
    RequestFilter,
    RequestHooks,
    ResponseFilter,
    ResponseHooks,
    forward_filter,
    request_filter,
    response_filter,
)
from turnout.proxy.filters.ratelimit import RateLimitFilter
from turnout.proxy.protocols.heads import RequestHead
from turnout.proxy.routing.l4 import L4Table
from turnout.proxy.routing.table import PortTable
from turnout.proxy.routing.tls import TlsTable
from turnout.proxy.upstream.affinity import cookie_value, new_cookie_value, set_cookie
from turnout.proxy.upstream.balancer import Balancer
from turnout.proxy.upstream.breaker import BackendGuard
from turnout.proxy.upstream.endpoints import Endpoint
from turnout.proxy.upstream.hashing import hash_bytes
from turnout.proxy.upstream.health import OutlierDetector
from turnout.proxy.upstream.pool import EndpointPool
from turnout.proxy.upstream.retry import RetryPolicy

# ALPN offered on HTTPS listeners.
ALPN: Final = ("h2", "http/1.1")

HASH_NONE: Final = 0
HASH_SOURCE_IP: Final = 1
HASH_HEADER: Final = 2
HASH_COOKIE: Final = 3
HASH_QUERY: Final = 4
HASH_SOURCES: Final = {
    "SourceIP": HASH_SOURCE_IP,
    "Header": HASH_HEADER,
    "Cookie": HASH_COOKIE,
    "QueryParameter": HASH_QUERY,
}


class Cluster:
    """A ``Backend`` as reached through one port: what a backendRef resolves to."""

    __slots__ = (
        "balancer",
        "connect_timeout",
        "endpoints",
        "guard",
        "hash_cookie_max_age",
        "hash_name",
        "hash_source",
        "label",
        "label_json",
        "outlier",
        "retry",
        "single",
        "sticky_cookies",
        "sticky_max_age",
        "sticky_name",
        "sticky_tokens",
    )

    def __init__(
        self,
        label: str,
        balancer: Balancer,
        connect_timeout: float,
        guard: BackendGuard | None = None,
    ) -> None:
        self.label = label
        self.label_json = _json_str(label)
        self.balancer = balancer
        self.connect_timeout = connect_timeout
        self.endpoints: list[Endpoint] = balancer.endpoints
        self.guard = guard if guard is not None else BackendGuard()
        self.outlier: OutlierDetector | None = None
        self.retry: RetryPolicy | None = None
        # Consistent hashing input (HASH_*) and the header/cookie/parameter it names
        self.hash_source = HASH_NONE
        self.hash_name = b""
        self.hash_cookie_max_age = -1  # >= 0: the gateway sets the cookie when absent
        # Sticky sessions: cookie name, Max-Age (-1 = session cookie), token -> endpoint
        self.sticky_name = b""
        self.sticky_max_age = -1
        self.sticky_tokens: dict[bytes, Endpoint] = {}
        self.sticky_cookies: dict[str, bytes] = {}  # endpoint key -> its Set-Cookie value
        # The one endpoint when there is exactly one: no balancing to do.
        eps = balancer.endpoints
        self.single = eps[0] if len(eps) == 1 else None


class BackendChoice:
    """One backendRef of a rule."""

    __slots__ = (
        "cluster",
        "label",
        "label_json",
        "overrides",
        "release",
        "request_filters",
        "response_filters",
        "retry",
        "stats",
        "version",
    )

    def __init__(self, cluster: Cluster | None, label: str, stats: RouteStats) -> None:
        self.cluster = cluster  # None: invalid reference, answers 500
        self.label = label
        self.label_json = _json_str(label)
        self.stats = stats
        # backendRef-level filters (Gateway API extended features): run after the rule's
        self.request_filters: tuple[RequestFilter, ...] = ()
        # the rule's response filters, then this backendRef's, in order
        self.response_filters: tuple[ResponseFilter, ...] = ()
        # the rule's retry (Gateway API) over the backend's, or the backend's alone
        self.retry: RetryPolicy | None = cluster.retry if cluster is not None else None
        # routing key -> this choice with a Sandbox's endpoints instead of the baseline's
        self.overrides: dict[bytes, BackendChoice] | None = None
        # a Release of this backend: sends some requests to its candidate
        self.release: ReleaseSplit | None = None
        # a Release candidate's version, for a blue-green preview request's trace
        self.version = ""

    def overridden(self, cluster: Cluster) -> BackendChoice:
        """This choice, filters and all, with ``cluster`` in place of the baseline."""
        twin = BackendChoice(cluster, self.label, self.stats)
        twin.request_filters = self.request_filters
        twin.response_filters = self.response_filters
        twin.retry = self.retry
        return twin


SPLIT_COOKIE: Final = 0
SPLIT_HEADER: Final = 1
SPLIT_CLIENT: Final = 2
SPLIT_RANDOM: Final = 3
SPLIT_CONSUMER: Final = 4
SPLIT_CLAIM: Final = 5
SPLIT_BUCKETS: Final = 10_000
PINNED: Final = b"stable"


class ReleaseSplit:
    """A Release's split of one backendRef: which requests go to ``candidate``.

    A keyed split hashes (key, release) into one of ``SPLIT_BUCKETS`` buckets and sends
    buckets below ``threshold`` to the candidate: every worker and replica agrees, and
    as the weight grows a user already on the candidate stays there (the key: a cookie, a
    header, the client address, the authenticated Consumer or a JWT claim; a request
    without it is split at random). ``by`` cookie: the
    gateway sets the cookie when absent (``pick`` returns its Set-Cookie value); a
    request without it that carries the ``pin`` session cookie gets the value
    ``stable`` and stays on stable. ``match``: header (name, value) pairs that all must
    be present (an A/B test): matching requests go to the candidate, others stay.
    """

    def __init__(
        self,
        candidate: BackendChoice,
        threshold: int,
        by: int,
        name: bytes,
        salt: bytes,
        pin: bytes = b"",
        match: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        self.candidate = candidate
        self.threshold = threshold
        self.by = by
        self.name = name
        self.salt = salt
        self.pin = pin
        self.match = match
        self.claim = name.decode() if by == SPLIT_CLAIM else ""
        # what a traced request records as its release version (built once, read only
        # when the request is traced): "namespace/release:stable" or ":candidate"
        self.stable_version = ""
        self.candidate_version = ""

    def pick(
        self, head: RequestHead, client_ip: bytes, principal: Principal | None = None
    ) -> tuple[bool, bytes]:
        """(to the candidate?, a Set-Cookie value to add or b""); ``principal``: who a
        SecurityPolicy authenticated (the consumer and JWT-claim splits' key)."""
        if self.match:
            received = head.received
            for name, value in self.match:
                if received.get(name) != value:
                    return False, b""
            return True, b""
        threshold = self.threshold
        if threshold <= 0:
            return False, b""
        if threshold >= SPLIT_BUCKETS:
            return True, b""
        by = self.by
        new = b""
        if by == SPLIT_RANDOM:
            return random.random() * SPLIT_BUCKETS < threshold, b""
        if by == SPLIT_COOKIE:
            key = cookie_value(head, self.name)
            if key is None:
                if self.pin and cookie_value(head, self.pin) is not None:
                    key = PINNED
                else:
                    key = new_cookie_value()
                new = set_cookie(self.name, key, -1)
            if key == PINNED:
                return False, new
        elif by == SPLIT_HEADER:
            found = head.received.get(self.name)
            if found is None:
                return random.random() * SPLIT_BUCKETS < threshold, b""
            key = found
        elif by in (SPLIT_CONSUMER, SPLIT_CLAIM):
            who: bytes | None = None
            if principal is not None:
                if by == SPLIT_CONSUMER:
                    who = principal.consumer_key
                elif principal.claims is not None:
                    who = claim_key(principal.claims, self.claim)
            if who is None:
                return random.random() * SPLIT_BUCKETS < threshold, b""
            key = who
        else:
            key = client_ip
        return hash_bytes(self.salt + key) % SPLIT_BUCKETS < threshold, new


class RouteAction:
    """A compiled ``HTTPRouteRule``: what to do with a request that matched it.

    Its features are filter chains (``proxy/filters/base.py``), in order: the
    SecurityPolicy, rate limits, a redirect, fault injection, request header modifier
    and URL rewrite as ``request_filters``; request mirrors as ``forward_filters``. A
    rule without filters has empty tuples and costs nothing for them.
    """

    __slots__ = (
        "backend_timeout",
        "body_limit",
        "choices",
        "cumulative",
        "forward_filters",
        "needs_context",
        "rate_limit",
        "rate_limit_filter",
        "rate_limit_name",
        "request_filters",
        "request_timeout",
        "route_json",
        "route_label",
        "single",
        "stats",
        "total_weight",
    )

    def __init__(self, route_label: str, stats: RouteStats) -> None:
        self.route_label = route_label
        self.route_json = _json_str(route_label)
        self.stats = stats  # for responses made without a backend (redirects, 500)
        self.request_filters: tuple[RequestFilter, ...] = ()
        self.forward_filters: tuple[ForwardFilter, ...] = ()
        # any filter at all, here or on a backendRef: requests get a FilterContext
        self.needs_context = False
        self.choices: tuple[BackendChoice, ...] = ()
        self.cumulative: list[int] = []
        self.total_weight = 0
        self.request_timeout = 0.0  # 0 = none
        self.backend_timeout = 0.0
        self.body_limit = 0  # the TrafficPolicy's requestBodyLimit (0 = none)
        self.single: BackendChoice | None = None  # the only backendRef with weight > 0
        # TrafficPolicy rateLimit and the policy's name, and the filter that enforces it
        # (its limiter is set when the snapshot's one limiter is compiled)
        self.rate_limit: RateLimitSpec | None = None
        self.rate_limit_name = ""
        self.rate_limit_filter: RateLimitFilter | None = None

    def add_filters(
        self,
        request: tuple[RequestHooks, ...] = (),
        response: tuple[ResponseHooks, ...] = (),
        forward: tuple[ForwardHooks, ...] = (),
    ) -> None:
        """Append filters to this rule's chains (at build time, never per request):
        ``request`` after the built-in request filters, ``response`` after each
        backendRef's response filters (sandbox twins included), ``forward`` taps last.
        Objects that do not derive from the filter base classes are wrapped here."""
        self.request_filters = (*self.request_filters, *[request_filter(f) for f in request])
        self.forward_filters = (*self.forward_filters, *[forward_filter(f) for f in forward])
        if response:
            wrapped = [response_filter(f) for f in response]
            for choice in self.choices:
                twins = choice.overrides.values() if choice.overrides is not None else ()
                for target in (choice, *twins):
                    target.response_filters = (*target.response_filters, *wrapped)
        self.needs_context = self.needs_context or bool(request or response or forward)

    def choose(self, rand: Callable[[], float] = random.random) -> BackendChoice | None:
        choices = self.choices
        if len(choices) == 1:
            return choices[0] if self.total_weight else None
        if not self.total_weight:
            return None
        return choices[bisect_right(self.cumulative, rand() * self.total_weight)]


class L4Route:
    """A compiled TCPRoute / TLSRoute rule: backends by weight (``choose``), then the
    Backend's balancer picks the endpoint; a connection opens its own upstream socket."""

    __slots__ = ("choices", "cumulative", "label", "total_weight")

    def __init__(self, label: str, choices: list[tuple[Cluster | None, str, int]]) -> None:
        self.label = label  # "namespace/name", the route label of the L4 metrics
        # (cluster or None for an unresolvable ref, backend label) by weight > 0
        self.choices = tuple((c, b) for c, b, w in choices if w > 0)
        self.cumulative = list(accumulate(w for _, _, w in choices if w > 0))
        self.total_weight = self.cumulative[-1] if self.cumulative else 0

    def choose(self, rand: Callable[[], float] = random.random) -> tuple[Cluster | None, str]:
        """(cluster, backend label); the cluster is None when the ref does not resolve
        (or no backendRef has weight): the connection is closed."""
        if not self.total_weight:
            return None, ""
        if len(self.choices) == 1:
            return self.choices[0]
        return self.choices[bisect_right(self.cumulative, rand() * self.total_weight)]


@dataclass(slots=True)
class Snapshot:
    revision: int
    sockets: dict[str, PortTable[RouteAction]]
    # (ip, port) of every socket the snapshot serves, keyed like ``sockets``
    bindings: dict[str, tuple[str, int]]
    pools: dict[str, EndpointPool] = field(default_factory=dict)  # the endpoints it uses
    # routing key -> "Sandbox ns/name" / "RouteGroup ns/name" for every key in force
    keys: dict[bytes, str] = field(default_factory=dict)
    # sockets that speak TLS: their listeners by SNI, and the certificates of the default
    tls: dict[str, TlsTable] = field(default_factory=dict)
    tls_default: dict[str, list[Certificate]] = field(default_factory=dict)
    tls_client_ca: dict[str, bytes] = field(default_factory=dict)  # mutual TLS, per socket
    # L4 sockets (TCP, TLS passthrough): their route tables; never also in ``sockets``
    l4: dict[str, L4Table[L4Route]] = field(default_factory=dict)


def _json_str(text: str) -> bytes:
    return json_string(text)
