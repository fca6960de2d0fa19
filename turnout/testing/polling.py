"""Waiting in tests for something that happens in another process or thread.

``wait_until(check, timeout, what)`` calls ``check`` until it returns something truthy and
returns that, or fails the test with what it was waiting for; ``eventually(check,
timeout)`` answers True or False instead, for ``assert eventually(...)``. Both check once
more at the deadline, so a slow machine that got there just in time passes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

INTERVAL = 0.05  # seconds between checks: quick to notice, cheap for the machine


def wait_until(
    check: Callable[[], T], timeout: float, what: str = "", *, interval: float = INTERVAL
) -> T:
    """Return the first truthy value of ``check()``; raise ``AssertionError`` naming
    ``what`` if there is none within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")
        time.sleep(interval)


def eventually(check: Callable[[], object], timeout: float, *, interval: float = INTERVAL) -> bool:
    """Whether ``check()`` became truthy within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return bool(check())
