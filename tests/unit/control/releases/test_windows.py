"""Blackout windows and schedules as functions of wall time (no clock, no sleeps)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from turnout.config.model.environment import EnvironmentSpec
from turnout.config.model.release import ScheduleSpec
from turnout.control.releases.windows import blackout, earliest_start


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def env(*blackouts: dict[str, Any], tz: str = "UTC") -> EnvironmentSpec:
    return EnvironmentSpec.model_validate(
        {"namespaces": ["prod"], "timeZone": tz, "blackouts": list(blackouts)}
    )


def test_a_cron_window_is_open_from_its_cron_time_for_its_duration() -> None:
    spec = env({"name": "nightly", "cron": "0 22 * * *", "duration": "8h"})
    assert blackout(spec, at("2027-01-15T21:59:59+00:00")) is None
    opened = blackout(spec, at("2027-01-15T22:00:00+00:00"))
    assert opened is not None and opened.name == "nightly"
    assert opened.until == at("2027-01-16T06:00:00+00:00")
    assert blackout(spec, at("2027-01-16T05:59:00+00:00")) is not None  # past midnight
    assert blackout(spec, at("2027-01-16T06:00:00+00:00")) is None
    assert "until 2027-01-16 06:00 UTC" in opened.describe()


def test_a_weekday_window_in_a_time_zone_and_past_midnight() -> None:
    # Friday 18:00 to 02:00 Berlin time (UTC+1 in January)
    spec = env(
        {"name": "friday", "days": ["Fri"], "from": "18:00", "to": "02:00"}, tz="Europe/Berlin"
    )
    assert blackout(spec, at("2027-01-15T16:59:00+00:00")) is None  # 17:59 Berlin
    found = blackout(spec, at("2027-01-15T17:00:00+00:00"))
    assert found is not None and found.until == at("2027-01-16T01:00:00+00:00")
    assert blackout(spec, at("2027-01-16T00:30:00+00:00")) is not None  # Sat 01:30 Berlin
    assert blackout(spec, at("2027-01-16T01:00:00+00:00")) is None
    weekend = env({"name": "weekend", "days": ["Sat", "Sun"]})
    sat = blackout(weekend, at("2027-01-16T12:00:00+00:00"))
    assert sat is not None and sat.until == at("2027-01-17T00:00:00+00:00")
    assert blackout(weekend, at("2027-01-15T12:00:00+00:00")) is None


def test_the_longest_open_window_wins() -> None:
    spec = env(
        {"name": "short", "cron": "0 * * * *", "duration": "10m"},
        {"name": "all-day", "days": ["Fri"]},
    )
    found = blackout(spec, at("2027-01-15T08:05:00+00:00"))
    assert found is not None and found.name == "all-day"


@pytest.mark.parametrize(
    "window, word",
    [
        ({"name": "x", "cron": "61 * * * *", "duration": "1h"}, "cron"),
        ({"name": "x", "cron": "0 * * * *"}, "duration"),
        ({"name": "x", "days": ["Fri"], "from": "25:00"}, "time of day"),
        ({"name": "x", "days": ["Friday"]}, "Fri"),
        ({"name": "x", "from": "10:00"}, "days"),
        ({"name": "x", "days": ["Fri"], "cron": "0 * * * *", "duration": "1h"}, "either"),
    ],
)
def test_bad_windows_say_what_is_wrong(window: dict[str, Any], word: str) -> None:
    with pytest.raises(ValidationError, match=word):
        env(window)
    with pytest.raises(ValidationError, match="time zone"):
        env(tz="Mars/Olympus")


def test_schedules() -> None:
    queued = at("2027-01-15T08:00:00+00:00")
    assert earliest_start(None, queued) == queued
    nb = ScheduleSpec.model_validate({"notBefore": "2027-01-15T12:00:00+00:00"})
    assert earliest_start(nb, queued) == at("2027-01-15T12:00:00+00:00")
    assert earliest_start(nb, at("2027-01-15T13:00:00+00:00")) == at("2027-01-15T13:00:00+00:00")
    cron = ScheduleSpec.model_validate({"cron": "30 9 * * 1-5", "timeZone": "Europe/Berlin"})
    assert earliest_start(cron, queued) == at("2027-01-15T08:30:00+00:00")  # 09:30 Berlin
    both = ScheduleSpec.model_validate({"cron": "0 6 * * *", "notBefore": "2027-01-16T00:00:00Z"})
    assert earliest_start(both, queued) == at("2027-01-16T06:00:00+00:00")
    assert datetime.fromtimestamp(queued, UTC).weekday() == 4  # the tests assume a Friday
