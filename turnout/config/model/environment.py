"""The ``Environment`` kind (turnout.dev, cluster-scoped): a named set of namespaces whose
Releases share one release queue, with blackout windows and the environment a finished
release is promoted to next.

A Release belongs to the Environment that lists its namespace. Within an environment at
most one release per released Backend is live; the others wait in the queue in priority
order (``Release.spec.priority``, then first queued). During a blackout window (a cron
expression that opens it plus a ``duration``, or weekdays with a ``from``/``to`` time of
day, both read in ``timeZone``) queued releases do not start and live ones hold at their
step, unless bypassed (``turnout release bypass``). ``next`` names the Environment a
release that reaches ``Promoted`` is copied to (same spec). The queue's pause lives in an
annotation, like a release's state (``control.releases.queue``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import AfterValidator, Field, StrictStr, model_validator

from turnout.config.model.base import Duration, ObjectMeta, ObjectName, Spec

# The queue's pause (JSON: paused, by, reason, at), written by the queue commands.
QUEUE_ANNOTATION = "turnout.dev/queue-state"
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")


def _cron(v: str) -> str:
    if not croniter.is_valid(v):
        raise ValueError(
            f"{v!r} is not a cron expression (5 fields: minute hour day month weekday)"
        )
    return v


def _zone(v: str) -> str:
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{v!r} is not an IANA time zone (e.g. Europe/Berlin, UTC)") from None
    return v


def _time_of_day(v: str) -> str:
    if not _TIME.match(v):
        raise ValueError(f"{v!r} is not a time of day HH:MM (00:00 to 24:00)")
    return v


Cron = Annotated[StrictStr, AfterValidator(_cron)]
TimeZone = Annotated[StrictStr, AfterValidator(_zone)]
TimeOfDay = Annotated[StrictStr, AfterValidator(_time_of_day)]
Weekday = Literal["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


class BlackoutSpec(Spec):
    """A window in which releases do not move: ``cron`` + ``duration`` (opens at each cron
    time, lasts ``duration``), or ``days`` with ``from``/``to`` (a ``to`` not after
    ``from`` runs past midnight into the next day)."""

    name: ObjectName
    cron: Cron | None = None
    duration: Duration | None = None
    days: tuple[Weekday, ...] = Field(default=(), max_length=7)
    from_: TimeOfDay | None = Field(default=None, alias="from")
    to: TimeOfDay | None = None

    @model_validator(mode="after")
    def _one(self) -> BlackoutSpec:
        by_cron = self.cron is not None or self.duration is not None
        by_days = bool(self.days) or self.from_ is not None or self.to is not None
        if by_cron == by_days:
            raise ValueError("give either 'cron' and 'duration' or 'days' (with 'from'/'to')")
        if by_cron and (self.cron is None or self.duration is None):
            raise ValueError("'cron' needs 'duration' (how long the window stays open)")
        if by_days and not self.days:
            raise ValueError("'from'/'to' need 'days'")
        return self


class EnvironmentSpec(Spec):
    namespaces: tuple[ObjectName, ...] = Field(min_length=1, max_length=256)
    time_zone: TimeZone = "UTC"
    blackouts: tuple[BlackoutSpec, ...] = Field(default=(), max_length=64)
    next: ObjectName | None = None
    description: Annotated[StrictStr, Field(max_length=1024)] | None = None


class EnvironmentObject(Spec):
    api_version: Literal["turnout.dev/v1alpha1"]
    kind: Literal["Environment"]
    metadata: ObjectMeta
    spec: EnvironmentSpec
    status: dict[str, Any] | None = None
