"""Filter plugins in a real gateway: the two example plugins (request signing; header
enrichment from a call-out to a lookup server on 127.0.0.1) attached with ExtensionRef,
plugins that raise, hang or answer nonsense (500, counted, the worker lives on), the
lifecycle per worker across a reload and a drain, and ``turnout plugin new``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EchoFactory, ServeFactory
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.polling import eventually
from turnout.testing.requests import request

SECRET = "integration-test-secret-0123"

# The first test also pays for installing the plugin packages (pip, on a shared machine).
pytestmark = [pytest.mark.usefixtures("plugin_packages"), pytest.mark.timeout(600)]


def plugin(name: str, kind: str, config: dict[str, Any] | None = None, **spec: Any) -> Any:
    return {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "FilterPlugin",
        "metadata": {"name": name},
        "spec": {"plugin": kind, **({"config": config} if config is not None else {}), **spec},
    }


def ext(name: str) -> dict[str, Any]:
    return {
        "type": "ExtensionRef",
        "extensionRef": {"group": "turnout.dev", "kind": "FilterPlugin", "name": name},
    }


class Lookup(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        user = self.headers.get("x-user-id")
        status, body = (200, {"plan": "gold", "user": user}) if user else (404, {})
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def lookup() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Lookup)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_example_plugins_and_failures(
    serve: ServeFactory, port: int, echo: EchoFactory, lookup: int
) -> None:
    from turnout_request_signing import verify

    e = echo("e-0")
    rules = [
        to("svc", "/signed", filters=[ext("sign")]),
        to("svc", "/enriched", filters=[ext("enrich")]),
        to("svc", "/faulty", filters=[ext("faulty")]),
        to("svc", "/open", filters=[ext("faulty-open")]),
        to("svc", "/v1", filters=[ext("transform")]),
    ]
    proc = serve(
        dump(
            gateway(port=port),
            backend("svc", e.port),
            route("api", rules),
            plugin("sign", "request-signing", {"keyId": "gw", "secret": SECRET}),
            plugin(
                "enrich",
                "header-enrichment",
                {
                    "url": f"http://127.0.0.1:{lookup}/users",
                    "sendHeaders": ["x-user-id"],
                    "copy": {"plan": "x-user-plan"},
                },
            ),
            plugin("faulty", "test-faulty", {}, timeout="300ms"),
            plugin("faulty-open", "test-faulty", {}, failOpen=True),
            plugin(
                "transform",
                "transform",  # built in: turnout's own entry point
                {
                    "request": {
                        "method": "PUT",
                        "path": {"pattern": "^/v1/(.*)$", "substitution": "/v2/\\1"},
                        "query": {"rename": {"q": "search"}},
                        "headers": {"set": {"x-caller": "{client_ip} {header.x-user}"}},
                    },
                    "response": {"headers": {"set": {"x-transformed": "{status}"}}},
                },
            ),
        )
    )
    pids = proc.worker_pids()

    signed = request(port, "/signed?x=1", headers={"x-signature": "forged"})
    assert signed.status == 200 and signed.headers["x-signed-by"] == "gw"
    seen = signed.json()["headers"]
    [sig] = seen["X-Signature"]
    [stamp] = seen["X-Signature-Timestamp"]
    host = f"127.0.0.1:{port}"
    digest = sig.rsplit("signature=", 1)[1]
    assert verify(SECRET, "GET", "/signed?x=1", stamp, [host], digest)

    enriched = request(port, "/enriched", headers={"x-user-id": "42"})
    assert enriched.status == 200
    assert enriched.json()["headers"]["X-User-Plan"] == ["gold"]
    refused = request(port, "/enriched")  # the lookup answers 404: the plugin refuses
    assert refused.status == 403 and refused.json()["error"] == "lookup_refused"

    moved = request(port, "/v1/items?q=red", headers={"x-user": "ann"})
    assert moved.status == 200 and moved.headers["x-transformed"] == "200"
    echoed = moved.json()
    assert (echoed["method"], echoed["path"]) == ("PUT", "/v2/items?search=red")
    assert echoed["headers"]["X-Caller"] == ["127.0.0.1 ann"]

    for fault, code in (
        ("raise", "plugin_error"),
        ("hang", "plugin_timeout"),
        ("verdict", "plugin_error"),
        ("response", "plugin_error"),
    ):
        failed = request(port, "/faulty", headers={"x-fault": fault})
        assert failed.status == 500, fault
        assert failed.json()["error"] == code, fault
    assert request(port, "/faulty").status == 200
    assert request(port, "/open", headers={"x-fault": "raise"}).status == 200

    assert proc.worker_pids() == pids  # no worker died
    assert eventually(
        lambda: proc.metric("turnout_plugin_failures_total", plugin="default/faulty") == 4, 10.0
    )
    assert (
        proc.metric("turnout_plugin_failures_total", plugin="default/faulty", reason="timeout") == 1
    )
    assert proc.metric("turnout_plugin_failures_total", plugin="default/faulty-open") == 1
    assert SECRET not in proc.stderr()


def test_lifecycle_per_worker_across_reload_and_drain(
    serve: ServeFactory, port: int, echo: EchoFactory, tmp_path: Path
) -> None:
    e = echo("e-0")
    log = tmp_path / "lifecycle.log"

    def manifests(tag: str, mode: str = "ok") -> str:
        return dump(
            gateway(port=port),
            backend("svc", e.port),
            route("api", [to("svc", filters=[ext("life")])]),
            plugin("life", "test-lifecycle", {"log": str(log), "tag": tag, "mode": mode}),
        )

    proc = serve(manifests("a"), workers=2)
    pids = set(proc.worker_pids())

    def events() -> list[tuple[int, str, str]]:
        return [
            (int(p), ev, tag)
            for p, ev, tag in (line.split() for line in log.read_text().splitlines())
        ]

    assert eventually(lambda: len(events()) == 2, 10.0)
    assert {(p, ev) for p, ev, _ in events()} == {(p, "setup") for p in pids}
    assert request(port, "/").json()["headers"]["X-Plugin-Tag"] == ["a"]

    revision = proc.status()["revision"]
    (proc.config / "gateway.yaml").write_text(manifests("b"))
    proc.reload()
    proc.wait_ready(revision=revision + 1)
    assert eventually(lambda: len(events()) == 4, 10.0)
    assert {(p, ev, t) for p, ev, t in events()[2:]} == {(p, "reconfigure", "b") for p in pids}
    assert eventually(lambda: request(port, "/").json()["headers"]["X-Plugin-Tag"] == ["b"], 10.0)

    # A plugin whose setup fails: the workers keep the running revision (and plugin).
    (proc.config / "gateway.yaml").write_text(
        manifests("b")
        + "---\n"
        + dump(plugin("broken", "test-lifecycle", {"log": str(log), "mode": "fail-setup"}))
    )
    proc.reload()
    # both workers refuse the revision before the next request (one may still be applying)
    assert eventually(lambda: proc.stderr().count("cannot apply revision") >= 2, 20.0)
    assert request(port, "/", timeout=30.0).json()["headers"]["X-Plugin-Tag"] == ["b"]
    assert set(proc.worker_pids()) == pids

    proc.stop()
    closes = {(p, ev) for p, ev, _ in events() if ev == "close"}
    assert closes == {(p, "close") for p in pids}


def test_plugin_new_generates_a_package_whose_test_passes(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "turnout", "plugin", "new", "add-tenant", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    root = tmp_path / "add-tenant"
    assert "created" in done.stdout
    tested = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root / "tests")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root / "src")},
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "2 passed" in tested.stdout


def test_apply_through_the_admin_api(serve: ServeFactory, port: int, echo: EchoFactory) -> None:
    """``turnout apply`` path: a bad plugin config is refused with its line, a good one
    (and the route attaching it) takes effect without a restart."""
    e = echo("e-0")
    proc = serve(dump(gateway(port=port), backend("svc", e.port), route("api", [to("svc")])))
    bad = dump(plugin("tag", "transform", {"request": {"headers": {"set": {"x-a": "{nope}"}}}}))
    code, body = proc.api("POST", "/api/v1/apply", bad, content_type="application/yaml")
    assert code == 422, body
    (problem,) = body["problems"]
    assert problem["path"] == "spec.config.request.headers.set.x-a", problem
    assert "unknown placeholder" in problem["message"]
    assert bad.splitlines()[problem["line"] - 1].strip().startswith("x-a:"), problem
    good = dump(
        plugin("tag", "transform", {"request": {"headers": {"set": {"x-a": "{method}"}}}}),
        route("tagged", [to("svc", "/tagged", filters=[ext("tag")])]),
    )
    code, body = proc.api("POST", "/api/v1/apply", good, content_type="application/yaml")
    assert code == 200, body
    assert eventually(
        lambda: request(port, "/tagged").json()["headers"].get("X-A") == ["GET"], 10.0
    )
    assert "X-A" not in request(port, "/").json()["headers"]


def test_the_examples_own_tests_pass() -> None:
    """Each example ships harness tests (no sockets but the enrichment's lookup server)."""
    root = Path(__file__).resolve().parents[3] / "examples"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(root / "request-signing" / "tests"),
            str(root / "header-enrichment" / "tests"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=root,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout
