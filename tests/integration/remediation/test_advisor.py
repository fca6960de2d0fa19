"""The optional advisor against a small real OpenAI-compatible HTTP server started here:
the chat completion's text comes back as advice; a slow or failing model trips the
``advisor:host:port`` breaker after three failures and is then refused at once without
being called; the API key goes in the Authorization header and nowhere else; through
``turnout serve`` the advice endpoint answers (and refuses clearly with no advisor)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.conftest import ServeFactory
from tests.integration.remediation.harness import alert_payload
from turnout.control.remediation.advisor import AdvisorError, AdvisorSettings, advise
from turnout.control.remediation.breaker import Breakers
from turnout.testing.clock import FakeClock
from turnout.testing.manifests import dump, gateway
from turnout.testing.polling import wait_until

KEY = "sk-test-advisor-secret"


class Model:
    """What the fake model does: its answer, status, delay; what it received."""

    def __init__(self) -> None:
        self.status = 200
        self.delay = 0.0
        self.body: Any = {"choices": [{"message": {"role": "assistant", "content": "Shed it."}}]}
        self.requests: list[tuple[str, dict[str, str], dict[str, Any]]] = []


@pytest.fixture
def model() -> Iterator[tuple[Model, str]]:
    state = Model()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = json.loads(self.rfile.read(length))
            state.requests.append((self.path, dict(self.headers), body))
            time.sleep(state.delay)
            raw = (
                json.dumps(state.body).encode() if not isinstance(state.body, bytes) else state.body
            )
            try:
                self.send_response(state.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)
            except OSError:  # the client gave up (a timeout test)
                pass

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


RUN = {
    "runbook": "default/shed",
    "state": "waiting_approval",
    "alertDetail": {"labels": {"alertname": "HighErrorRate"}},
    "plan": [{"name": "shed", "action": "shed", "params": {"url": "https://hooks/secret"}}],
    "timeline": [],
}


def test_the_completion_text_is_the_advice(model: tuple[Model, str]) -> None:
    state, url = model
    settings = AdvisorSettings(url=url, model="tiny", api_key=KEY, timeout=5)
    text = asyncio.run(advise(settings, Breakers(), RUN, [{"runbook": "default/shed"}]))
    assert text == "Shed it."
    ((path, headers, body),) = state.requests
    assert path == "/v1/chat/completions" and headers["Authorization"] == f"Bearer {KEY}"
    assert body["model"] == "tiny" and body["temperature"] == 0
    assert "default/shed" in body["messages"][1]["content"]
    assert "hooks/secret" not in json.dumps(body)  # step params are not sent


def test_a_slow_model_opens_the_breaker_and_is_then_refused_at_once(
    model: tuple[Model, str],
) -> None:
    state, url = model
    state.delay = 1.0
    settings = AdvisorSettings(url=url, api_key=KEY, timeout=0.2)
    breakers = Breakers(FakeClock(), failure_threshold=3, reset_timeout=30)

    async def main() -> None:
        for _ in range(3):
            with pytest.raises(AdvisorError, match=r"timed out after 0.2s"):
                await advise(settings, breakers, RUN, [])
        asked = len(state.requests)
        started = time.monotonic()
        with pytest.raises(AdvisorError, match="is open after 3 failures") as exc:
            await advise(settings, breakers, RUN, [])
        assert time.monotonic() - started < 0.1 and len(state.requests) == asked
        assert KEY not in str(exc.value)

    asyncio.run(main())
    (snap,) = breakers.snapshot()
    assert snap["name"].startswith("advisor:127.0.0.1:") and snap["state"] == "open"


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (500, {"error": "overloaded"}, "answered 500"),
        (200, {"id": "x"}, "not an OpenAI-compatible chat completion"),
        (200, b"<html>", "not an OpenAI-compatible chat completion"),
    ],
)
def test_bad_answers_are_failures_with_a_reason(
    model: tuple[Model, str], status: int, body: Any, message: str
) -> None:
    state, url = model
    state.status, state.body = status, body
    breakers = Breakers(FakeClock())
    with pytest.raises(AdvisorError, match=message):
        asyncio.run(advise(AdvisorSettings(url=url), breakers, RUN, []))
    assert breakers.snapshot()[0]["failures"] == 1


def test_settings_from_the_environment() -> None:
    assert AdvisorSettings.from_env({}) is None
    s = AdvisorSettings.from_env(
        {"TURNOUT_ADVISOR_URL": "https://llm:8443/v1/", "TURNOUT_ADVISOR_TIMEOUT": "900"}
    )
    assert s is not None and (s.url, s.timeout, s.host) == ("https://llm:8443/v1", 60.0, "llm:8443")
    with pytest.raises(AdvisorError, match="http:// or https://"):
        AdvisorSettings.from_env({"TURNOUT_ADVISOR_URL": "llm:8443"})


def test_the_advice_endpoint_through_serve(serve: ServeFactory, port: int, model: Any) -> None:
    state, url = model
    gw = serve(
        dump(gateway(port=port)),
        env={"TURNOUT_ADVISOR_URL": url, "TURNOUT_ADVISOR_API_KEY": KEY},
    )
    book = {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "Runbook",
        "metadata": {"name": "shed"},
        "spec": {
            "match": {"labels": {"alertname": "HighErrorRate"}},
            "dryRun": True,
            "steps": [{"name": "shed", "action": "shed", "params": {"route": "r", "percent": 5}}],
        },
    }
    assert gw.api("POST", "/api/v1/apply", {"manifests": [book]})[0] == 200
    payload = alert_payload(datetime.now(UTC))
    assert gw.api("POST", "/api/v1/alerts/alertmanager", payload)[0] == 200
    runs = wait_until(lambda: gw.api("GET", "/api/v1/incidents")[1]["items"], timeout=10)
    status, body = gw.api("POST", f"/api/v1/incidents/{runs[0]['id']}/advice")
    assert status == 200, body
    assert body["advice"] == "Shed it." and body["advisory"] is True
    assert "HighErrorRate" in state.requests[0][2]["messages"][1]["content"]
    assert KEY not in gw.stderr()
