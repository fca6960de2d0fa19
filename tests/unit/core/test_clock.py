from __future__ import annotations

from datetime import UTC, datetime

import pytest

from turnout.core.clock import SYSTEM_CLOCK, Clock, utcnow
from turnout.testing.clock import FakeClock


def test_fake_clock_moves_only_when_told() -> None:
    clock: Clock = FakeClock(wall=100.0, monotonic=5.0)
    assert (clock.time(), clock.monotonic()) == (100.0, 5.0)
    assert isinstance(clock, FakeClock)
    clock.advance(2.5)
    assert (clock.time(), clock.monotonic()) == (102.5, 7.5)
    clock.set(datetime.fromtimestamp(110.0, UTC))
    assert (clock.time(), clock.monotonic()) == (110.0, 15.0)
    assert utcnow(clock) == datetime.fromtimestamp(110.0, UTC)
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_system_clock_is_real_time() -> None:
    assert abs(SYSTEM_CLOCK.time() - datetime.now(UTC).timestamp()) < 5
    assert SYSTEM_CLOCK.monotonic() <= SYSTEM_CLOCK.monotonic()
