"""A test bed for the web console: a real ``turnout serve`` with two services, two
paused Releases, a Runbook with a step waiting for approval, and a Chromium page.

``ConsoleBed`` is used by the browser tests (``tests/e2e/console``) and by
``bench/console.py`` (timings and the screenshots of ``docs/console.md``). The browser
is Debian's Chromium driven by the Python ``playwright`` package; nothing is
downloaded (``chromium_missing`` says why a run must skip).
"""

from __future__ import annotations

import shutil
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.polling import wait_until
from turnout.testing.process import TurnoutProcess, free_port

CHROMIUM = "/usr/bin/chromium"
VENDOR = Path(__file__).parents[1] / "control/console/static/vendor/htmx.min.js"


def chromium_missing() -> str | None:
    """Why the browser tests cannot run here (None: they can)."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        return f"{CHROMIUM} is missing (apt-get install -y chromium)"
    if not VENDOR.exists():
        return "the console's browser libraries are not installed (npm ci; docs/console.md)"
    return None


def release(name: str, stable: str, candidate: str) -> dict[str, Any]:
    return {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "backend": stable,
            "candidate": {"backend": candidate},
            "strategy": {
                "canary": {"steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}]}
            },
        },
    }


RUNBOOK = {
    "apiVersion": "turnout.dev/v1alpha1",
    "kind": "Runbook",
    "metadata": {"name": "shed-on-latency", "namespace": "default"},
    "spec": {
        "match": {"labels": {"alertname": "HighLatency"}},
        "target": "{namespace}/{route}",
        "steps": [
            {
                "name": "shed",
                "action": "shed",
                "params": {"route": "{route}", "percent": 10, "ttl": "1m"},
                "approval": {"roles": ["editor"], "expiry": "15m"},
            }
        ],
    },
}


def alert(fingerprint: str, route_name: str) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": '{}:{alertname="HighLatency"}',
        "status": "firing",
        "receiver": "turnout",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "HighLatency", "route": route_name, "namespace": "default"},
                "annotations": {"summary": "p99 above 500 ms"},
                "startsAt": datetime.now(UTC).isoformat(),
                "endsAt": "0001-01-01T00:00:00Z",
                "fingerprint": fingerprint,
            }
        ],
    }


class ConsoleBed:
    """The server and what it holds; ``start`` needs two upstream ports (stable, candidate)."""

    def __init__(self, conf_dir: Path, stable: int, candidate: int, workers: int = 1) -> None:
        self.port = free_port()
        conf = conf_dir / "conf"  # the data dir goes beside it, in conf_dir
        conf.mkdir()
        (conf / "gateway.yaml").write_text(dump(gateway(port=self.port)))
        self.server = TurnoutProcess(conf, workers=workers)
        self.stable, self.candidate = stable, candidate
        self.viewer = ""
        self.run_id = ""

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ConsoleBed:
        self.server.start(timeout=60)  # a shared machine can be slow to fork workers
        manifests = [
            backend("orders", self.stable),
            backend("orders-v2", self.candidate),
            backend("payments", self.stable),
            backend("payments-v2", self.candidate),
            route("orders", [to("orders", "/orders")]),
            route("payments", [to("payments", "/payments")]),
            backend("legacy", free_port()),  # nothing listens there: its route answers 5xx
            route("legacy", [to("legacy", "/legacy")]),
            release("orders-v2", "orders", "orders-v2"),
            release("payments-v2", "payments", "payments-v2"),
            RUNBOOK,
        ]
        self.api("POST", "/api/v1/apply", {"manifests": manifests}, 200)
        wait_until(lambda: self.get("/orders/1") == 200, 20, "the orders route serves")
        body = self.api("POST", "/api/v1/tokens", {"name": "watcher", "role": "viewer"}, 201)
        self.viewer = body["token"]
        body = self.api("POST", "/api/v1/alerts/alertmanager", alert("fp-1", "orders"), 200)
        self.run_id = body["runs"][0]
        return self

    def api(self, method: str, path: str, body: Any, expect: int) -> Any:
        status, found = self.server.api(method, path, body)
        assert status == expect, (method, path, status, found)
        return found

    def get(self, path: str, headers: dict[str, str] | None = None) -> int:
        """One request through the gateway: its status."""
        req = urllib.request.Request(self.gateway + path, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                resp.read()
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    def stop(self) -> None:
        self.server.stop()


def login(page: Any, admin: str, token: str) -> None:
    page.goto(f"{admin}/ui/login")
    page.fill("#token", token)
    page.click("#login")
    page.wait_for_url(f"{admin}/ui/")
