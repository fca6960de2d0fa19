#!/usr/bin/env python3
"""Remediation latency: alert → mitigation effective in every worker, and internal signal.

Starts ``turnout serve`` (2 workers, SQLite store in a temp dir) with the sample echo
service behind one HTTPRoute, then measures, N times each:

* **Alertmanager POST → every worker**: a webhook payload (version 4) is POSTed to
  ``/api/v1/alerts/alertmanager``; the Runbook sheds 100 % of the route with a 2 s lease.
  Measured from sending the POST until ``/readyz`` shows every worker on a data-plane
  revision newer than the one before the POST (polled every 2 ms) and a request to the
  route is answered 503 ``mitigation_shed``. Then the lease ends and the route serves
  again before the next round.
* **Alertmanager POST → open circuit in every worker**: the same for a Runbook whose step
  is ``open_circuit`` on a second Backend (a Mitigation of a Backend: the cluster is
  rebuilt with a breaker held open, the path ``eject_endpoint`` takes too); effective when
  every worker is on a newer revision and the route answers 503 ``upstream_overflow``.
* **Internal signal: first failing request → every worker**: a second Runbook's
  ``signal`` (5xx share > 50 % over 5 s, at least 20 answers) watches another route whose
  requests go to the echo service's ``/status/500``. A client sends failing requests
  in a loop; measured from the first of them until every worker is on a newer revision
  and the route answers ``mitigation_shed``.

    python bench/remediation_latency.py          # 10 rounds each
    python bench/remediation_latency.py -n 30 --workers 4
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.process import TurnoutProcess, free_port

STRIP_PREFIX = {
    "type": "URLRewrite",
    "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}},
}


SHED = {
    "name": "shed",
    "action": "shed",
    "params": {"route": "{route}", "percent": 100, "ttl": "2s"},
}
OPEN = {"name": "open", "action": "open_circuit", "params": {"backend": "other", "ttl": "2s"}}


def runbook(name: str, step: dict[str, Any] = SHED, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "Runbook",
        "metadata": {"name": name},
        "spec": {
            "target": "{namespace}/{route}",
            "cooldown": "10ms",
            "limits": {"maxShedPercent": 100},
            "steps": [step],
            **spec,
        },
    }


def status(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def shed(port: int, path: str) -> bool:
    code, body = status(port, path)
    return code == 503 and b"mitigation_shed" in body


def circuit_open(port: int, path: str) -> bool:
    code, body = status(port, path)
    return code == 503 and b"upstream_overflow" in body


def workers_past(proc: TurnoutProcess, revision: int) -> bool:
    s = proc.status()
    return bool(s["workers"]) and all(w["revision"] > revision for w in s["workers"])


def wait(check: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("gave up waiting")
        time.sleep(0.002)


def alert_round(
    proc: TurnoutProcess,
    port: int,
    i: int,
    alertname: str = "BenchErrors",
    path: str = "/alerted",
    effective: Any = shed,
) -> float:
    wait(lambda: not effective(port, path))  # the previous lease has ended
    before = int(proc.status()["revision"])
    payload = {
        "version": "4",
        "groupKey": "bench",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": alertname, "route": path.strip("/")},
                "startsAt": datetime.now(UTC).isoformat(),
                "fingerprint": f"{alertname}-{i}",
            }
        ],
    }
    started = time.perf_counter()
    code, body = proc.api("POST", "/api/v1/alerts/alertmanager", payload)
    assert code == 200 and len(body["runs"]) == 1, body
    try:
        wait(lambda: workers_past(proc, before) and effective(port, path))
    except TimeoutError:
        raise SystemExit(f"round {i}: {proc.api('GET', '/api/v1/incidents')[1]}") from None
    return time.perf_counter() - started


def signal_round(proc: TurnoutProcess, port: int) -> float:
    wait(lambda: not shed(port, "/failing/status/500"))
    time.sleep(6)  # the signal's window forgets the previous burst
    before = int(proc.status()["revision"])
    started = time.perf_counter()
    while time.perf_counter() - started < 30:
        if shed(port, "/failing/status/500") and workers_past(proc, before):
            return time.perf_counter() - started
    raise SystemExit(f"the signal did not fire: {proc.api('GET', '/api/v1/incidents')[1]}")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10, help="rounds of each measurement")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    echo_port = free_port()
    echo = subprocess.Popen(
        [sys.executable, "-m", "turnout.samples.echo", "--port", str(echo_port)],
        stdout=subprocess.PIPE,
    )
    assert echo.stdout is not None
    echo.stdout.readline()
    port = free_port()
    signal = {"route": "failing", "errorRateAbove": 0.5, "window": "5s", "minRequests": 20}
    objects = dump(
        gateway(port=port),
        backend("svc", echo_port),
        route("alerted", [to("svc", "/alerted")]),
        backend("other", echo_port),
        route("circuit", [to("other", "/circuit")]),
        route("failing", [to("svc", "/failing", filters=[STRIP_PREFIX])]),
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            conf = Path(tmp) / "conf"
            conf.mkdir()
            (conf / "gateway.yaml").write_text(objects)
            proc = TurnoutProcess(conf, workers=args.workers).start()
            try:
                books = dump(
                    runbook("on-alert", match={"labels": {"alertname": "BenchErrors"}}),
                    runbook("on-signal", match={"labels": {"alertname": "never"}}, signal=signal),
                    runbook("on-circuit", OPEN, match={"labels": {"alertname": "BenchCircuit"}}),
                )
                code, body = proc.api(
                    "POST", "/api/v1/apply", books, content_type="application/yaml"
                )
                assert code == 200, body
                alerts = [alert_round(proc, port, i) for i in range(args.n)]
                circuits = [
                    alert_round(proc, port, i, "BenchCircuit", "/circuit", circuit_open)
                    for i in range(args.n)
                ]
                signals = [signal_round(proc, port) for _ in range(args.n)]
            finally:
                proc.stop()
    finally:
        echo.terminate()
        echo.wait()
    print(f"workers: {args.workers}, rounds: {args.n}")
    for name, values in (
        ("alert POST → all workers", alerts),
        ("alert → open circuit", circuits),
        ("signal → all workers", signals),
    ):
        ms = [v * 1000 for v in values]
        print(
            f"{name:<26} p50 {statistics.median(ms):7.1f} ms  p90 {pct(ms, 0.9):7.1f} ms  "
            f"max {max(ms):7.1f} ms"
        )
    print(json.dumps({"alert_s": alerts, "circuit_s": circuits, "signal_s": signals}))


if __name__ == "__main__":
    main()
