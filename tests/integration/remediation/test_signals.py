"""Internal signals: the Runbook's rule over the gateway's own counters starts a run
without any alert pipeline, once per episode, and the gateway's own 503s do not count."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.integration.remediation.harness import Bench, alert_payload, runbook_spec
from turnout.observe.metrics import RouteTotals

ROUTE = ("default/checkout", "default/svc")
OWN = ("default/checkout", "")  # the gateway's own answers (shed, fault aborts)


def answers(ok: int, errors: int) -> RouteTotals:
    return RouteTotals(codes=[0, 0, ok, 0, 0, errors])


def test_an_error_burst_starts_one_run_per_episode(tmp_path: Path) -> None:
    async def main() -> None:
        b = await Bench.open(tmp_path)
        signal = {"route": "checkout", "errorRateAbove": 0.5, "window": "10s", "minRequests": 10}
        spec = runbook_spec(signal=signal, match={"labels": {"alertname": "never"}})
        b.control.put("Runbook", "self-heal", spec)
        b.observed.routes[ROUTE] = answers(100, 0)
        await b.tick()  # the baseline reading
        b.clock.advance(1)
        b.observed.routes[ROUTE] = answers(105, 4)  # 4 of 9: below the rule
        b.observed.routes[OWN] = answers(0, 500)  # the gateway's own 503s: not counted
        await b.tick()
        assert await b.runs() == []
        b.clock.advance(1)
        b.observed.routes[ROUTE] = answers(106, 30)  # 30 of 36 since the baseline
        await b.tick()
        (run,) = await b.runs()
        assert run.state == "succeeded" and run.target == "default/checkout"
        alert = await b.store.alert(run.alert_id)
        assert (alert.source, alert.alertname) == ("internal", "TurnoutRouteErrors")
        assert len(b.mitigations()) == 1
        for _ in range(3):  # still failing: the same episode, no second run
            b.clock.advance(1)
            b.observed.routes[ROUTE].codes[5] += 20
            await b.tick()
        assert len(await b.runs()) == 1
        await b.store.close()

    asyncio.run(main())


VERIFY = {
    "name": "verify",
    "action": "verify_error_rate",
    "params": {"route": "{route}", "below": 0.1, "minRequests": 20},
    "retries": 2,
    "backoff": "10s",
}
SHED = {"name": "shed", "action": "shed", "params": {"route": "{route}", "percent": 50}}


def test_verification_judges_the_mitigation_from_the_gateways_counters(tmp_path: Path) -> None:
    async def main() -> None:
        b = await Bench.open(tmp_path)
        b.control.put("Runbook", "shed-and-verify", runbook_spec(steps=[SHED, VERIFY]))
        b.observed.routes[ROUTE] = answers(100, 50)
        await b.deliver(alert_payload(b.ago(5)))
        await b.tick()
        (run,) = await b.runs()
        assert (run.state, run.step, run.attempt) == ("running", 1, 1)  # baseline taken
        b.clock.advance(10)
        b.observed.routes[ROUTE] = answers(140, 52)  # 2 of 42 since: below 10 %
        b.observed.routes[OWN] = answers(0, 300)  # the shed 503s do not count
        await b.tick()
        (run,) = await b.runs()
        assert run.state == "succeeded"
        assert run.timeline[-2]["detail"] == (
            "verify: verified: 5% of 42 answers of default/checkout are 5xx"
        )
        # a second incident where shedding does not help
        b.clock.advance(600)
        labels = {"alertname": "HighErrorRate", "route": "search"}
        search = ("default/search", "default/svc")
        b.observed.routes[search] = answers(10, 10)
        await b.expire()
        await b.deliver(alert_payload(b.ago(5), labels=labels, fingerprint="fp2"))
        await b.tick()
        b.clock.advance(10)
        b.observed.routes[search] = answers(20, 40)
        await b.tick()
        latest = (await b.runs())[0]
        assert latest.state == "failed"
        assert "not effective: 75% of 40 answers of default/search are still 5xx" in latest.reason
        await b.store.close()

    asyncio.run(main())
