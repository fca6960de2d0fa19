"""Shared by the release integration tests: manifests, the release's state over the
admin API, and a client that counts what users got."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

from turnout.testing.process import TurnoutProcess
from turnout.testing.requests import get

STATE = "turnout.dev/release-state"


def release(name: str, backend: str, candidate: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": name},
        "spec": {"backend": backend, "candidate": {"backend": candidate}, **spec},
    }


def apply(proc: TurnoutProcess, *objects: dict[str, Any]) -> None:
    code, body = proc.api("POST", "/api/v1/apply", {"manifests": list(objects)})
    assert code == 200, body


def state(proc: TurnoutProcess, name: str) -> dict[str, Any]:
    code, body = proc.api("GET", f"/api/v1/namespaces/default/releases/{name}")
    assert code == 200, body
    raw = (body["metadata"].get("annotations") or {}).get(STATE)
    return dict(json.loads(raw)) if raw else {"phase": "Pending"}


def wait_phase(
    proc: TurnoutProcess, name: str, *phases: str, timeout: float = 30.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    found = state(proc, name)
    while found["phase"] not in phases:
        if time.monotonic() > deadline:
            raise AssertionError(f"release {name} never reached {phases}: {found}")
        time.sleep(0.1)
        found = state(proc, name)
    return found


class Users:
    """Sequential GETs; ``pods`` counts which version answered, ``failed`` the 5xx."""

    def __init__(self, port: int, path: str = "/") -> None:
        self.port = port
        self.path = path
        self.pods: Counter[str] = Counter()
        self.failed = 0

    def one(self, headers: dict[str, str] | None = None) -> tuple[int, str]:
        reply = get(self.port, self.path, headers)
        pod = reply.json().get("pod", "") if reply.is_json else ""
        if reply.status >= 500:
            self.failed += 1
        else:
            self.pods[pod] += 1
        return reply.status, pod
