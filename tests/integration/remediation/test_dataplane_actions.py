"""The leased data-plane actions through the engine, over a real SQLite store on a fake
clock: eject and restore an endpoint (blast radius, never the last one), shift weight
(blast radius, the route must have both refs), open a circuit, tighten a rate limit,
block Consumers, pin a routing key — each Mitigation expiring by itself — and a rollback
of the stored configuration that leaves Runbooks and Mitigations alone."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

from tests.integration.remediation.harness import Bench, alert_payload, runbook_spec
from tests.integration.remediation.test_engine import run_bench
from tests.unit.control.memory import MemoryControl
from turnout.config.model.remediation import BlastRadius
from turnout.control.remediation.actions import ActionContext, ActionError, lookup
from turnout.control.remediation.breaker import Breakers
from turnout.control.store.records import Change
from turnout.testing.clock import FakeClock

EPS = ["127.0.0.1:9000", "127.0.0.1:9001", "127.0.0.1:9002"]


def backend_spec(*addresses: str) -> dict[str, Any]:
    return {"endpoints": [{"address": a} for a in addresses]}


def step(name: str, action: str, **params: Any) -> dict[str, Any]:
    return {"name": name, "action": action, "params": params}


async def run_steps(b: Bench, *steps: dict[str, Any], **spec: Any) -> Any:
    b.control.put("Runbook", "rb", runbook_spec(steps=list(steps), **spec))
    await b.deliver(alert_payload(b.ago(5)))
    await b.tick()
    (run,) = await b.runs()
    return run


def test_eject_takes_an_endpoint_out_until_the_lease_ends(tmp_path: Path) -> None:
    async def scenario(b: Bench) -> None:
        b.control.put("Backend", "app", backend_spec(*EPS[:2]))
        eject = step("eject", "eject_endpoint", backend="app", endpoint=EPS[1], ttl="1m")
        run = await run_steps(b, eject)
        assert run.state == "succeeded", run.reason
        (spec,) = b.mitigations().values()
        assert spec["ejectEndpoints"] == [EPS[1]]
        assert spec["targetRef"] == {"kind": "Backend", "name": "app", "group": "turnout.dev"}
        b.clock.advance(30)
        await b.expire()
        assert len(b.mitigations()) == 1  # the lease holds
        b.clock.advance(31)
        await b.expire()
        assert b.mitigations() == {}  # reverted by itself

    run_bench(tmp_path, scenario)


def test_at_most_n_endpoints_are_ejected(tmp_path: Path) -> None:
    async def scenario(b: Bench) -> None:
        b.control.put("Backend", "app", backend_spec(*EPS))
        run = await run_steps(
            b,
            step("one", "eject_endpoint", backend="app", endpoint=EPS[0]),
            step("two", "eject_endpoint", backend="app", endpoint=EPS[1]),
        )
        assert run.state == "failed"
        assert "exceeds maxEjectedEndpoints 1" in run.reason and "1 already ejected" in run.reason
        assert len(b.mitigations()) == 1

    run_bench(tmp_path, scenario)


def test_the_last_endpoint_and_unknown_endpoints_are_refused(tmp_path: Path) -> None:
    async def scenario(b: Bench) -> None:
        b.control.put("Backend", "app", backend_spec(EPS[0]))
        run = await run_steps(b, step("e", "eject_endpoint", backend="app", endpoint=EPS[0]))
        assert run.state == "failed" and "last endpoint of backend app" in run.reason
        b.clock.advance(600)  # past the cooldown
        b.control.put("Backend", "app", backend_spec(*EPS[:2]))
        b.control.put(
            "Runbook",
            "rb",
            runbook_spec(steps=[step("e", "eject_endpoint", backend="app", endpoint="10.9.9.9:1")]),
        )
        await b.deliver(alert_payload(b.ago(1), fingerprint="fp2"))
        await b.tick()
        latest = (await b.runs())[0]
        assert latest.state == "failed" and "has no endpoint 10.9.9.9:1" in latest.reason
        assert b.mitigations() == {}

    run_bench(tmp_path, scenario)


def test_restore_puts_an_ejected_endpoint_back_before_the_lease_ends(tmp_path: Path) -> None:
    async def scenario(b: Bench) -> None:
        b.control.put("Backend", "app", backend_spec(*EPS[:2]))
        run = await run_steps(
            b,
            step("eject", "eject_endpoint", backend="app", endpoint=EPS[1], ttl="1h"),
            step("restore", "restore_endpoint", backend="app", endpoint=EPS[1]),
        )
        assert run.state == "succeeded", run.reason
        assert b.mitigations() == {}
        assert "restored" in run.timeline[-2]["detail"]

    run_bench(tmp_path, scenario)


def test_weight_shift_is_bounded_and_needs_both_refs(tmp_path: Path) -> None:
    async def scenario(b: Bench) -> None:
        refs = [{"name": "app", "weight": 90}, {"name": "alt", "weight": 10}]
        b.control.put("HTTPRoute", "checkout", {"rules": [{"backendRefs": refs}]})
        shift = {"route": "{route}", "from": "app", "to": "alt"}
        run = await run_steps(
            b,
            {"name": "a", "action": "shift_weight", "params": {**shift, "percent": 30}},
            {"name": "b", "action": "shift_weight", "params": {**shift, "percent": 30}},
        )
        assert run.state == "failed" and "exceeds maxWeightShiftPercent 50" in run.reason
        (spec,) = b.mitigations().values()
        assert spec["shiftWeight"] == {"fromBackend": "app", "toBackend": "alt", "percent": 30}
        assert spec["targetRef"]["name"] == "checkout"

    run_bench(tmp_path, scenario)


def test_weight_shift_refuses_a_route_without_the_pair(tmp_path: Path) -> None:
    async def scenario(b: Bench) -> None:
        b.control.put("HTTPRoute", "checkout", {"rules": [{"backendRefs": [{"name": "app"}]}]})
        params = {"route": "{route}", "from": "app", "to": "alt", "percent": 10}
        run = await run_steps(b, {"name": "a", "action": "shift_weight", "params": params})
        assert run.state == "failed" and "no rule with both backendRefs" in run.reason

    run_bench(tmp_path, scenario)


def test_circuit_limit_consumers_and_keys_are_leased_mitigations(tmp_path: Path) -> None:
    async def scenario(b: Bench) -> None:
        run = await run_steps(
            b,
            step("oc", "open_circuit", backend="app", ttl="2m"),
            step("rl", "tighten_rate_limit", route="{route}", percent=20, ttl="2m"),
            step("bc", "block_consumers", route="{route}", consumers=["mallory"], ttl="2m"),
            step("pk", "pin_routing_key", route="{route}", keys=["pr-42"], ttl="2m"),
        )
        assert run.state == "succeeded", run.reason
        specs = sorted(b.mitigations().items())
        assert specs[0][1]["openCircuit"] is True
        assert specs[1][1]["rateLimitPercent"] == 20
        assert specs[2][1]["blockConsumers"] == ["mallory"]
        assert specs[3][1]["pinKeys"] == ["pr-42"]
        b.clock.advance(121)
        await b.expire()
        assert b.mitigations() == {}

    run_bench(tmp_path, scenario)


def test_blocked_consumers_count_against_max_blocked_clients(tmp_path: Path) -> None:
    async def scenario(b: Bench) -> None:
        run = await run_steps(
            b,
            step("ip", "block_clients", route="{route}", clients=["10.0.0.1"]),
            step("bc", "block_consumers", route="{route}", consumers=["a", "b"]),
            limits={"maxBlockedClients": 2},
        )
        assert run.state == "failed" and "exceeds maxBlockedClients 2" in run.reason

    run_bench(tmp_path, scenario)


def test_rollback_reaches_the_revision_but_keeps_runbooks_and_mitigations() -> None:
    committed: list[tuple[list[Change], str, str]] = []
    clock = FakeClock(1_800_000_000.0)
    control = MemoryControl(clock)
    control.put("Backend", "app", backend_spec(EPS[0]))
    control.put("HTTPRoute", "checkout", {"rules": []})
    control.put("Runbook", "rb", runbook_spec())
    control.put("Mitigation", "rem-x", {"targetRef": {"name": "checkout"}})

    async def commit(changes: list[Change], *, message: str, action: str) -> None:
        committed.append((changes, message, action))

    async def revision(number: int) -> list[dict[str, Any]]:
        assert number == 3
        backend = {"apiVersion": "turnout.dev/v1alpha1", "kind": "Backend"}
        meta = {"name": "app", "namespace": "default"}
        return [{**backend, "metadata": meta, "spec": backend_spec(EPS[1])}]

    ctx = ActionContext(
        key="run-1-0",
        run_id="run-1",
        namespace="default",
        clock=clock,
        commit=commit,
        objects=control.objects,
        limits=BlastRadius(),
        breakers=Breakers(clock),
        timeout=5.0,
        revision=revision,
    )
    entry = lookup("rollback_config")
    summary = asyncio.run(entry.fn(entry.parse({"revision": 3}), ctx))
    assert summary == "rolled back to revision 3 (2 objects changed)"
    ((changes, message, action),) = committed
    assert action == "rollback" and message == "rollback to revision 3: remediation run run-1"
    assert sorted((c.op, c.kind, c.name) for c in changes) == [
        ("delete", "HTTPRoute", "checkout"),
        ("put", "Backend", "app"),
    ]
    no_store = dataclasses.replace(ctx, revision=None)
    try:
        asyncio.run(entry.fn(entry.parse({"revision": 3}), no_store))
    except ActionError as exc:
        assert "needs the store's revisions" in str(exc)
    else:
        raise AssertionError("a rollback without a store must fail")
