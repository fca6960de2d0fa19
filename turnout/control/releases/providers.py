"""Analysis metrics read from other systems: Prometheus (an instant query) and a JSON
URL (Argo Rollouts' "web" provider), judged beside the gateway's own counts.

``ExternalMetrics`` keeps, per release run, each metric's last reading and how many
readings in a row were out of range. ``refresh`` reads the metrics that are due (every
``interval``; all due ones concurrently, each within its ``timeout``) and ``judgements``
turns the readings into ``stats.Judgement``: ``pass`` while the value is within [min,
max]; ``fail`` once more than ``failureLimit`` readings in a row were outside;
``inconclusive`` before the first reading, for an empty result (no series, NaN) and for
a provider error (never a failure: an outage of Prometheus must not roll a release
back), with the error in the message. Readings are not persisted: after a restart or a
leader change they start again (like the gateway's own windows, ``tracker.py``).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any

import httpx

from turnout.config.model.release import MetricSpec
from turnout.control.releases.stats import Judgement
from turnout.core.durations import parse_duration


class ProviderError(Exception):
    """The provider did not answer with a usable value (the message says why)."""


@dataclass(slots=True)
class Reading:
    at: float = 0.0  # when it was read (0: never)
    value: float | None = None  # None: no data
    error: str = ""
    outside: int = 0  # readings in a row outside [min, max]


def _number(value: Any, what: str) -> float | None:
    if isinstance(value, bool):
        raise ProviderError(f"{what} is a boolean, not a number")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise ProviderError(f"{what} is {value!r}, not a number") from None
    elif value is None:
        return None
    else:
        raise ProviderError(f"{what} is a {type(value).__name__}, not a number")
    return None if math.isnan(number) else number


def prometheus_value(body: Any) -> float | None:
    """The first sample of an instant query's answer; None when it has none."""
    if not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error") if isinstance(body, dict) else None
        raise ProviderError(f"prometheus: {error or 'not a successful query answer'}")
    data = body.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar" and isinstance(result, list) and len(result) == 2:
        return _number(result[1], "the scalar")
    if kind == "vector" and isinstance(result, list):
        if not result:
            return None
        value = result[0].get("value") if isinstance(result[0], dict) else None
        if not isinstance(value, list) or len(value) != 2:
            raise ProviderError("prometheus: a vector sample without a value")
        return _number(value[1], "the first sample")
    raise ProviderError(f"prometheus: a {kind} result (the query must give a vector or scalar)")


def json_value(body: Any, path: str) -> float | None:
    """The number at dotted ``path`` (list indices as numbers) of a JSON document."""
    value = body
    for part in path.split(".") if path else ():
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise ProviderError(f"web: no {path!r} in the answer")
    return _number(value, f"web: {path or 'the answer'}")


async def read(client: httpx.AsyncClient, metric: MetricSpec) -> float | None:
    timeout = parse_duration(metric.timeout)
    try:
        if metric.prometheus is not None:
            p = metric.prometheus
            url = p.address.rstrip("/") + "/api/v1/query"
            resp = await client.get(url, params={"query": p.query}, timeout=timeout)
            return prometheus_value(resp.json())
        assert metric.web is not None
        resp = await client.get(metric.web.url, timeout=timeout)
        if resp.status_code // 100 != 2:
            raise ProviderError(f"web: {metric.web.url} answered {resp.status_code}")
        return json_value(resp.json(), metric.web.json_path)
    except httpx.HTTPError as exc:
        raise ProviderError(f"{type(exc).__name__}: {exc}") from None
    except ValueError as exc:  # not JSON
        raise ProviderError(f"not JSON: {exc}") from None


class ExternalMetrics:
    """The readings of one release run's external metrics."""

    def __init__(self, run: tuple[int, int]) -> None:
        self.run = run
        self.readings: dict[str, Reading] = {}

    async def refresh(
        self, client: httpx.AsyncClient, metrics: tuple[MetricSpec, ...], now: float
    ) -> float | None:
        """Read the due metrics; returns when the next one is due."""
        due = []
        for m in metrics:
            r = self.readings.setdefault(m.name, Reading())
            if r.at == 0.0 or now >= r.at + parse_duration(m.interval):
                due.append(m)
        results = await asyncio.gather(*(read(client, m) for m in due), return_exceptions=True)
        for m, result in zip(due, results, strict=True):
            r = self.readings[m.name]
            r.at = now
            if isinstance(result, ProviderError):
                r.value, r.error = None, str(result)
                continue
            if isinstance(result, BaseException):
                raise result
            r.value, r.error = result, ""
            if result is None:
                continue  # no data: neither in nor out of range
            inside = (m.min is None or result >= m.min) and (m.max is None or result <= m.max)
            r.outside = 0 if inside else r.outside + 1
        if not metrics:
            return None
        return min(self.readings[m.name].at + parse_duration(m.interval) for m in metrics)

    def judgements(self, metrics: tuple[MetricSpec, ...]) -> list[Judgement]:
        out = []
        for m in metrics:
            r = self.readings.get(m.name) or Reading()
            bounds = f"[{'-inf' if m.min is None else f'{m.min:g}'}, " + (
                f"{'inf' if m.max is None else f'{m.max:g}'}]"
            )
            if r.at == 0.0:
                outcome, message = "inconclusive", "no reading yet"
            elif r.error:
                outcome, message = "inconclusive", f"provider error: {r.error}"
            elif r.value is None:
                outcome, message = "inconclusive", "no data (an empty result)"
            elif r.outside == 0:
                outcome, message = "pass", f"{r.value:g} in {bounds}"
            elif r.outside > m.failure_limit:
                outcome = "fail"
                message = f"{r.value:g} outside {bounds} ({r.outside} readings in a row)"
            else:
                outcome = "inconclusive"
                message = (
                    f"{r.value:g} outside {bounds} ({r.outside} of more than "
                    f"{m.failure_limit} allowed in a row)"
                )
            out.append(
                Judgement(
                    m.name,
                    outcome,  # type: ignore[arg-type]
                    message,
                    candidate=r.value or 0.0,
                    dry_run=m.dry_run,
                )
            )
        return out
