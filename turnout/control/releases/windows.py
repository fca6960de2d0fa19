"""Blackout windows and release schedules as pure functions of wall time.

``blackout`` says whether an Environment is in one of its blackout windows at ``now``
and until when: a cron window is open from its latest cron time (``croniter.get_prev``
in the environment's time zone) for ``duration``; a weekday window is open on its days
from ``from`` to ``to`` (local time; a ``to`` not after ``from`` ends the next day, so
the day before is looked at too). ``earliest_start`` is a scheduled release's first
allowed start. Both take epoch seconds so the reconciler can run them on a fake clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

from turnout.config.model.environment import WEEKDAYS, BlackoutSpec, EnvironmentSpec
from turnout.config.model.release import ScheduleSpec
from turnout.core.durations import parse_duration


@dataclass(frozen=True, slots=True)
class Blackout:
    name: str
    until: float  # epoch seconds

    def describe(self) -> str:
        when = datetime.fromtimestamp(self.until, ZoneInfo("UTC")).strftime("%Y-%m-%d %H:%M")
        return f"blackout {self.name!r} until {when} UTC"


def _clock(value: str | None, default: str) -> tuple[time, int]:
    """(time of day, extra days): "24:00" is the next day's midnight."""
    hh, mm = (value or default).split(":")
    if hh == "24":
        return time(0, 0), 1
    return time(int(hh), int(mm)), 0


def _at(day: date, value: str | None, default: str, zone: ZoneInfo) -> datetime:
    t, extra = _clock(value, default)
    return datetime.combine(day + timedelta(days=extra), t, tzinfo=zone)


def _window_end(window: BlackoutSpec, now: float, zone: ZoneInfo) -> float | None:
    """When ``window`` closes if it is open at ``now``; None when it is closed."""
    local = datetime.fromtimestamp(now, zone)
    if window.cron is not None:
        assert window.duration is not None
        # +1 s: a window opening exactly now is open (get_prev is strictly before)
        opened = croniter(window.cron, local + timedelta(seconds=1)).get_prev(float)
        closes = opened + parse_duration(window.duration)
        return closes if opened <= now < closes else None
    for back in (1, 0):
        day = local.date() - timedelta(days=back)
        if WEEKDAYS[day.weekday()] not in window.days:
            continue
        start = _at(day, window.from_, "00:00", zone)
        end = _at(day, window.to, "24:00", zone)
        if end <= start:
            end += timedelta(days=1)
        if start.timestamp() <= now < end.timestamp():
            return end.timestamp()
    return None


def blackout(spec: EnvironmentSpec, now: float) -> Blackout | None:
    """The open window that stays open longest, or None."""
    zone = ZoneInfo(spec.time_zone)
    found: Blackout | None = None
    for window in spec.blackouts:
        end = _window_end(window, now, zone)
        if end is not None and (found is None or end > found.until):
            found = Blackout(window.name, end)
    return found


def earliest_start(schedule: ScheduleSpec | None, queued_at: float) -> float:
    """The first moment a release queued at ``queued_at`` may start."""
    if schedule is None:
        return queued_at
    at = queued_at
    if schedule.not_before is not None:
        when = datetime.fromisoformat(schedule.not_before)
        if when.tzinfo is None:
            when = when.replace(tzinfo=ZoneInfo(schedule.time_zone))
        at = max(at, when.timestamp())
    if schedule.cron is not None:  # the first cron time after both
        local = datetime.fromtimestamp(at, ZoneInfo(schedule.time_zone))
        at = max(at, croniter(schedule.cron, local).get_next(float))
    return at
