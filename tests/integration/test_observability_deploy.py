"""``deploy/observability``: the rules pass ``promtool``, every series the dashboard and the
rules name is one a running Turnout exports, and a real Prometheus scrapes a running
Turnout and answers a query about its traffic. Also, end to end: refusals by reason,
the access log's sampling (errors always logged) and SIGUSR1 reopening the log file."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EchoFactory, ServeFactory
from turnout.testing import TurnoutProcess, free_port
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.polling import eventually, wait_until
from turnout.testing.requests import get

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "observability"
RULES = DEPLOY / "turnout-alerts.yaml"
DASHBOARD = DEPLOY / "turnout-dashboard.json"
SUFFIXES = ("_bucket", "_count", "_sum", "_total")
needs_prometheus = pytest.mark.skipif(
    shutil.which("promtool") is None or shutil.which("prometheus") is None,
    reason="needs Debian's prometheus package (apt-get install prometheus; .ci/run does)",
)


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="module")
def gw(echo_module: EchoFactory, serve_module: ServeFactory, logs: Path) -> TurnoutProcess:
    up = echo_module()
    return serve_module(
        dump(gateway("gw", free_port()), backend("echo", up.port), route("r", [to("echo", "/ok")])),
        args=["--access-log", str(logs / "access.log"), "--access-log-sample", "0"],
    )


def _gateway_port(gw: TurnoutProcess) -> int:
    (listener,) = gw.status()["listeners"]
    return int(listener.rpartition(":")[2])


def _exported(gw: TurnoutProcess) -> set[str]:
    return set(re.findall(r"^# TYPE (\w+) ", gw.metrics(), re.M))


def _names(text: str) -> set[str]:
    out = set()
    for name in re.findall(r"\bturnout_[a-z0-9_]+", text):
        for suffix in SUFFIXES:
            if name.endswith(suffix):
                name = name[: -len(suffix)]
                break
        out.add(name)
    return out


@needs_prometheus
def test_promtool_checks_and_unit_tests_the_rules() -> None:
    for args in (["check", "rules", str(RULES)], ["test", "rules", "turnout-alerts.test.yaml"]):
        done = subprocess.run(
            ["promtool", *args], cwd=DEPLOY, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_dashboard_and_rules_name_only_exported_series(gw: TurnoutProcess) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    titles = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert titles == ["Overview", "Route", "Backend", "Sandboxes", "Releases"]
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exported = {n.removesuffix("_total") for n in _exported(gw)} | _exported(gw)
    used = _names("\n".join(exprs)) | _names(RULES.read_text())
    assert used and used <= exported, sorted(used - exported)


def test_refusals_sampling_and_log_reopen(gw: TurnoutProcess, logs: Path) -> None:
    port = _gateway_port(gw)
    before = gw.metric("turnout_access_log_sampled_out_total")
    assert get(port, "/ok").status == 200
    assert get(port, "/missing").status == 404
    assert eventually(lambda: gw.metric("turnout_refusals_total", reason="no_route") == 1, 10)
    assert eventually(lambda: gw.metric("turnout_access_log_sampled_out_total") == before + 1, 10)
    log = logs / "access.log"
    wait_until(lambda: log.exists() and log.read_text(), 10, "the 404 is logged")
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line["status"] for line in lines] == [404]  # sample 0: errors only
    os.rename(log, logs / "access.log.1")
    assert gw.proc is not None
    gw.proc.send_signal(signal.SIGUSR1)
    wait_until(log.exists, 10, "the workers reopen the log by name")
    assert get(port, "/again").status == 404
    wait_until(lambda: log.read_text(), 10, "the next line goes to the new file")
    assert json.loads(log.read_text())["path"] == "/again"
    assert gw.status()["ready"]  # the signal killed no worker


def _query(base: str, expr: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


@needs_prometheus
def test_a_real_prometheus_scrapes_turnout(gw: TurnoutProcess, tmp_path: Path) -> None:
    port = _gateway_port(gw)
    for _ in range(7):
        assert get(port, "/ok").status == 200
    admin = gw.admin.removeprefix("http://")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: [{RULES}]\n"
        "scrape_configs:\n"
        f"  - job_name: turnout\n    static_configs: [{{targets: ['{admin}']}}]\n"
    )
    prom_port = free_port()
    prom_log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=prom_log,
    )
    base = f"http://127.0.0.1:{prom_port}"
    try:
        expr = 'sum(turnout_requests_total{job="turnout",route="default/r",code="2xx"})'

        def answered() -> float:
            try:
                result = _query(base, expr)
            except OSError:
                return 0.0
            return float(result[0]["value"][1]) if result else 0.0

        labels = {"route": "default/r", "code": "2xx"}
        assert eventually(lambda: gw.metric("turnout_requests_total", **labels) >= 7, 10)
        served = gw.metric("turnout_requests_total", **labels)
        wait_until(lambda: answered() == served, 30, f"Prometheus counts {served} requests")
        with urllib.request.urlopen(f"{base}/api/v1/rules", timeout=5) as resp:
            groups = json.loads(resp.read())["data"]["groups"]
        assert {g["name"] for g in groups} == {
            "turnout.traffic",
            "turnout.backends",
            "turnout.config",
        }
        assert _query(base, "turnout_config_revision")[0]["value"][1] == "1"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        prom_log.close()
