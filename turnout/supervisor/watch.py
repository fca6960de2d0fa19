"""Hot reload from files: watch exactly the configuration's paths, and never miss a change.

The order is what makes it race-free: a watch is **armed before** the configuration is
read, so a change made at any moment after the read (during start-up, during a reload)
is an event on an armed watch. ``Supervisor.start`` calls ``ConfigWatcher.arm`` before
its first read; ``run`` then waits for changes, and on a relevant one closes the watch,
arms a new one over the paths as they are now (a file replaced by a rename is a new
inode; a manifest created in a ``-f`` directory needs a watch of its own) and only then
re-reads. A change between the old watch's event and the new watch's arming is covered
by that re-read, which comes after the arming.

What is watched and what counts is the source's business (``watch_paths``,
``is_relevant``); the filtering runs in the watch thread, so files written beside the
configuration (an access log, a data directory) neither wake the supervisor's loop nor
log anything. A failure to arm (a path removed meanwhile) is retried every second.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from turnout.config.sources import ConfigSource

log = logging.getLogger("turnout.supervisor")
REARM_RETRY_SECONDS = 1.0
DEBOUNCE_MS = 300  # editors write a file in several steps; one reload for all of them
STEP_MS = 50

Relevant = Callable[[Path], bool]


class Watch(Protocol):
    """One armed watch over a fixed list of paths: events are kept from the moment it
    exists (its constructor arms it) until ``next`` hands them over."""

    async def next(self, relevant: Relevant) -> list[Path] | None:
        """The next batch of relevant changed paths; ``None`` once closed."""
        ...

    def close(self) -> None: ...


Arm = Callable[[list[Path]], Watch]


class NotifyWatch:
    """A ``Watch`` over the OS's notifications (inotify, FSEvents, ...) via watchfiles'
    Rust backend, used directly because it arms synchronously in its constructor
    (``awatch`` arms at some later point, which could not be ordered before a read)."""

    def __init__(self, paths: list[Path]) -> None:
        from watchfiles._rust_notify import RustNotify

        if not paths:
            raise FileNotFoundError("nothing to watch")
        # As watchfiles does: WATCHFILES_FORCE_POLLING for file systems without notifications
        # (network mounts, some container volumes).
        polling = os.environ.get("WATCHFILES_FORCE_POLLING", "").lower()
        force = polling not in ("", "false", "disable", "disabled")
        self._notify = RustNotify([str(p) for p in paths], False, force, 300, False, False)
        self._stop = threading.Event()
        # The Rust watch cannot be closed while a thread waits in it: whoever comes last
        # (``close`` or the returning thread) closes it, decided under this lock.
        self._lock = threading.Lock()
        self._in_thread = False
        self._closed = False

    async def next(self, relevant: Relevant) -> list[Path] | None:
        with self._lock:
            if self._stop.is_set():
                return None
            self._in_thread = True
        try:
            return await asyncio.to_thread(self._wait, relevant)
        except asyncio.CancelledError:
            self._stop.set()  # the thread returns within STEP_MS and closes the watch
            raise

    def _wait(self, relevant: Relevant) -> list[Path] | None:
        try:
            while True:
                changes = self._notify.watch(DEBOUNCE_MS, STEP_MS, 0, self._stop)
                if isinstance(changes, str):  # "stop" (or "signal", "timeout": never asked for)
                    return None
                found = sorted({Path(p) for _, p in changes if relevant(Path(p))})
                if found:
                    return found
        finally:
            with self._lock:
                self._in_thread = False
                if self._stop.is_set():
                    self._close_locked()

    def close(self) -> None:
        with self._lock:
            self._stop.set()
            if not self._in_thread:
                self._close_locked()

    def _close_locked(self) -> None:
        if not self._closed:
            self._closed = True
            self._notify.close()


class ConfigWatcher:
    def __init__(
        self, source: ConfigSource, arm: Arm = NotifyWatch, retry: float = REARM_RETRY_SECONDS
    ) -> None:
        self.source = source
        self._arm = arm
        self._retry = retry
        self._watch: Watch | None = None
        self._stopped = False
        self._failing = False  # warned about a failure to watch; quiet until it works

    def arm(self) -> bool:
        """Watch the configuration's paths as they are now; call it *before* reading them.
        ``False`` if that failed (``run`` retries, and re-reads once armed)."""
        try:
            self._watch = self._arm(self.source.watch_paths())
        except FileNotFoundError as exc:  # mid-save or mid-swap: normal, and brief
            log.debug("cannot watch %s yet: %s", self.source.name, exc)
        except (OSError, RuntimeError) as exc:  # e.g. the OS limit on watches
            self._warn(f"cannot watch {self.source.name} for changes ({exc})")
        else:
            if self._failing:
                log.info("watching %s for changes again", self.source.name)
                self._failing = False
            return True
        self._watch = None
        return False

    def _warn(self, message: str) -> None:
        if not self._failing:
            log.warning("%s; retrying every %gs (SIGHUP reloads)", message, self._retry)
            self._failing = True

    async def run(self, reread: Callable[[], Awaitable[object]]) -> None:
        """Until ``stop``: wait for a relevant change, re-arm, then ``reread``."""
        while not self._stopped:
            if self._watch is None:
                if not self.arm():
                    await asyncio.sleep(self._retry)
                    continue
                await reread()  # after arming: whatever changed before is read now
                continue
            try:
                changed = await self._watch.next(self.source.is_relevant)
            except (OSError, RuntimeError) as exc:
                self._warn(f"watching {self.source.name} failed ({exc})")
                self._watch.close()
                self._watch = None
                await asyncio.sleep(self._retry)
                continue
            if changed is None:
                return
            log.debug("configuration files changed: %s", ", ".join(map(str, changed)))
            self._watch.close()
            self._watch = None

    def stop(self) -> None:
        self._stopped = True
        if self._watch is not None:
            self._watch.close()
