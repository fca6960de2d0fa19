"""The leased data-plane actions over real sockets: ``turnout serve`` with two workers, real
echo backends, alerts posted to the Alertmanager intake. Each action's Mitigation reaches
every worker (a new connection per request lands on either) and reverts by itself when its
lease ends; ``rollback_config`` rolls the stored configuration back through the store as
an audited revision of ``system:remediation``."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from tests.conftest import EchoFactory, ServeFactory
from tests.integration.remediation.harness import alert_payload
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.polling import wait_until
from turnout.testing.process import TurnoutProcess
from turnout.testing.requests import get

LEASE = "5s"


def runbook(name: str, *steps: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "Runbook",
        "metadata": {"name": name.lower()},
        "spec": {
            "match": {"labels": {"alertname": name}},
            "target": "{alertname}",
            "steps": list(steps),
            **spec,
        },
    }


def fire(gw: TurnoutProcess, name: str) -> float:
    """Post an alert named ``name``; wait for its run to succeed; the seconds it took."""
    payload = alert_payload(
        datetime.now(UTC), labels={"alertname": name, "route": "checkout"}, fingerprint=name
    )
    started = time.monotonic()
    status, body = gw.api("POST", "/api/v1/alerts/alertmanager", payload)
    assert status == 200, body

    def done() -> bool:
        items = gw.api("GET", "/api/v1/incidents")[1]["items"]
        mine = [r for r in items if r["runbook"].endswith("/" + name.lower())]
        assert not mine or mine[0]["state"] in ("pending", "running", "succeeded"), mine
        return bool(mine) and mine[0]["state"] == "succeeded"

    wait_until(done, timeout=20, what=f"the {name} run to succeed")
    return time.monotonic() - started


def apply(gw: TurnoutProcess, *objs: dict[str, Any]) -> int:
    status, body = gw.api("POST", "/api/v1/apply", {"manifests": list(objs)})
    assert status == 200, body
    return int(body["revision"])


def spread(port: int, n: int = 24) -> Counter[int]:
    """Statuses of ``n`` requests, each on a new connection (either worker)."""
    return Counter(get(port, "/").status for _ in range(n))


def test_eject_shift_and_open_circuit_reach_every_worker_and_revert(
    serve: ServeFactory, port: int, echo: EchoFactory
) -> None:
    good, bad, alt = echo("good-0"), echo("bad-0"), echo("alt-0")
    refs = [{"name": "svc", "weight": 100}, {"name": "alt", "weight": 0}]
    gw = serve(
        dump(
            gateway(port=port),
            backend("svc", good.port, bad.port),
            backend("alt", alt.port),
            route("checkout", [{"backendRefs": refs}]),
        ),
        workers=2,
    )
    assert len(gw.worker_pids()) == 2
    bad_ep = f"127.0.0.1:{bad.port}"
    eject = {"backend": "svc", "endpoint": bad_ep, "ttl": LEASE}
    shift = {"route": "{route}", "from": "svc", "to": "alt", "percent": 100, "ttl": LEASE}
    apply(
        gw,
        runbook("EjectBad", {"name": "eject", "action": "eject_endpoint", "params": eject}),
        runbook(
            "ShiftAway",
            {"name": "shift", "action": "shift_weight", "params": shift},
            limits={"maxWeightShiftPercent": 100},
        ),
        runbook(
            "OpenSvc",
            {"name": "open", "action": "open_circuit", "params": {"backend": "svc", "ttl": LEASE}},
        ),
    )
    assert spread(port)[200] == 24 and bad.requests > 0

    # eject: the bad endpoint gets nothing in either worker, then comes back by itself
    fire(gw, "EjectBad")
    wait_until(lambda: _quiet(port, bad), timeout=5, what="the ejection in every worker")
    wait_until(lambda: _reaches(port, bad), timeout=20, what="the ejection's lease to end")

    # shift: all of the route's weight to alt, then back
    before = alt.requests
    fire(gw, "ShiftAway")
    wait_until(lambda: _all_to(port, alt), timeout=5, what="the shift in every worker")
    assert alt.requests > before
    wait_until(lambda: not _all_to(port, alt), timeout=20, what="the shift's lease to end")

    # open circuit: every request to svc fails fast with 503, then it serves again
    fire(gw, "OpenSvc")
    wait_until(lambda: spread(port)[503] == 24, timeout=5, what="the open circuit everywhere")
    reply = get(port, "/")
    assert reply.json()["error"] == "upstream_overflow"
    wait_until(lambda: spread(port)[200] == 24, timeout=20, what="the circuit's lease to end")
    wait_until(
        lambda: gw.api("GET", "/api/v1/namespaces/default/mitigations")[1]["items"] == [],
        10,
        "the expiry reconciler to delete every Mitigation",
    )


def _quiet(port: int, ep: Any) -> bool:
    before = ep.requests
    ok = spread(port)[200] == 24
    return ok and ep.requests == before


def _reaches(port: int, ep: Any) -> bool:
    before = ep.requests
    spread(port)
    return ep.requests > before


def _all_to(port: int, ep: Any) -> bool:
    before = ep.requests
    ok = spread(port)[200] == 24
    return ok and ep.requests - before == 24


def test_rollback_config_restores_a_revision_as_system_remediation(
    serve: ServeFactory, port: int, echo: EchoFactory
) -> None:
    e = echo("e-0")
    gw = serve(dump(gateway(port=port)), workers=2)
    good = apply(gw, backend("svc", e.port), route("checkout", [to("svc")]))
    wait_until(lambda: get(port, "/").status == 200, timeout=10, what="the route to serve")
    apply(gw, route("checkout", [to("missing")]))  # the bad change
    wait_until(lambda: spread(port, 8)[500] == 8, timeout=10, what="the bad change to apply")
    step = {"name": "back", "action": "rollback_config", "params": {"revision": good}}
    apply(gw, runbook("BadConfig", step))
    fire(gw, "BadConfig")
    wait_until(lambda: spread(port, 8)[200] == 8, timeout=10, what="the rollback everywhere")
    # the Runbook survived the rollback (it was created after the revision)
    assert gw.api("GET", "/api/v1/namespaces/default/runbooks/badconfig")[0] == 200
    audit = gw.api("GET", "/api/v1/audit?actor=system:remediation")[1]["items"]
    assert any(a.get("action") == "rollback" for a in audit), audit


def test_restore_puts_an_ejected_endpoint_back_before_its_lease_ends(
    serve: ServeFactory, port: int, echo: EchoFactory
) -> None:
    good, bad = echo("good-0"), echo("bad-0")
    gw = serve(
        dump(
            gateway(port=port),
            backend("svc", good.port, bad.port),
            route("checkout", [to("svc")]),
        ),
        workers=2,
    )
    ep = {"backend": "svc", "endpoint": f"127.0.0.1:{bad.port}"}
    apply(
        gw,
        runbook(
            "EjectLong",
            {"name": "eject", "action": "eject_endpoint", "params": {**ep, "ttl": "1h"}},
        ),
        runbook("RestoreBad", {"name": "restore", "action": "restore_endpoint", "params": ep}),
    )
    fire(gw, "EjectLong")
    wait_until(lambda: _quiet(port, bad), timeout=5, what="the ejection in every worker")
    fire(gw, "RestoreBad")
    wait_until(lambda: _reaches(port, bad), timeout=5, what="the restore in every worker")
    assert gw.api("GET", "/api/v1/namespaces/default/mitigations")[1]["items"] == []
