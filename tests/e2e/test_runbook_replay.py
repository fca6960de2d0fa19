"""``turnout runbook test --last``: a sample alert replayed against the requests a real
``turnout serve`` recorded (its access-log ring): the plan, and what each step would have
changed on that traffic."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import EchoFactory, ServeFactory
from tests.e2e.conftest import Cli
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.polling import wait_until
from turnout.testing.requests import get

RUNBOOK = """\
apiVersion: turnout.dev/v1alpha1
kind: Runbook
metadata: {name: relieve}
spec:
  match: {labels: {alertname: CheckoutErrors}}
  target: "{namespace}/{route}"
  limits: {maxEjectedEndpoints: 1}
  steps:
  - {name: shed, action: shed, params: {route: "{route}", percent: 50}}
  - {name: eject, action: eject_endpoint, params: {backend: svc, endpoint: "127.0.0.1:PORT"}}
  - {name: tell, action: notify_webhook, params: {url: "http://127.0.0.1:1/x", message: hi}}
"""


def test_runbook_test_replays_the_recorded_traffic(
    serve: ServeFactory, port: int, echo: EchoFactory, tmp_path: Path
) -> None:
    a, b = echo("a-0"), echo("b-0")
    gw = serve(
        dump(gateway(port=port), backend("svc", a.port, b.port), route("checkout", [to("svc")])),
        workers=2,
        access_log=str(tmp_path / "access.log"),
    )
    for _ in range(40):
        assert get(port, "/").status == 200
    cli = Cli(gw, tmp_path / "home")
    manifest = tmp_path / "rb.yaml"
    manifest.write_text(RUNBOOK.replace("PORT", str(b.port)))
    cli.ok("runbook", "apply", "-f", str(manifest))

    def replayed() -> str | None:
        out = cli.ok("runbook", "test", "-l", "alertname=CheckoutErrors", "-l", "route=checkout")
        return out if "replayed on 40 requests recorded in the last 5m" in out else None

    out = wait_until(replayed, timeout=10, what="the 40 requests in the log ring")
    assert "would have changed: ~20 of 40 requests of default/checkout answered 503" in out
    assert (
        f"would have changed: {b.requests} of 40 requests to default/svc sent to its other "
        f"endpoints instead of 127.0.0.1:{b.port}"
    ) in out
    assert "would have changed: no direct effect on traffic" in out
    plain = cli.ok(
        "runbook", "test", "-l", "alertname=CheckoutErrors", "-l", "route=checkout", "--last", ""
    )
    assert "would have changed" not in plain and "replayed" not in plain
    bad = cli("runbook", "test", "-l", "alertname=CheckoutErrors", "--last", "soon")
    assert bad.code == 2 and "--last:" in bad.out + bad.err
