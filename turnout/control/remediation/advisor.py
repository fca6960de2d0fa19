"""The optional advisor: a model behind an OpenAI-compatible HTTP API, asked for advice on
a run. Advice only: it never acts, approves or changes a plan; a person reads it.

Configured from the admin process's environment (so the key stays out of files):
``TURNOUT_ADVISOR_URL`` (the API's base, e.g. ``http://127.0.0.1:8000/v1``; unset: no
advisor), ``TURNOUT_ADVISOR_MODEL`` (default ``default``), ``TURNOUT_ADVISOR_API_KEY``
(sent as a bearer token, never logged nor returned) and ``TURNOUT_ADVISOR_TIMEOUT``
(seconds, default 10, at most 60). ``advise`` POSTs one ``/chat/completions`` request
(temperature 0, bounded ``max_tokens``) with the run's alert, plan, timeline and the
deterministic ranking of candidate runbooks, through the circuit breaker
``advisor:host:port`` (closed → open after consecutive failures → half-open), bounded
by the timeout; a non-2xx answer, a malformed body and a timeout all count as failures,
and an open breaker refuses at once with the reason. The answer is cut to
``MAX_ADVICE`` characters.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

from turnout.control.remediation.breaker import BreakerOpen, Breakers

MAX_ADVICE: Final = 8000
MAX_TIMEOUT: Final = 60.0
SYSTEM_PROMPT: Final = (
    "You advise the on-call engineer of an API gateway about one automated remediation "
    "run. You cannot act. In at most 8 short lines: is the planned action a good fit for "
    "the alert, what to check before approving, and which of the candidate runbooks "
    "(ranked by past effectiveness) you would prefer and why."
)


class AdvisorError(Exception):
    """No advice: not configured, the model's API failed, or its breaker is open."""


@dataclass(frozen=True, slots=True)
class AdvisorSettings:
    url: str
    model: str = "default"
    api_key: str = ""
    timeout: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AdvisorSettings | None:
        env = os.environ if env is None else env
        url = env.get("TURNOUT_ADVISOR_URL", "").strip()
        if not url:
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise AdvisorError("TURNOUT_ADVISOR_URL must be an http:// or https:// URL")
        try:
            timeout = float(env.get("TURNOUT_ADVISOR_TIMEOUT", "10"))
        except ValueError:
            raise AdvisorError("TURNOUT_ADVISOR_TIMEOUT must be a number of seconds") from None
        return cls(
            url=url.rstrip("/"),
            model=env.get("TURNOUT_ADVISOR_MODEL", "default") or "default",
            api_key=env.get("TURNOUT_ADVISOR_API_KEY", ""),
            timeout=min(max(timeout, 0.1), MAX_TIMEOUT),
        )

    @property
    def host(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


def prompt(run: Mapping[str, Any], candidates: list[dict[str, Any]]) -> str:
    """The user message: what the run is about, as compact JSON (no secrets: runs and
    alerts hold none; step params are the Runbook's, webhook URLs left out)."""
    plan = [
        {k: v for k, v in step.items() if k in ("name", "action", "risk", "approval")}
        for step in run.get("plan") or ()
    ]
    facts = {
        "alert": run.get("alertDetail"),
        "runbook": run.get("runbook"),
        "state": run.get("state"),
        "reason": run.get("reason"),
        "plan": plan,
        "timeline": (run.get("timeline") or [])[-10:],
        "candidates": candidates[:5],
    }
    return json.dumps(facts, default=str, sort_keys=True)


async def advise(
    settings: AdvisorSettings,
    breakers: Breakers,
    run: Mapping[str, Any],
    candidates: list[dict[str, Any]],
) -> str:
    """The model's advice on ``run``; ``AdvisorError`` saying why there is none."""
    body = {
        "model": settings.model,
        "temperature": 0,
        "max_tokens": 400,
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": prompt(run, candidates)},
        ],
    }
    headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
    where = f"advisor {settings.host}"

    async def ask() -> str:
        async with httpx.AsyncClient(timeout=settings.timeout, follow_redirects=False) as c:
            response = await c.post(f"{settings.url}/chat/completions", json=body, headers=headers)
        if response.status_code >= 300:
            raise AdvisorError(f"{where} answered {response.status_code}")
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise AdvisorError(f"{where}: not an OpenAI-compatible chat completion") from None
        if not isinstance(content, str):
            raise AdvisorError(f"{where}: the completion has no text")
        return content.strip()[:MAX_ADVICE]

    try:
        return await breakers.get(f"advisor:{settings.host}").call(ask, settings.timeout)
    except BreakerOpen as exc:
        raise AdvisorError(str(exc)) from None
    except AdvisorError:
        raise
    except TimeoutError:
        raise AdvisorError(f"{where}: timed out after {settings.timeout:g}s") from None
    except httpx.HTTPError as exc:
        raise AdvisorError(f"{where}: {type(exc).__name__}") from None
