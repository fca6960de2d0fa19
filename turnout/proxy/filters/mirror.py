"""Request mirroring (Gateway API ``RequestMirror``): a fire-and-forget copy of a request.

One ``Mirror`` is made per mirrored request, by the exchange forwarding the real
("primary") request, right after it rendered the upstream request head. The copy goes
to another backend's ``EndpointPool``; its response is read and thrown away, and nothing
the mirror does can slow down or fail the primary:

* The exchange hands the mirror the primary's head bytes unchanged (the Gateway API keeps
  the Host and every header as they are; Envoy's ``-shadow`` Host suffix is not applied),
  then every request-body byte exactly as framed for the primary (chunk framing and the
  terminating ``last_chunk`` included) through ``body()``, then ``end()``. Every call
  returns at once: it writes to the mirror's socket or appends to a bounded backlog.
* The mirror takes an idle pooled connection or opens one (``pool.open()`` as a task).
  While it connects, body bytes wait in the backlog; once connected, head + backlog are
  written in one write and later bytes are written as they come.
* Backpressure is never propagated to the client. When the mirror's socket reports it is
  not writable (``upstream_writable(False)``, asyncio's ``pause_writing``), further bytes
  go to the backlog again and are flushed when it resumes. The backlog — while
  connecting or while blocked — holds at most ``limit`` bytes; beyond that the mirror
  gives up (outcome ``DROPPED``) and aborts its connection. So a mirror costs at most
  ``limit`` bytes plus the transport's high-water mark, and a stuck target only loses
  its copy.
* The mirror is the connection's owner while in flight: it implements the callbacks
  ``UpstreamConnection`` makes on its attached owner (``connection.UpstreamOwner``, which
  ``Exchange`` satisfies too), so the response is parsed by the same codec and discarded.
  When the response completes, the connection goes back to the pool if the whole request
  had been written, and is closed otherwise (the socket would be out of step).
* Lifetime is bounded: a ``loop.call_later`` timer (``timeout``, default 30 s) ends a
  mirror that has not finished (outcome ``FAILED``). ``abort()`` (the primary was
  abandoned) stops it at once (``DROPPED``): the connection is aborted. A connect
  failure, a reset, a malformed response or a 101 answer is ``FAILED``; a complete
  response is ``SENT``. A reused pooled connection that turns out stale fails the
  mirror: there is no retry.
* A connect in progress when the mirror gives up is not cancelled: it finishes and the
  fresh, unused connection goes to the pool (as Envoy keeps connections it started
  for a stream that went away). Only the timer cancels a connect, when it has hung for
  ``timeout``; so the task is not cancelled in the instant between TCP connect and
  ``connection_made``, where ``EndpointPool`` would count the connection's loss without
  having counted it as open.

Outcomes are counted in a ``MirrorCounters`` (the module-wide ``COUNTERS`` unless the
caller passes its own, e.g. per route) and kept on the instance (``outcome``, ``status``).
Sampling (``percent`` / ``fraction`` of the filter) is the caller's: ``sample(numerator,
denominator, random.random())`` before making a ``Mirror``.

``MirrorFilter`` is the rule's ``RequestMirror`` as a forward filter (filters/base.py):
it samples, picks the target endpoint and returns the ``Mirror`` as the exchange's body
tap. The pool and connection are described by the structural protocols ``MirrorPool``
and ``MirrorConnection``, which ``EndpointPool`` and ``UpstreamConnection`` satisfy.
"""

from __future__ import annotations

import asyncio
from random import random
from typing import TYPE_CHECKING, Any, Final, Protocol

from turnout.core.tasks import spawn
from turnout.proxy.filters.base import BodyTap, FilterContext, ForwardFilter
from turnout.proxy.upstream.affinity import NO_KEY

if TYPE_CHECKING:
    from turnout.proxy.upstream.balancer import Balancer
    from turnout.proxy.upstream.endpoints import Endpoint

from turnout.proxy.protocols.heads import Headers, ResponseHead

# Mirror connects in flight, held until they end (the loop keeps weak references only).
_CONNECTING: set[asyncio.Task[Any]] = set()

