"""The Alertmanager webhook payload (``version: "4"``) and what the intake keeps of it.

Each alert becomes an ``AlertRecord`` keyed by its delivery key, the sha256 of
(groupKey, fingerprint, status, startsAt): HA pairs and retry storms deliver the same key
again and only bump a counter. An alert is refused as stale when it started longer ago
than ``max_age`` (firing) or ended longer ago than that (resolved), or starts in the
future beyond the allowed clock skew: acting on it now would act on a world that changed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr
from pydantic.alias_generators import to_camel

from turnout.control.store.remediation_records import AlertRecord

CLOCK_SKEW = timedelta(minutes=5)
DEFAULT_MAX_AGE = timedelta(hours=1)
# Alertmanager's zero time for "not ended yet"
_UNSET_YEAR = 1


class _Model(BaseModel):
    # Alertmanager may add fields (it did in v0.21 and v0.34): ignore what we do not use.
    model_config = ConfigDict(extra="ignore", alias_generator=to_camel, validate_by_alias=True)


class WebhookAlert(_Model):
    status: Literal["firing", "resolved"]
    labels: dict[StrictStr, StrictStr]
    annotations: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    starts_at: datetime
    ends_at: datetime | None = None
    generator_url: StrictStr = Field(default="", alias="generatorURL")
    fingerprint: Annotated[StrictStr, Field(min_length=1, max_length=253)]


class WebhookPayload(_Model):
    version: Literal["4"]
    group_key: Annotated[StrictStr, Field(max_length=8192)]
    truncated_alerts: int = 0
    status: Literal["firing", "resolved"]
    receiver: StrictStr = ""
    alerts: list[WebhookAlert] = Field(max_length=10_000)


@dataclass(frozen=True, slots=True)
class Refusal:
    fingerprint: str
    reason: str


def delivery_key(group_key: str, fingerprint: str, status: str, starts_at: datetime) -> str:
    raw = "\x1f".join((group_key, fingerprint, status, starts_at.isoformat()))
    return hashlib.sha256(raw.encode()).hexdigest()


def stale_reason(alert: WebhookAlert, now: datetime, max_age: timedelta) -> str | None:
    if alert.starts_at.tzinfo is None:
        return "startsAt has no time zone"
    if alert.starts_at > now + CLOCK_SKEW:
        return f"startsAt {alert.starts_at.isoformat()} is in the future"
    if alert.status == "firing" and alert.starts_at < now - max_age:
        return f"firing since {alert.starts_at.isoformat()}, longer than {max_age} ago"
    ended = alert.ends_at
    if (
        alert.status == "resolved"
        and ended is not None
        and ended.year > _UNSET_YEAR
        and ended.tzinfo is not None
        and ended < now - max_age
    ):
        return f"resolved at {ended.isoformat()}, longer than {max_age} ago"
    return None


def records(
    payload: WebhookPayload, now: datetime, max_age: timedelta = DEFAULT_MAX_AGE
) -> tuple[list[AlertRecord], list[Refusal]]:
    """The alerts to store and the ones refused as stale."""
    kept: list[AlertRecord] = []
    refused: list[Refusal] = []
    for alert in payload.alerts:
        reason = stale_reason(alert, now, max_age)
        if reason is not None:
            refused.append(Refusal(alert.fingerprint, reason))
            continue
        ends = alert.ends_at if alert.ends_at and alert.ends_at.year > _UNSET_YEAR else None
        kept.append(
            AlertRecord(
                dedup_key=delivery_key(
                    payload.group_key, alert.fingerprint, alert.status, alert.starts_at
                ),
                group_key=payload.group_key,
                fingerprint=alert.fingerprint,
                status=alert.status,
                alertname=alert.labels.get("alertname", ""),
                labels=dict(alert.labels),
                annotations=dict(alert.annotations),
                starts_at=alert.starts_at,
                ends_at=ends,
            )
        )
    return kept, refused
