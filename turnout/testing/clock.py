"""``FakeClock``: a ``turnout.core.clock.Clock`` that moves only when a test moves it."""

from __future__ import annotations

from datetime import UTC, datetime


class FakeClock:
    """Wall and monotonic time that advance together, by hand (``advance``/``set``)."""

    __slots__ = ("_mono", "_wall")

    def __init__(self, wall: float | datetime = 1_800_000_000.0, monotonic: float = 1000.0) -> None:
        self._wall = wall.timestamp() if isinstance(wall, datetime) else float(wall)
        self._mono = float(monotonic)

    def time(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._wall, UTC)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self._wall += seconds
        self._mono += seconds

    def set(self, wall: float | datetime) -> None:
        """Move wall time forward to ``wall`` (monotonic time follows)."""
        target = wall.timestamp() if isinstance(wall, datetime) else float(wall)
        if target < self._wall:
            raise ValueError("a clock does not go backwards")
        self._mono += target - self._wall
        self._wall = target  # exactly: deadlines compare equal
