"""The shared polling helpers, on a fake clock (no real sleeps)."""

from __future__ import annotations

import pytest

from turnout.testing import polling
from turnout.testing.polling import eventually, wait_until


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(polling.time, "monotonic", fake.monotonic)
    monkeypatch.setattr(polling.time, "sleep", fake.sleep)
    return fake


def test_wait_until_returns_the_first_truthy_value(clock: FakeClock) -> None:
    values = iter([0, None, "", {"ready": True}])
    assert wait_until(lambda: next(values), 5, "readiness") == {"ready": True}
    assert clock.sleeps == [polling.INTERVAL] * 3


def test_wait_until_fails_naming_what_it_waited_for(clock: FakeClock) -> None:
    calls = []

    def never() -> bool:
        calls.append(clock.now)
        return False

    with pytest.raises(AssertionError, match=r"timed out after 1\.0s waiting for the reload"):
        wait_until(never, 1.0, "the reload", interval=0.25)
    assert calls[-1] >= 101.0  # checked once more at the deadline
    assert len(calls) == 5


def test_eventually_answers_instead_of_raising(clock: FakeClock) -> None:
    assert eventually(lambda: clock.now >= 100.3, 1.0, interval=0.1)
    assert not eventually(lambda: False, 0.5)
