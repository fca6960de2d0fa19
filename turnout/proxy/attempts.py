"""Which endpoint, whether to try again, and what an attempt's outcome counts for.

``Attempts`` is the decision half of a request's upstream side; ``forward.Forwarder``
derives from it and adds the connections and the event flow. Here:

* admission: the backend's circuit breaker (``guard.admit``), then the endpoint (a
  sticky cookie, else the balancer, with a hash key when it hashes; an affinity cookie
  to set on the response may result);
* retries under a ``RetryPolicy``: whether one is allowed (attempts left, the body
  still replayable up to ``REPLAY_LIMIT``, nothing relayed yet, the retry budget), giving
  up an attempt (counted), the back-off timer, and the next attempt on another endpoint
  when the balancer has one, replaying the body kept so far;
* outcomes: each attempt's status (0: a gateway error) feeds the circuit breaker, the
  outlier detector and the endpoint's in-flight count; ``finish`` counts the last one.

``UpstreamSink`` is the interface back to the exchange (``streams.Exchange`` derives from
it, so a compiled data plane calls it natively).
"""

from __future__ import annotations

import asyncio
from random import random
from time import perf_counter
from typing import TYPE_CHECKING, Final

from turnout.proxy.protocols.heads import Headers, RequestHead, ResponseHead
from turnout.proxy.snapshot.tables import HASH_COOKIE, HASH_HEADER, HASH_SOURCE_IP
from turnout.proxy.upstream.affinity import (
    NO_KEY,
    cookie_value,
    key_of,
    new_cookie_value,
    query_value,
    set_cookie,
)
from turnout.proxy.upstream.health import ejected_count

if TYPE_CHECKING:
    from turnout.observe.tracing import RequestTrace
    from turnout.proxy.runtime import Runtime
    from turnout.proxy.snapshot.tables import BackendChoice, Cluster
    from turnout.proxy.upstream.endpoints import Endpoint
    from turnout.proxy.upstream.retry import RetryPolicy

# Request bodies up to this size are kept for retries; a larger one is not retried.
REPLAY_LIMIT: Final = 64 * 1024


class UpstreamSink:
    """What the forwarder reports to its exchange (``streams.Exchange`` derives from it)."""

    __slots__ = ()

    def upstream_informational(self, head: ResponseHead) -> None:
        """A 1xx other than 100/101 (103 Early Hints): relay as is."""

    def upstream_head(self, head: ResponseHead) -> None:
        """The response head to relay (no retry wanted it)."""

    def upstream_body(self, data: bytes) -> None: ...

    def upstream_end(self, trailers: Headers | None) -> None:
        """The response is complete (the connection is already back in its pool)."""

    def upstream_switched(self, head: ResponseHead) -> None:
        """A valid ``101``: answer it and open the tunnel; ``tunnel_write`` goes up."""

    def upstream_raw(self, data: bytes) -> None:
        """Tunnel bytes from the upstream."""

    def upstream_failed(
        self, status: int, code: bytes, message: bytes, extra: Headers | None
    ) -> None:
        """No response head was relayed and none will be: answer from the gateway."""

    def upstream_broken(self) -> None:
        """The upstream failed after the response head (or a tunnel closed): abort."""

    def upstream_timed_out(self) -> None:
        """The backend (per-try) timer fired and no retry follows."""

    def upstream_writable(self, writable: bool) -> None:
        """The upstream socket filled up (False) or drained: pause or resume the client."""

    def request_buffer_full(self, full: bool) -> None:
        """The body buffered while connecting is over ``BUFFER_LIMIT`` (or was sent)."""

    def continue_request(self) -> None:
        """Expect: 100-continue and the upstream is reached: let the client send."""

    def flush(self) -> None: ...


