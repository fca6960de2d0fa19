"""External analysis metrics on a real server: a real Prometheus (Debian's package)
scraping an exporter the test controls, and the same exporter's JSON as a web metric.
While the value is in range both metrics pass (and the release holds at its pause);
when it leaves the range both releases are rolled back with the value in the reason."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EchoFactory, ServeFactory
from tests.integration.releases.helpers import apply, release, state, wait_phase
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.process import TurnoutProcess, free_port

needs_prometheus = pytest.mark.skipif(
    shutil.which("prometheus") is None,
    reason="needs Debian's prometheus package (apt-get install prometheus; .ci/run does)",
)
STEPS = {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}


class Exporter:
    """``/metrics`` (Prometheus text) and ``/status`` (JSON) with one value."""

    def __init__(self) -> None:
        self.value = 0.02
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    body = f'checkout_error_ratio{{version="v2"}} {owner.value}\n'.encode()
                    kind = "text/plain; version=0.0.4"
                else:
                    body = json.dumps({"candidate": {"errorRatio": owner.value}}).encode()
                    kind = "application/json"
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def exporter() -> Iterator[Exporter]:
    e = Exporter()
    yield e
    e.httpd.shutdown()
    e.httpd.server_close()


@pytest.fixture
def prometheus(exporter: Exporter, tmp_path: Path, port: int) -> Iterator[str]:
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: shop\n    static_configs: [{{targets: ['127.0.0.1:{exporter.port}']}}]\n"
    )
    prom_port = free_port()
    while prom_port == port:  # the gateway's port is picked but not bound yet
        prom_port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        yield f"http://127.0.0.1:{prom_port}"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def _analysis(proc: TurnoutProcess, name: str) -> str:
    code, body = proc.api("GET", f"/api/v1/namespaces/default/releases/{name}/state")
    assert code == 200, body
    found = {c["type"]: c for c in body["conditions"]}.get("Analysis")
    return str(found["message"]) if found else ""


def _wait_analysis(proc: TurnoutProcess, name: str, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in (seen := _analysis(proc, name)):
        assert time.monotonic() < deadline, (name, text, seen)
        time.sleep(0.3)


@needs_prometheus
def test_prometheus_and_web_metrics_judge_the_candidate(
    serve: ServeFactory, port: int, echo: EchoFactory, exporter: Exporter, prometheus: str
) -> None:
    o1, o2, p1, p2 = echo("orders-v1"), echo("orders-v2"), echo("pay-v1"), echo("pay-v2")
    proc = serve(
        dump(
            gateway(port=port),
            backend("orders", o1.port),
            backend("orders-v2", o2.port),
            backend("payments", p1.port),
            backend("payments-v2", p2.port),
            route("shop", [to("payments", "/pay"), to("orders", "/")]),
        )
    )
    prom_metric = {
        "name": "errors",
        "prometheus": {"address": prometheus, "query": 'checkout_error_ratio{version="v2"}'},
        "max": 0.1,
        "interval": "1s",
    }
    web_metric = {
        "name": "web-errors",
        "web": {
            "url": f"http://127.0.0.1:{exporter.port}/status",
            "jsonPath": "candidate.errorRatio",
        },
        "max": 0.1,
        "interval": "1s",
        "failureLimit": 1,
    }
    apply(
        proc,
        release(
            "orders-v2", "orders", "orders-v2", strategy=STEPS, analysis={"metrics": [prom_metric]}
        ),
        release(
            "payments-v2",
            "payments",
            "payments-v2",
            strategy=STEPS,
            analysis={"metrics": [web_metric]},
        ),
    )
    wait_phase(proc, "orders-v2", "Paused")
    wait_phase(proc, "payments-v2", "Paused")
    _wait_analysis(proc, "orders-v2", "errors pass: 0.02 in [-inf, 0.1]")  # once scraped
    _wait_analysis(proc, "payments-v2", "web-errors pass: 0.02 in [-inf, 0.1]")

    exporter.value = 0.5
    failed = wait_phase(proc, "orders-v2", "Degraded", timeout=60)
    assert "errors fail: 0.5 outside [-inf, 0.1] (1 readings in a row)" in failed["reason"]
    failed = wait_phase(proc, "payments-v2", "Degraded", timeout=60)
    assert "web-errors fail: 0.5 outside [-inf, 0.1] (2 readings in a row)" in failed["reason"]
    assert state(proc, "orders-v2")["weight"] == 0
