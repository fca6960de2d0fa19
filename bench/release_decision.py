#!/usr/bin/env python3
"""Release benchmarks: decision latency, abort -> all stable, and the split's cost.

    .venv/bin/python bench/release_decision.py [--rate 200] [--weight 10] [--reps 3]

1. **Decision latency.** A real ``turnout serve`` (2 workers), two echo upstreams, a
   canary Release at ``--weight`` % (cookie split; every request a new user), load at
   ``--rate`` requests/s from a paced client. After 5 s of healthy traffic the candidate
   starts answering 503. Counted: failed user requests until the release is Degraded
   and the data plane has stopped sending to the candidate. The *fixed-interval*
   baseline (Flagger-like: a threshold check on aggregated metrics every ``interval``;
   rollback at the first failing check, i.e. threshold 1, its most aggressive setting)
   sees the same traffic: the candidate failure rate measured in the run, times the
   mean time to the next check (``interval / 2``, a uniformly random phase) plus one
   Prometheus scrape interval (15 s) before the failures are visible to the query.
2. **Abort -> 100 % stable.** Weight 50, random split, 4 client threads on new
   connections (spread over both workers); ``POST .../abort``; the time from sending
   the abort to the last response served by the candidate.
3. **Split cost.** ``ReleaseSplit.pick`` in-process per request (cookie present,
   cookie absent (sets one), header, random), ns per call.

Results are printed as a Markdown table (docs/benchmarks.md keeps them).
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import tempfile
import threading
import time
import timeit
from pathlib import Path
from typing import Any

from turnout.samples.echo import EchoIdentity, start_echo
from turnout.testing.loop import BackgroundLoop
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.process import TurnoutProcess, free_port

SCRAPE = 15.0


def _get(port: int, headers: dict[str, str] | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/", headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        pod = json.loads(body).get("pod", "") if resp.status == 200 else ""
        return resp.status, pod
    finally:
        conn.close()


def _release(weight: int, by: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "turnout.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": "orders-v2"},
        "spec": {
            "backend": "orders",
            "candidate": {"backend": "orders-v2"},
            "strategy": {"canary": {"steps": [{"setWeight": weight}, *steps]}},
            "split": {"by": by},
            "analysis": {"minSamples": 20},
        },
    }


def _phase(proc: TurnoutProcess) -> str:
    _, body = proc.api("GET", "/api/v1/namespaces/default/releases/orders-v2/state")
    return str(body["state"]["phase"]) if isinstance(body, dict) else ""


def _serve(tmp: Path, bg: BackgroundLoop, force: list[Any]) -> tuple[TurnoutProcess, int]:
    _, stable = bg.run(start_echo(identity=EchoIdentity("default", "v1", "v1")))
    _, candidate = bg.run(start_echo(identity=EchoIdentity("default", "v2", "v2")))
    force.append(candidate)
    port = free_port()
    conf = tmp / f"conf-{port}"
    conf.mkdir()
    (conf / "gateway.yaml").write_text(
        dump(
            gateway(port=port),
            backend("orders", stable.port),
            backend("orders-v2", candidate.port),
            route("shop", [to("orders")]),
        )
    )
    return TurnoutProcess(conf, workers=2).start(timeout=90), port


def decision(tmp: Path, bg: BackgroundLoop, rate: float, weight: int) -> dict[str, float]:
    force: list[Any] = []
    proc, port = _serve(tmp, bg, force)
    try:
        steps = [{"analysis": {"duration": "10m"}}]
        code, body = proc.api(
            "POST", "/api/v1/apply", {"manifests": [_release(weight, "cookie", steps)]}
        )
        assert code == 200, body
        while _phase(proc) != "Progressing":
            time.sleep(0.05)
        period = 1 / rate
        failed = cand_failed = 0
        cand = 0
        start = time.monotonic()
        broke_at = 0.0
        degraded_at = 0.0
        quiet = 0
        sent_failing = 0  # requests sent between the break and the Degraded verdict
        polled = 0.0
        while True:
            t = time.monotonic()
            if not broke_at and t - start > 5:
                force[0].force_status = 503
                broke_at = t
            status, pod = _get(port)
            if broke_at and not degraded_at:
                sent_failing += 1
            if status >= 500:
                failed += 1
                if broke_at:
                    cand_failed += 1
                quiet = 0
            elif broke_at:
                quiet += 1
            if pod == "v2":
                cand += 1
            if broke_at and not degraded_at and time.monotonic() - polled > 0.1:
                polled = time.monotonic()
                if _phase(proc) == "Degraded":
                    degraded_at = polled
            if degraded_at and quiet >= 200:
                break
            if t - start > 120:
                raise RuntimeError("no abort within 120 s")
            time.sleep(max(0.0, period - (time.monotonic() - t)))
        detect = degraded_at - broke_at
        # candidate requests per second as actually sent (all failing), not the target rate
        fail_rate = sent_failing / max(detect, 1e-3) * weight / 100
        return {
            "failed": cand_failed,
            "decision_s": detect,
            "fail_rate": fail_rate,
            "rate": sent_failing / max(detect, 1e-3),
            "fixed60": fail_rate * (60 / 2 + SCRAPE),
            "fixed10": fail_rate * (10 / 2 + SCRAPE),
        }
    finally:
        proc.stop()


def abort_to_stable(tmp: Path, bg: BackgroundLoop) -> float:
    force: list[Any] = []
    proc, port = _serve(tmp, bg, force)
    try:
        steps = [{"pause": {}}]
        code, body = proc.api(
            "POST", "/api/v1/apply", {"manifests": [_release(50, "random", steps)]}
        )
        assert code == 200, body
        while _phase(proc) != "Paused":
            time.sleep(0.05)
        time.sleep(1.0)  # every worker on the split
        last_candidate = [0.0]
        stop = threading.Event()

        def users() -> None:
            while not stop.is_set():
                _, pod = _get(port)
                if pod == "v2":
                    last_candidate[0] = max(last_candidate[0], time.monotonic())

        threads = [threading.Thread(target=users) for _ in range(4)]
        for th in threads:
            th.start()
        time.sleep(1.0)
        sent = time.monotonic()
        code, _ = proc.api(
            "POST", "/api/v1/namespaces/default/releases/orders-v2/abort", {"reason": "bench"}
        )
        assert code == 200
        time.sleep(3.0)
        stop.set()
        for th in threads:
            th.join()
        return max(0.0, last_candidate[0] - sent)
    finally:
        proc.stop()


def split_cost() -> dict[str, float]:
    from turnout.observe.stats import RouteStats
    from turnout.proxy.protocols.heads import RequestHead
    from turnout.proxy.snapshot.tables import (
        SPLIT_COOKIE,
        SPLIT_HEADER,
        SPLIT_RANDOM,
        BackendChoice,
        ReleaseSplit,
    )

    cand = BackendChoice(None, "default/orders-v2", RouteStats())
    with_cookie = RequestHead(
        b"GET",
        b"/",
        b"",
        [(b"host", b"x"), (b"cookie", b"a=1; turnout-release=0123456789abcdef01234567")],
    )
    no_cookie = RequestHead(b"GET", b"/", b"", [(b"host", b"x"), (b"x-user", b"u-42")])
    cases = {
        "cookie present": (
            ReleaseSplit(cand, 1000, SPLIT_COOKIE, b"turnout-release", b"s"),
            with_cookie,
        ),
        "cookie absent (set)": (
            ReleaseSplit(cand, 1000, SPLIT_COOKIE, b"turnout-release", b"s"),
            no_cookie,
        ),
        "header": (ReleaseSplit(cand, 1000, SPLIT_HEADER, b"x-user", b"s"), no_cookie),
        "random": (ReleaseSplit(cand, 1000, SPLIT_RANDOM, b"", b"s"), no_cookie),
    }
    out = {}
    for name, (split, head) in cases.items():
        n = 200_000
        best = min(
            timeit.repeat(lambda s=split, h=head: s.pick(h, b"127.0.0.1"), number=n, repeat=5)
        )
        out[name] = best / n * 1e9
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--weight", type=int, default=10)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    bg = BackgroundLoop()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        runs = [decision(tmp, bg, args.rate, args.weight) for _ in range(args.reps)]
        aborts = [abort_to_stable(tmp, bg) for _ in range(args.reps)]
    costs = split_cost()
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    lines = [
        f"## Decision latency ({args.rate:g} req/s, canary {args.weight} %, "
        f"{args.reps} runs, medians)",
        "",
        "| | failed user requests | time to decide |",
        "|---|---:|---:|",
        f"| Turnout (sequential test, minSamples 20) | {med['failed']:.0f} "
        f"| {med['decision_s']:.2f} s |",
        f"| fixed-interval check, 60 s + 15 s scrape | {med['fixed60']:.0f} "
        f"| {60 / 2 + SCRAPE:.0f} s (mean) |",
        f"| fixed-interval check, 10 s + 15 s scrape | {med['fixed10']:.0f} "
        f"| {10 / 2 + SCRAPE:.0f} s (mean) |",
        "",
        f"runs: {[round(r['failed']) for r in runs]} failed at a measured "
        f"{med['rate']:.0f} req/s; fewer failed requests than "
        f"the 60 s check: {med['fixed60'] / max(med['failed'], 1):.1f}x, "
        f"than the 10 s check: {med['fixed10'] / max(med['failed'], 1):.1f}x",
        "",
        f"## Abort -> 100 % stable (2 workers): {[f'{a * 1000:.0f} ms' for a in aborts]}, "
        f"median {statistics.median(aborts) * 1000:.0f} ms",
        "",
        "## Split cost per request (ReleaseSplit.pick, interpreted)",
        "",
        *[f"- {name}: {ns:.0f} ns" for name, ns in costs.items()],
    ]
    print("\n" + "\n".join(lines))
    bg.close()


if __name__ == "__main__":
    main()