# Outcomes (``Mirror.outcome``); 0 while the mirror is still running.
RUNNING: Final = 0
SENT: Final = 1  # the request went out and the mirror target answered
DROPPED: Final = 2  # given up by the gateway: backlog over the limit, or abort()
FAILED: Final = 3  # connect failure, reset, malformed answer, or timeout

DEFAULT_LIMIT: Final = 1 << 20
DEFAULT_TIMEOUT: Final = 30.0


class MirrorCounters:
    """Outcome counters; read by the metrics exporter."""

    __slots__ = ("dropped", "failed", "sent", "started")

    def __init__(self) -> None:
        self.started = 0
        self.sent = 0
        self.dropped = 0
        self.failed = 0

    @property
    def active(self) -> int:
        return self.started - self.sent - self.dropped - self.failed


COUNTERS: Final = MirrorCounters()


class MirrorConnection(Protocol):
    """What a mirror needs of an upstream connection (``UpstreamConnection`` has it)."""

    def attach(self, owner: Mirror, head_request: bool) -> None: ...
    def detach(self) -> None: ...
    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


class MirrorPool(Protocol):
    """What a mirror needs of an endpoint pool (``EndpointPool`` has it)."""

    def take_idle(self) -> MirrorConnection | None: ...
    async def open(self) -> MirrorConnection: ...
    def release(self, conn: Any) -> None: ...  # Any: EndpointPool takes its own class


def sample(numerator: int, denominator: int, rand: float) -> bool:
    """Whether to mirror this request, ``rand`` being ``random.random()`` (in [0, 1)).

    Gateway API: ``percent: p`` is ``sample(p, 100, r)``; ``fraction: {numerator: n,
    denominator: d}`` is ``sample(n, d, r)``; neither means every request (no call).
    """
    if numerator <= 0 or denominator <= 0:
        return False
    if numerator >= denominator:
        return True
    return rand * denominator < numerator