class Attempts:
    """The decisions of one request's upstream side (state shared with ``Forwarder``)."""

    __slots__ = (
        "attempt",
        "choice",
        "client_ip",
        "cluster",
        "done",
        "endpoint",
        "gateway_error",
        "guarded",
        "head",
        "in_retry",
        "last_failed",
        "pending",
        "pending_size",
        "policy",
        "replay",
        "replay_size",
        "retry_timer",
        "rt",
        "set_cookie",
        "sink",
        "started",
        "trace",
        "upstream_status",
    )

    def __init__(
        self,
        rt: Runtime,
        sink: UpstreamSink,
        head: RequestHead,
        choice: BackendChoice,
        cluster: Cluster,
        client_ip: bytes,
    ) -> None:
        self.rt = rt
        self.sink = sink
        self.head = head
        self.choice = choice
        self.cluster = cluster
        self.client_ip = client_ip
        self.endpoint: Endpoint | None = None
        self.pending: list[bytes] | None = None  # body waiting for a connection
        self.pending_size = 0
        self.started = False  # a response head was relayed (or a tunnel opened)
        self.done = False  # stopped or finished: nothing more goes up
        self.retry_timer: asyncio.TimerHandle | None = None
        self.guarded = False  # counted in the backend's and endpoint's in-flight requests
        self.upstream_status = 0  # the status the upstream answered (0: none)
        self.gateway_error = False  # connect failure, reset or timeout (outlier detection)
        self.set_cookie: bytes | None = None  # affinity cookie to set on the response
        self.policy: RetryPolicy | None = None  # retries beyond the stale-connection one
        self.attempt = 0  # retries made under the policy
        self.in_retry = False  # counted in the backend's retries in flight
        self.replay: list[bytes] | None = None  # the body sent so far, for retries
        self.replay_size = 0
        self.last_failed: Endpoint | None = None  # a retry avoids it when it can
        self.trace: RequestTrace | None = None  # set by the exchange when traced

    # -- what the forwarder implements ----------------------------------------------------

    def _go(self, endpoint: Endpoint) -> None:
        """Start an attempt on ``endpoint``: a pooled connection or a new one."""
        raise NotImplementedError

    def _abandon_attempt(self) -> None:
        """Drop the current attempt's connection, connect and per-try timer."""
        raise NotImplementedError

    def admit(self, now: float) -> bool:
        """Circuit breaker and endpoint; False when refused (the sink was answered)."""
        cluster = self.cluster
        guard = cluster.guard
        refused = guard.admit(now)
        if refused:
            self._overflow(refused)
            return False
        head = self.head
        endpoint = cluster.single
        if endpoint is None:
            endpoint = self._pick(cluster, head, now)
        self.endpoint = endpoint
        if endpoint is None:
            self.sink.upstream_failed(
                503, b"no_endpoint", b"the backend has no available endpoint", None
            )
            return False
        guard.active += 1
        endpoint.health.inflight += 1
        self.guarded = True
        policy = self.choice.retry
        if policy is not None and policy.retries > 0 and head.upgrade is None:
            self.policy = policy
            self.replay = []
        return True

    def finish(self, now: float) -> None:
        """Leave the in-flight counts; feed the outcome to the breaker and outlier detector."""
        self.done = True
        self.guarded = False
        endpoint = self.endpoint
        cluster = self.cluster
        guard = cluster.guard
        guard.active -= 1
        if self.in_retry:
            self.in_retry = False
            guard.retries -= 1
        if endpoint is None:
            return  # between two attempts: the last one was counted already
        if self.upstream_status:
            outcome = self.upstream_status
        elif self.gateway_error:
            outcome = 0
        else:
            # the client left or the request was refused: says nothing of the backend
            endpoint.health.inflight -= 1
            return
        self._attempt_outcome(endpoint, outcome, now)

    def _pick(self, cluster: Cluster, head: RequestHead, now: float) -> Endpoint | None:
        """Sticky cookie, then the balancer (with a hash key when it hashes)."""
        if cluster.sticky_name:
            token = cookie_value(head, cluster.sticky_name)
            if token is not None:
                ep = cluster.sticky_tokens.get(token)
                if ep is not None and ep.health.available(now):
                    return ep
        source = cluster.hash_source
        key = NO_KEY
        if source:
            if source == HASH_SOURCE_IP:
                key = key_of(self.client_ip)
            elif source == HASH_HEADER:
                key = key_of(head.get(cluster.hash_name))
            elif source == HASH_COOKIE:
                value = cookie_value(head, cluster.hash_name)
                if value is None and cluster.hash_cookie_max_age >= 0:
                    value = new_cookie_value()
                    self.set_cookie = set_cookie(
                        cluster.hash_name, value, cluster.hash_cookie_max_age
                    )
                key = key_of(value)
            else:
                key = key_of(query_value(head.query, cluster.hash_name))
        ep = cluster.balancer.pick(key, now)
        if ep is not None and cluster.sticky_name:
            self.set_cookie = cluster.sticky_cookies.get(ep.key)
        return ep

    def _overflow(self, reason: bytes) -> None:
        """A circuit-breaker limit or an open breaker: refuse fast, say why."""
        self.rt.stats.event(self.cluster.label, "overflow:" + reason.decode())
        self.sink.upstream_failed(
            503,
            b"upstream_overflow",
            b"the backend is protected by a circuit breaker (" + reason + b")",
            [(b"x-turnout-circuit", reason)],
        )

    def _attempt_outcome(self, endpoint: Endpoint, outcome: int, now: float) -> None:
        """One attempt on ``endpoint`` ended with ``outcome`` (a status, 0 = gateway error)."""
        cluster = self.cluster
        endpoint.health.inflight -= 1
        cluster.guard.record(0 < outcome < 500, now)
        detector = cluster.outlier
        if detector is None:
            return
        ejected = -1
        health = endpoint.health
        if health.shared is not None and (outcome == 0 or outcome >= 500):
            # other workers' ejections count against max_ejection_percent too
            ejected = ejected_count([e.health for e in cluster.endpoints], now)
        if detector.on_response(health, outcome, now, len(cluster.endpoints), ejected):
            self.rt.stats.event(cluster.label, "ejection")

    def _capture(self, data: bytes) -> None:
        """Keep the body for a retry, up to REPLAY_LIMIT; beyond it, no more retries."""
        size = self.replay_size + len(data)
        if size > REPLAY_LIMIT:
            self.replay = None
            return
        assert self.replay is not None
        self.replay.append(data)
        self.replay_size = size

    def _may_retry(self) -> bool:
        policy = self.policy
        if (
            policy is None
            or self.replay is None
            or self.attempt >= policy.retries
            or self.started
            or self.done
        ):
            return False
        guard = self.cluster.guard
        if not self.in_retry and (
            guard.retries >= guard.max_retries or guard.retries >= policy.budget(guard.active)
        ):
            self.rt.stats.event(self.cluster.label, "overflow:retry-budget")
            return False
        return True

    def _retry(self, status: int, reason: str = "upstream error") -> None:
        """Give up the current attempt (``status``: what it answered, 0 = failed for
        ``reason``) and try again after the back-off, on another endpoint when there is one."""
        cluster = self.cluster
        endpoint = self.endpoint
        policy = self.policy
        assert endpoint is not None and policy is not None
        now = perf_counter()
        self._attempt_outcome(endpoint, status, now)
        trace = self.trace
        if trace is not None:
            trace.attempt_end(status, "" if status else reason, now)
        self.last_failed = endpoint
        self.endpoint = None
        self.attempt += 1
        self.rt.stats.event(cluster.label, "retry")
        if not self.in_retry:
            self.in_retry = True
            cluster.guard.retries += 1
        self.upstream_status = 0
        self.gateway_error = False
        self.pending = None
        self.pending_size = 0
        self._abandon_attempt()
        delay = policy.backoff(self.attempt, random())
        self.retry_timer = self.rt.loop.call_later(delay, self._retry_now)

    def _retry_now(self) -> None:
        self.retry_timer = None
        if self.done:
            return
        cluster = self.cluster
        now = perf_counter()
        failed = self.last_failed
        endpoint = cluster.single
        if endpoint is None:
            endpoint = cluster.balancer.pick(NO_KEY, now)
            # A different endpoint when the balancer has one to offer.
            for _ in range(2):
                if endpoint is None or endpoint is not failed:
                    break
                endpoint = cluster.balancer.pick(NO_KEY, now)
        if endpoint is None:
            self.endpoint = None
            self.sink.upstream_failed(
                503, b"no_endpoint", b"the backend has no available endpoint", None
            )
            self.sink.flush()
            return
        self.endpoint = endpoint
        endpoint.health.inflight += 1
        replay = self.replay
        if replay:
            self.pending = list(replay)
            self.pending_size = self.replay_size
        self._go(endpoint)
        self.sink.flush()

    def _exhausted(self, reason: bytes) -> None:
        self.sink.upstream_failed(
            503,
            b"upstream_unavailable",
            b"all %d attempts failed; the last: %s" % (self.attempt + 1, reason),
            None,
        )
