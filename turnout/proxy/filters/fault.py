"""Fault injection (Envoy Gateway ``faultInjection``): delay and/or abort some requests.

A ``FaultInjector`` is compiled once per route rule at snapshot build from plain values:
a fixed delay and the percentage of requests it applies to, an abort status and its
percentage, and Turnout's optional header condition (only requests carrying *all* the
listed ``name: value`` pairs are eligible; names lowercase, values compared exactly with
``RequestHead.get(name)``, i.e. repeated headers joined by ","). Envoy Gateway's
defaults are the caller's: an omitted ``percentage`` means 100.

``decide(head, rand_delay, rand_abort)`` is pure: the caller draws the two uniform
numbers in [0, 1) (``random.random()``), so tests are deterministic and the injector
holds no state. Delay and abort are rolled independently, as in Envoy; when both hit, the
request is delayed and then aborted. The dice are compared first (two float compares),
so the common no-fault path never reads a header. Nothing is allocated per call:
interpreted, the answers are the shared ``NO_FAULT`` and three tuples built in the
constructor; compiled (mypyc), a ``tuple[float, int]`` goes back to a native caller
unboxed (a Python caller gets a fresh tuple, so compare answers by value).

The exchange applies the answer: wait ``delay`` seconds (a ``loop.call_later`` handle,
request body buffered meanwhile, the request timeout still running), then answer
``abort`` locally (``ABORT_CODE`` / ``ABORT_MESSAGE``, like Envoy's "fault filter abort")
or forward the request.
"""

from __future__ import annotations

from random import random
from typing import Final

from turnout.proxy.filters.base import (
    FilterContext,
    LocalReply,
    RequestFilter,
    Suspend,
    Verdict,
)
from turnout.proxy.protocols.heads import RequestHead

NO_FAULT: Final[tuple[float, int]] = (0.0, 0)
ABORT_CODE: Final = b"fault_abort"
ABORT_MESSAGE: Final = b"fault filter abort"


class FaultInjector:
    __slots__ = (
        "abort_only",
        "abort_status",
        "abort_threshold",
        "both",
        "delay",
        "delay_only",
        "delay_threshold",
        "headers",
    )

    def __init__(
        self,
        delay: float,
        delay_percent: float,
        abort_status: int,
        abort_percent: float,
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        if not delay >= 0.0:  # also rejects NaN
            raise ValueError(f"fault delay must be >= 0, not {delay!r}")
        for percent in (delay_percent, abort_percent):
            if not 0.0 <= percent <= 100.0:
                raise ValueError(f"fault percentage must be within 0..100, not {percent!r}")
        if abort_status and not 200 <= abort_status <= 599:
            raise ValueError(f"fault abort status must be within 200..599, not {abort_status}")
        for name, _ in headers:
            if name != name.lower():
                raise ValueError(f"fault header name {name!r} must be lowercase")
        self.delay = delay
        self.abort_status = abort_status
        self.headers = headers
        # rand < threshold hits; 0.0 never does (rand >= 0), 1.0 always does (rand < 1).
        self.delay_threshold = delay_percent / 100.0 if delay > 0.0 else 0.0
        self.abort_threshold = abort_percent / 100.0 if abort_status else 0.0
        self.delay_only: tuple[float, int] = (delay, 0)
        self.abort_only: tuple[float, int] = (0.0, abort_status)
        self.both: tuple[float, int] = (delay, abort_status)

    @property
    def active(self) -> bool:
        """Whether any request can be faulted (a spec with 0 % everywhere cannot)."""
        return self.delay_threshold > 0.0 or self.abort_threshold > 0.0

    def decide(self, head: RequestHead, rand_delay: float, rand_abort: float) -> tuple[float, int]:
        """``(delay seconds or 0.0, abort status or 0)`` for this request."""
        delayed = rand_delay < self.delay_threshold
        aborted = rand_abort < self.abort_threshold
        if not (delayed or aborted):
            return NO_FAULT
        headers = self.headers
        if headers:
            for name, value in headers:
                if head.get(name) != value:
                    return NO_FAULT
        if delayed:
            return self.both if aborted else self.delay_only
        return self.abort_only

    def __repr__(self) -> str:
        return (
            f"<FaultInjector delay={self.delay}s@{self.delay_threshold:.2%}"
            f" abort={self.abort_status}@{self.abort_threshold:.2%}>"
        )


class FaultFilter(RequestFilter):
    """Fault injection as a request filter: a delay suspends the request (a timer, its
    body buffered, the request timeout still running); an abort answers locally."""

    __slots__ = ("injector",)

    def __init__(self, injector: FaultInjector) -> None:
        self.injector = injector

    def on_request(self, ctx: FilterContext) -> Verdict:
        delay, abort = self.injector.decide(ctx.head, random(), random())
        if delay:
            return Suspend(delay=delay, token=abort)
        if abort:
            return _abort(abort)
        return None

    def resume(self, ctx: FilterContext, outcome: object) -> Verdict:
        if isinstance(outcome, int) and outcome:
            return _abort(outcome)
        return None


def _abort(status: int) -> LocalReply:
    return LocalReply(status, ABORT_CODE, b"aborted by fault injection")
