"""A real Alertmanager (Debian ``prometheus-alertmanager``) posts to a real ``turnout
serve`` with two workers: the alert runs the Runbook, whose Mitigation sheds the route
in every worker; the run shows in the incidents API; a second copy of the alert pushed to
Alertmanager does not act again; the bearer token never reaches the logs or the report;
the Mitigation's lease ends and the route serves again.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EchoFactory, ServeFactory
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.polling import wait_until
from turnout.testing.process import free_port
from turnout.testing.requests import get

ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
pytestmark = pytest.mark.skipif(
    ALERTMANAGER is None,
    reason="needs Alertmanager: apt-get install -y prometheus-alertmanager (.ci/run does)",
)

RUNBOOK = {
    "apiVersion": "turnout.dev/v1alpha1",
    "kind": "Runbook",
    "metadata": {"name": "shed-checkout"},
    "spec": {
        "match": {"labels": {"alertname": "CheckoutErrors"}, "labelsRegex": {"route": "check.*"}},
        "target": "{namespace}/{route}",
        "limits": {"maxShedPercent": 100},
        "steps": [
            {
                "name": "shed",
                "action": "shed",
                "params": {"route": "{route}", "percent": 100, "ttl": "8s"},
            }
        ],
    },
}


def alertmanager_config(webhook: str, token: str) -> str:
    return json.dumps(
        {
            "route": {
                "receiver": "turnout",
                "group_by": ["alertname"],
                "group_wait": "0s",
                "group_interval": "1s",
                "repeat_interval": "1h",
            },
            "receivers": [
                {
                    "name": "turnout",
                    "webhook_configs": [
                        {
                            "url": webhook,
                            "send_resolved": True,
                            "http_config": {"authorization": {"credentials": token}},
                        }
                    ],
                }
            ],
        }
    )


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[Any]:
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Any] = []

    def start(webhook: str, token: str) -> str:
        assert ALERTMANAGER is not None
        conf = tmp_path / "alertmanager.yml"
        conf.write_text(alertmanager_config(webhook, token))
        port = free_port()
        log = open(tmp_path / "alertmanager.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [
                ALERTMANAGER,
                f"--config.file={conf}",
                f"--storage.path={tmp_path / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
            ],
            stdout=log,
            stderr=log,
        )
        procs.append(proc)
        logs.append(log)
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _ready(url), 20, "alertmanager to start")
        return url

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)
    for log in logs:
        log.close()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


def push(am: str, labels: dict[str, str], starts: datetime) -> None:
    body = [{"labels": labels, "annotations": {"summary": "5xx"}, "startsAt": starts.isoformat()}]
    req = urllib.request.Request(
        f"{am}/api/v2/alerts",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200


def test_an_alert_sheds_the_route_in_every_worker_once_and_reverts(
    serve: ServeFactory, port: int, echo: EchoFactory, alertmanager: Any
) -> None:
    e = echo("e-0")
    gw = serve(
        dump(gateway(port=port), backend("svc", e.port), route("checkout", [to("svc", "/")])),
        workers=2,
    )
    assert gw.api("POST", "/api/v1/apply", dump(RUNBOOK), content_type="application/yaml")[0] == 200
    assert get(port, "/").status == 200
    am = alertmanager(f"{gw.admin}/api/v1/alerts/alertmanager", gw.token)
    labels = {"alertname": "CheckoutErrors", "route": "checkout", "severity": "page"}
    push(am, labels, datetime.now(UTC))

    def runs() -> list[dict[str, Any]]:
        status, body = gw.api("GET", "/api/v1/incidents")
        assert status == 200, body
        return list(body["items"])

    wait_until(lambda: [r["state"] for r in runs()] == ["succeeded"], timeout=20)
    status, mitigations = gw.api("GET", "/api/v1/namespaces/default/mitigations")
    assert status == 200 and len(mitigations["items"]) == 1, mitigations
    # every worker compiled the revision: each new connection lands on some worker
    wait_until(lambda: all(get(port, "/").status == 503 for _ in range(20)), timeout=10)
    reply = get(port, "/")
    assert reply.status == 503 and reply.json()["error"] == "mitigation_shed"

    (run,) = runs()
    status, detail = gw.api("GET", f"/api/v1/incidents/{run['id']}")
    assert status == 200 and detail["alertDetail"]["labels"]["route"] == "checkout"
    assert [e["event"] for e in detail["timeline"]][-2:] == ["step_done", "succeeded"]

    # The same alert again (Alertmanager re-sends it on the next group interval): no new run.
    push(am, labels, datetime.fromisoformat(detail["alertDetail"]["startsAt"]))
    time.sleep(2.5)  # two group intervals: the re-sent notification has arrived
    assert len(runs()) == 1

    # The lease (8 s) ends: the expiry reconciler deletes the Mitigation, the route serves.
    wait_until(lambda: get(port, "/").status == 200, timeout=20)
    status, mitigations = gw.api("GET", "/api/v1/namespaces/default/mitigations")
    assert mitigations["items"] == []

    logs = gw.stderr()
    secret = gw.token.split("_")[-1]
    assert secret not in logs
    status, export = gw.api("GET", f"/api/v1/incidents/{run['id']}")
    assert secret not in json.dumps(export)
