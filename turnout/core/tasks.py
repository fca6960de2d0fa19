"""Spawning background tasks that cannot be garbage-collected mid-run.

The event loop keeps only a weak reference to a task, so a ``create_task`` whose result
is dropped can vanish while it runs (the asyncio documentation's warning). ``spawn``
keeps a strong reference until the task ends, in the caller's set or in a module-wide
one, and logs an exception nobody will ever retrieve. Every task in the package starts
here: a static test (tests/test_static.py) refuses ``create_task`` anywhere else.

This is the one module of ``core`` that imports ``asyncio`` (DESIGN §5 puts task
spawning in ``core``, so that ``samples`` and ``tunnel`` can use it too); the sans-IO
contracts name it as their only exception.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

log = logging.getLogger("turnout.tasks")

# Tasks spawned without an owner set: held here until they finish.
_RUNNING: set[asyncio.Task[Any]] = set()


def spawn(
    coro: Coroutine[Any, Any, T],
    *,
    loop: asyncio.AbstractEventLoop | None = None,
    keep: set[asyncio.Task[Any]] | None = None,
    name: str | None = None,
) -> asyncio.Task[T]:
    """Start ``coro`` as a task on ``loop`` (the running loop by default) and keep a
    reference in ``keep`` (or a module-wide set) until it is done."""
    if loop is None:
        loop = asyncio.get_running_loop()
    task = loop.create_task(coro, name=name)
    owner = _RUNNING if keep is None else keep
    owner.add(task)
    task.add_done_callback(owner.discard)
    if keep is None:
        task.add_done_callback(_report)
    return task


def _report(task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error("background task %s failed: %r", task.get_name(), exc, exc_info=exc)


def running() -> int:
    """How many owner-less spawned tasks are still running (for tests and drain)."""
    return len(_RUNNING)