class Mirror:
    """One mirrored request; starts connecting (or takes a pooled connection) at once."""

    __slots__ = (
        "backlog",
        "backlog_size",
        "conn",
        "connecting",
        "counters",
        "ended",
        "head",
        "limit",
        "loop",
        "outcome",
        "pool",
        "status",
        "timer",
    )

    def __init__(
        self,
        pool: MirrorPool,
        loop: asyncio.AbstractEventLoop,
        head_bytes: bytes,
        limit: int = DEFAULT_LIMIT,
        timeout: float = DEFAULT_TIMEOUT,
        counters: MirrorCounters = COUNTERS,
    ) -> None:
        self.pool = pool
        self.loop = loop
        self.head = head_bytes
        self.limit = limit
        self.counters = counters
        self.conn: MirrorConnection | None = None
        self.connecting: asyncio.Task[MirrorConnection] | None = None
        # Bytes not yet written: while connecting, and while the socket is not writable.
        # None exactly when a connection is attached and writable.
        self.backlog: list[bytes] | None = []
        self.backlog_size = 0
        self.ended = False  # end() was called: every body byte has been handed to us
        self.outcome = RUNNING
        self.status = 0  # the mirror target's response status, once known
        counters.started += 1
        self.timer: asyncio.TimerHandle | None = loop.call_later(timeout, self._expired)
        conn = pool.take_idle()
        if conn is not None:
            self._attach(conn)
        else:
            task = spawn(pool.open(), loop=loop, keep=_CONNECTING)
            self.connecting = task
            task.add_done_callback(self._connected)

    # -- fed by the primary exchange -------------------------------------------------------

    def body(self, data: bytes) -> None:
        """Request-body bytes, framed exactly as written to the primary. Never blocks."""
        if self.outcome or not data:
            return
        backlog = self.backlog
        if backlog is None:
            conn = self.conn
            if conn is not None:
                conn.write(data)  # may report "not writable" synchronously
            return
        backlog.append(data)
        self.backlog_size += len(data)
        if self.backlog_size > self.limit:
            self._finish(DROPPED)

    def end(self) -> None:
        """The whole request has been handed over (the terminating chunk included)."""
        self.ended = True

    def abort(self) -> None:
        """The primary request was abandoned: stop and close the connection."""
        if not self.outcome:
            self._finish(DROPPED)

    # -- connection -------------------------------------------------------------------------

    def _connected(self, task: asyncio.Task[MirrorConnection]) -> None:
        if task is not self.connecting:
            # Cancelled by the timer; fetch the outcome so nothing is left unretrieved.
            if not task.cancelled() and task.exception() is None:
                task.result().close()  # the cancellation came too late
            return
        self.connecting = None
        if task.cancelled() or task.exception() is not None:
            if self.outcome:
                self._cancel_timer()  # given up already; the connect just ended too
            else:
                self._finish(FAILED)
            return
        conn = task.result()
        if self.outcome:
            # Given up while connecting: the fresh, unused connection serves the pool.
            self._cancel_timer()
            self.pool.release(conn)
            return
        self._attach(conn)

    def _attach(self, conn: MirrorConnection) -> None:
        self.conn = conn
        head = self.head
        conn.attach(self, head.startswith(b"HEAD "))
        backlog = self.backlog
        # Writable until the transport says otherwise (possibly inside this write).
        self.backlog = None
        self.backlog_size = 0
        if backlog:
            backlog.insert(0, head)
            conn.write(b"".join(backlog))
        else:
            conn.write(head)

    def _finish(self, outcome: int) -> None:
        if self.outcome:
            return
        self.outcome = outcome
        counters = self.counters
        if outcome == SENT:
            counters.sent += 1
        elif outcome == DROPPED:
            counters.dropped += 1
        else:
            counters.failed += 1
        # A connect in progress is left to finish (its connection then goes to the pool);
        # the timer stays armed to cancel it if it takes that long.
        if self.connecting is None:
            self._cancel_timer()
        conn = self.conn
        if conn is not None:
            self.conn = None
            conn.detach()
            conn.abort()
        self.backlog = None

    def _cancel_timer(self) -> None:
        timer = self.timer
        if timer is not None:
            self.timer = None
            timer.cancel()

    def _expired(self) -> None:
        self.timer = None
        task = self.connecting
        if task is not None:
            self.connecting = None
            task.cancel()
        self._finish(FAILED)

    # -- UpstreamOwner: events from the connection and its codec ---------------------------

    def response_informational(self, head: ResponseHead) -> None:
        pass

    def response_head(self, head: ResponseHead) -> None:
        self.status = head.status
        if head.status == 101:
            self._finish(FAILED)  # a mirror cannot follow a protocol switch

    def response_body(self, data: bytes) -> None:
        pass

    def response_complete(self, trailers: Headers | None) -> None:
        conn = self.conn
        if conn is not None:
            self.conn = None
            if self.ended and self.backlog is None:
                self.pool.release(conn)
            else:
                conn.detach()
                conn.close()  # answered before the whole request was written
        self._finish(SENT)

    def tunnel_data(self, data: bytes) -> None:
        pass

    def protocol_error(self, message: str) -> None:
        self._finish(FAILED)

    def upstream_lost(self, conn: object, exc: BaseException | None) -> None:
        if conn is self.conn:
            self.conn = None  # gone already; nothing to close
            self._finish(FAILED)

    def upstream_writable(self, writable: bool) -> None:
        if self.outcome or self.conn is None:
            return
        backlog = self.backlog
        if not writable:
            if backlog is None:
                self.backlog = []
            return
        if backlog is not None:
            self.backlog = None
            self.backlog_size = 0
            if backlog:
                self.conn.write(b"".join(backlog))

    def flush(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"<Mirror outcome={self.outcome} status={self.status}>"


class MirrorFilter(ForwardFilter):
    """One ``RequestMirror`` filter of a rule: where copies go, and how often."""

    __slots__ = ("balancer", "counters", "denominator", "numerator", "single", "timeout")

    def __init__(
        self,
        single: Endpoint | None,
        balancer: Balancer,
        numerator: int,
        denominator: int,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.single = single  # the target's only endpoint, else its balancer picks
        self.balancer = balancer
        self.numerator = numerator
        self.denominator = denominator
        self.timeout = timeout
        self.counters = MirrorCounters()

    def on_forward(self, ctx: FilterContext, wire_head: bytes) -> BodyTap | None:
        numerator = self.numerator
        if numerator < self.denominator and not sample(numerator, self.denominator, random()):
            return None
        ep = self.single or self.balancer.pick(NO_KEY, ctx.started)
        if ep is None:
            return None
        return Mirror(ep.pool, ctx.loop, wire_head, timeout=self.timeout, counters=self.counters)
