"""``ConfigWatcher``: a watch is armed before every read, so no change can fall between a
read and the watch that would report it; irrelevant changes never cause a re-read."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from pathlib import Path

import pytest

from turnout.config.configset import ConfigSet
from turnout.config.problems import Problem
from turnout.supervisor.watch import ConfigWatcher, Relevant

CONFIG = Path("/etc/turnout/gateway.yaml")
BESIDE = Path("/etc/turnout/access.log")


class FakeSource:
    """A source whose reads are recorded in the shared journal."""

    name = "fake"

    def __init__(self, journal: list[str]) -> None:
        self.journal = journal

    def load(self) -> tuple[ConfigSet, list[Problem]]:
        self.journal.append("read")
        return ConfigSet(), []

    def watch_paths(self) -> list[Path]:
        return [CONFIG]

    def is_relevant(self, changed: Path) -> bool:
        return changed == CONFIG


class FakeEvents:
    """Batches of changes, each delivered to whichever watch is armed when it comes due.
    A batch "happens" when a watch asks for it; a watch armed later does not see it."""

    def __init__(self, journal: list[str], batches: list[list[Path]]) -> None:
        self.journal = journal
        self.batches = deque(batches)
        self.watcher: ConfigWatcher | None = None

    def arm(self, paths: list[Path]) -> FakeWatch:
        self.journal.append("arm")
        return FakeWatch(self)


class FakeWatch:
    def __init__(self, events: FakeEvents) -> None:
        self.events = events
        self.closed = False

    async def next(self, relevant: Relevant) -> list[Path] | None:
        while not self.closed:
            if not self.events.batches:
                assert self.events.watcher is not None
                self.events.watcher.stop()  # the script is over
                return None
            batch = self.events.batches.popleft()
            self.events.journal.append("change " + ",".join(p.name for p in batch))
            found = [p for p in batch if relevant(p)]
            if found:
                return found
        return None

    def close(self) -> None:
        self.closed = True
        self.events.journal.append("close")


def _run(batches: list[list[Path]], arm_first: bool = True) -> list[str]:
    journal: list[str] = []
    source = FakeSource(journal)
    events = FakeEvents(journal, batches)
    watcher = ConfigWatcher(source, events.arm)
    events.watcher = watcher

    async def reread() -> None:
        source.load()

    async def main() -> None:
        if arm_first:
            watcher.arm()
        source.load()  # the supervisor's first read, as in ``Supervisor.start``
        await watcher.run(reread)

    asyncio.run(main())
    return journal


def test_a_change_during_start_up_is_read_after_a_new_watch_is_armed() -> None:
    journal = _run([[CONFIG]])
    assert journal == ["arm", "read", "change gateway.yaml", "close", "arm", "read", "close"]


def test_every_read_follows_an_arming() -> None:
    journal = _run([[CONFIG], [BESIDE], [CONFIG, BESIDE], [CONFIG]])
    reads = [i for i, entry in enumerate(journal) if entry == "read"]
    assert len(reads) == 4
    for i in reads:
        assert journal[i - 1] == "arm", journal


def test_changes_beside_the_configuration_are_ignored() -> None:
    journal = _run([[BESIDE], [BESIDE], [BESIDE]])
    assert journal.count("read") == 1
    assert journal.count("arm") == 1


def test_a_watch_that_cannot_be_armed_at_start_is_armed_by_run_then_read() -> None:
    journal = _run([], arm_first=False)
    assert journal == ["read", "arm", "read", "close"]


def test_arming_failures_are_retried_then_the_files_are_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    journal: list[str] = []
    source = FakeSource(journal)
    events = FakeEvents(journal, [])
    failures: list[Exception] = [
        OSError(28, "OS file watch limit reached"),
        OSError(28, "OS file watch limit reached"),
        FileNotFoundError("gateway.yaml"),
    ]

    def arm(paths: list[Path]) -> FakeWatch:
        if failures:
            journal.append("arm failed")
            raise failures.pop(0)
        return events.arm(paths)

    watcher = ConfigWatcher(source, arm, retry=0)
    events.watcher = watcher

    async def reread() -> None:
        source.load()

    async def main() -> None:
        assert not watcher.arm()
        source.load()
        await watcher.run(reread)

    with caplog.at_level(logging.DEBUG, "turnout"):
        asyncio.run(main())
    assert journal == ["arm failed", "read", "arm failed", "arm failed", "arm", "read", "close"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "cannot watch fake for changes ([Errno 28] OS file watch limit reached); "
        "retrying every 0s (SIGHUP reloads)"
    ]
    assert "watching fake for changes again" in caplog.messages


def test_a_failing_watch_is_replaced_and_the_files_read_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    journal: list[str] = []
    source = FakeSource(journal)
    events = FakeEvents(journal, [])
    broken = [True]

    class BrokenWatch(FakeWatch):
        async def next(self, relevant: Relevant) -> list[Path] | None:
            if broken:
                broken.pop()
                raise RuntimeError("watcher thread died")
            return await super().next(relevant)

    def arm(paths: list[Path]) -> FakeWatch:
        journal.append("arm")
        return BrokenWatch(events)

    watcher = ConfigWatcher(source, arm, retry=0)
    events.watcher = watcher

    async def reread() -> None:
        source.load()

    async def main() -> None:
        watcher.arm()
        source.load()
        await watcher.run(reread)

    asyncio.run(main())
    assert journal == ["arm", "read", "close", "arm", "read", "close"]
    assert any("watcher thread died" in m for m in caplog.messages)
