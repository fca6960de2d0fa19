"""A fake event loop with a hand-driven clock, timers and tasks you resolve yourself.

``FakeLoop`` implements what the data plane asks of a loop per request: ``time``,
``call_soon``, ``call_later``, ``call_at`` and ``create_task``. Nothing runs on its own:

* ``advance(seconds)`` moves the clock, firing due timers in order (and the callbacks
  they schedule), so "the request timer fires during the retry back-off" is two lines.
* ``create_task`` returns a ``FakeTask`` that never runs its coroutine (it is closed when
  the task ends): the test decides the outcome with ``set_result``/``set_exception``, or
  sees it cancelled. Done callbacks run, as in asyncio, on the next ``run_ready``
  (``advance`` and the harness helpers call it).

Typed loosely on purpose: pass it where an ``asyncio.AbstractEventLoop`` is expected
(``typing.cast``); anything else the code under test calls fails loudly.
"""

from __future__ import annotations

import asyncio
import heapq
from collections import deque
from collections.abc import Callable, Coroutine
from itertools import count
from typing import Any

_PENDING = 0
_DONE = 1
_CANCELLED = 2


class FakeTimer:
    """What ``call_later`` returns (an ``asyncio.TimerHandle`` look-alike)."""

    __slots__ = ("_args", "_callback", "_cancelled", "_when")

    def __init__(self, when: float, callback: Callable[..., object], args: tuple[Any, ...]) -> None:
        self._when = when
        self._callback = callback
        self._args = args
        self._cancelled = False

    def when(self) -> float:
        return self._when

    def cancel(self) -> None:
        self._cancelled = True

    def cancelled(self) -> bool:
        return self._cancelled

    def _run(self) -> None:
        if not self._cancelled:
            self._cancelled = True  # a handle runs once
            self._callback(*self._args)

    def __repr__(self) -> str:
        state = " cancelled" if self._cancelled else ""
        return f"<FakeTimer at {self._when:.3f} {self._callback!r}{state}>"


class FakeTask:
    """A task whose outcome the test sets; its coroutine never runs."""

    def __init__(self, loop: FakeLoop, coro: Coroutine[Any, Any, Any], name: str | None) -> None:
        self.loop = loop
        self.coro = coro
        self.name = name or f"FakeTask-{id(self):x}"
        self._state = _PENDING
        self._result: object = None
        self._exception: BaseException | None = None
        self._callbacks: list[Callable[[FakeTask], object]] = []

    # -- the asyncio.Task surface ------------------------------------------------------------

    def get_name(self) -> str:
        return self.name

    def done(self) -> bool:
        return self._state != _PENDING

    def cancelled(self) -> bool:
        return self._state == _CANCELLED

    def cancel(self, msg: object = None) -> bool:
        if self._state != _PENDING:
            return False
        self._state = _CANCELLED
        self._ended()
        return True

    def result(self) -> Any:
        if self._state == _CANCELLED:
            raise asyncio.CancelledError
        if self._state == _PENDING:
            raise asyncio.InvalidStateError("result is not set")
        if self._exception is not None:
            raise self._exception
        return self._result

    def exception(self) -> BaseException | None:
        if self._state == _CANCELLED:
            raise asyncio.CancelledError
        if self._state == _PENDING:
            raise asyncio.InvalidStateError("exception is not set")
        return self._exception

    def add_done_callback(self, fn: Callable[[FakeTask], object], **_: Any) -> None:
        if self._state != _PENDING:
            self.loop.call_soon(fn, self)
        else:
            self._callbacks.append(fn)

    def remove_done_callback(self, fn: Callable[[FakeTask], object]) -> int:
        before = len(self._callbacks)
        self._callbacks = [cb for cb in self._callbacks if cb != fn]
        return before - len(self._callbacks)

    # -- driven by the test ------------------------------------------------------------------

    def set_result(self, value: object) -> None:
        """Finish the task with ``value`` (its done callbacks run on ``run_ready``)."""
        self._check_pending()
        self._result = value
        self._state = _DONE
        self._ended()

    def set_exception(self, exc: BaseException) -> None:
        self._check_pending()
        self._exception = exc
        self._state = _DONE
        self._ended()

    def _check_pending(self) -> None:
        if self._state != _PENDING:
            raise asyncio.InvalidStateError(f"{self!r} has ended already")

    def _ended(self) -> None:
        self.coro.close()  # never ran: closing it avoids "never awaited" warnings
        callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            self.loop.call_soon(fn, self)

    def __repr__(self) -> str:
        state = ("pending", "done", "cancelled")[self._state]
        return f"<FakeTask {self.name} {state}>"


class FakeLoop:
    """The clock starts at ``start`` and moves only with ``advance``."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._timers: list[tuple[float, int, FakeTimer]] = []
        self._order = count()
        self._ready: deque[FakeTimer] = deque()
        self.tasks: list[FakeTask] = []

    # -- the loop surface ---------------------------------------------------------------------

    def time(self) -> float:
        return self.now

    def get_debug(self) -> bool:
        return False

    def call_soon(self, callback: Callable[..., object], *args: Any, **_: Any) -> FakeTimer:
        handle = FakeTimer(self.now, callback, args)
        self._ready.append(handle)
        return handle

    def call_at(
        self, when: float, callback: Callable[..., object], *args: Any, **_: Any
    ) -> FakeTimer:
        handle = FakeTimer(when, callback, args)
        heapq.heappush(self._timers, (when, next(self._order), handle))
        return handle

    def call_later(
        self, delay: float, callback: Callable[..., object], *args: Any, **_: Any
    ) -> FakeTimer:
        return self.call_at(self.now + delay, callback, *args)

    def create_task(
        self, coro: Coroutine[Any, Any, Any], *, name: str | None = None, **_: Any
    ) -> FakeTask:
        task = FakeTask(self, coro, name)
        self.tasks.append(task)
        return task

    # -- driven by the test -------------------------------------------------------------------

    def run_ready(self) -> None:
        """Run the callbacks scheduled to run soon (and those they schedule)."""
        ready = self._ready
        while ready:
            ready.popleft()._run()

    def advance(self, seconds: float = 0.0) -> None:
        """Move the clock by ``seconds``, running every timer that falls due, in order."""
        self.run_ready()
        until = self.now + seconds
        timers = self._timers
        while timers and timers[0][0] <= until:
            when, _, handle = heapq.heappop(timers)
            if handle.cancelled():
                continue
            self.now = max(self.now, when)
            handle._run()
            self.run_ready()
        self.now = until

    def pending_tasks(self) -> list[FakeTask]:
        return [t for t in self.tasks if not t.done()]

    def timers(self) -> list[FakeTimer]:
        """Armed timers, soonest first."""
        return [h for _, _, h in sorted(self._timers) if not h.cancelled()]
