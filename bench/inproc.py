#!/usr/bin/env python3
"""Python-side cost of one proxied request, without sockets: a stable optimisation gauge.

Drives a real ``Http1Transport`` (client side) and a pooled ``UpstreamConnection``
(upstream side) with fake transports, through the same route table as bench/run.py,
and reports the best of several timed loops, in CPU time of the process. No kernel, no
event-loop wake-ups, so it varies by a few percent where wrk runs on a shared VM vary by
20 %; it measures only
Turnout's own work (codecs, routing, filters, the exchange, counters, access log).

    python bench/inproc.py              # 50 000 requests per loop, log off and on,
                                        # then tracing off, sampled at 1 % and 100 %
    python bench/inproc.py --profile    # cProfile: calls and own time per request
    python bench/inproc.py --features plugin-empty transform-headers extauth-cached
                                        # bench/features/ variants beside the baseline

Traced runs count what a worker spends per request on tracing: the records, and every
512 requests what the export task and the stats ticker do with them between requests
(encode the spans to OTLP protobuf, pickle the request flows for the supervisor); only
the HTTP POST to a collector is left out.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pickle
import pstats
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from string import Template
from typing import Any

import uvloop
from run import overlay  # bench/run.py beside this script: the --features overlay

from turnout.config.parse import parse_text
from turnout.config.validate import validate
from turnout.core import accel
from turnout.observe.accesslog import AccessLog
from turnout.observe.logwriter import LogWriter
from turnout.observe.otlp import encode
from turnout.observe.tracing import TracingSettings
from turnout.proxy.runtime import ProxySettings, Runtime
from turnout.proxy.transports.http1 import Http1Transport
from turnout.proxy.upstream.connection import UpstreamConnection
from turnout.proxy.worker import settle_garbage_collector

CONFIG = Path(__file__).with_name("turnout-gateway.yaml")
FEATURES_DIR = CONFIG.with_name("features")
REQUEST = b"GET /api/items/42 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sun, 22 Nov 2026 01:00:00 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 100\r\nConnection: keep-alive\r\n\r\n"
    + b"x"
    * 100
)


class FakeTransport:
    def __init__(self) -> None:
        self.written = 0
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def writelines(self, chunks: list[bytes]) -> None:
        for data in chunks:
            self.written += len(data)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, key: str, default: Any = None) -> Any:
        return ("127.0.0.1", 5555) if key == "peername" else default

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True


def feature_text(name: str) -> str:
    """The --features configuration of variant ``name`` (bench/run.py's overlay), with
    both upstream endpoints on the one fake pool."""
    files = [CONFIG, FEATURES_DIR / "baseline.yaml"]
    if name != "baseline":
        files.append(FEATURES_DIR / f"{name}.yaml")
    values = {
        "gateway_port": 18999,
        "upstream": "127.0.0.1:18998",
        "upstream2": "127.0.0.1:18998",
    }
    base, *layers = (Template(f.read_text()).safe_substitute(values) for f in files)
    return overlay(base, *layers)


async def _answer_200(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An authorization service stub for the extAuth variant's first (uncached) check."""
    try:
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(b"HTTP/1.1 200 OK\r\nx-auth-user: bench\r\ncontent-length: 0\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
        pass  # the variant's loop ends with the stub's connection open
    finally:
        writer.close()


async def measure(
    requests: int,
    access_log: bool,
    profile: bool,
    sample: float = 1.0,
    ratio: float = -1.0,
    feature: str = "",
    clock: Callable[[], float] = time.process_time,
) -> float:
    """µs per request; ``sample`` is the access log's sampling rate, ``ratio`` >= 0 turns
    tracing on with that sampling ratio; ``feature``: a bench/features variant."""
    loop = asyncio.get_running_loop()
    text = Template(CONFIG.read_text()).safe_substitute(
        gateway_port=18999, upstream="127.0.0.1:18998"
    )
    if feature:
        text = feature_text(feature)
    resources, _ = parse_text(text, str(CONFIG))
    config, _ = validate(resources)
    devnull = os.open(os.devnull, os.O_WRONLY)
    log = AccessLog(LogWriter(devnull), sample=sample) if access_log else None
    settings = ProxySettings()
    if ratio >= 0:
        settings.tracing = TracingSettings(endpoint="http://127.0.0.1:9/v1/traces", ratio=ratio)
    rt = Runtime(loop, settings, log)
    tracer = rt.tracer
    snapshot = rt.build(config, 1)
    rt.install(snapshot)
    settle_garbage_collector()  # as Worker.apply does: the snapshot leaves the GC's sight
    down = Http1Transport(rt, next(iter(snapshot.sockets)))
    down.connection_made(FakeTransport())  # type: ignore[arg-type]
    pool = next(iter(rt.pools.values()))
    up = UpstreamConnection(pool)
    up.connection_made(FakeTransport())  # type: ignore[arg-type]
    pool.open_count += 1
    pool.idle.append(up)
    upstream_side = up.transport
    if feature:
        # One request first: a variant that waits for something on its first request
        # (extAuth's first check, answered by a local stub) has it done before timing.
        stub = await asyncio.start_server(_answer_200, "127.0.0.1", 18998)
        down.data_received(REQUEST)
        for _ in range(200):
            if upstream_side.written:  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.01)
        up.data_received(RESPONSE)
        stub.close()

    def run(n: int) -> None:
        for i in range(n):
            down.data_received(REQUEST)
            up.data_received(RESPONSE)
            if log is not None and i % 32 == 31:
                log.flush()  # what the loop's call_soon(flush) does between events
            if tracer is not None and i % 512 == 511:
                encode(tracer.take(1 << 30), "turnout")  # the export task's share
                pickle.dumps(rt.stats.flows)  # shipped to the supervisor with the stats
                rt.stats.flows = []

    run(1000)  # warm up
    if profile:
        prof = cProfile.Profile()
        prof.enable()
        run(requests)
        prof.disable()
        stats = pstats.Stats(prof)
        rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:30]  # type: ignore[attr-defined]
        calls = sum(v[1] for v in stats.stats.values()) / requests  # type: ignore[attr-defined]
        print(f"calls per request (profiled): {calls:.1f}")
        for (file, line, func), (_, ncalls, own, cum, _) in rows:
            print(
                f"{ncalls / requests:6.2f}/req {own / requests * 1e6:6.2f} us own "
                f"{cum / requests * 1e6:7.2f} us cum  {func}  {Path(file).name}:{line}"
            )
    best = float("inf")
    for _ in range(7):
        # CPU time of this process: on a shared machine, time spent descheduled is not ours
        started = clock()
        run(requests)
        best = min(best, clock() - started)
        if log is not None:
            log.flush()
    return best / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved tracing rounds")
    parser.add_argument("--tracing-only", action="store_true", help="skip the access-log runs")
    parser.add_argument("--features", nargs="+", default=[], help="bench/features variants")
    args = parser.parse_args()
    print(f"data plane: {accel.describe()}")
    if args.features:
        measure_features(args)
        return
    for access_log in () if args.tracing_only else (False, True):
        us = uvloop.run(measure(args.requests, access_log, args.profile))
        print(f"access log {'on ' if access_log else 'off'}: {us:.2f} us per request")
    # Interleaved rounds: a neighbour's load shifts all three alike, not one of them.
    variants = (("off", -1.0), ("1 %", 0.01), ("100 %", 1.0))
    runs: dict[str, list[float]] = {label: [] for label, _ in variants}
    for _ in range(args.rounds):
        for label, ratio in variants:
            runs[label].append(uvloop.run(measure(args.requests, False, args.profile, ratio=ratio)))
    for label, us in runs.items():
        each = ", ".join(f"{u:.2f}" for u in us)
        print(f"tracing {label:<5}: {statistics.median(us):.2f} us per request (median; {each})")


def measure_features(args: argparse.Namespace) -> None:
    """Each variant beside the baseline, interleaved (B v1 v2 ... per round), medians of
    the best of 7 loops' CPU time per request."""
    names = ["baseline", *[f for f in args.features if f != "baseline"]]
    runs: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.rounds):
        for name in names:
            # CPU time of this process: the machine may be shared, and waiting for a core
            # is not the feature's cost.
            us = measure(args.requests, False, False, feature=name, clock=time.process_time)
            runs[name].append(uvloop.run(us))
    base = statistics.median(runs["baseline"])
    for name, us in runs.items():
        median = statistics.median(us)
        each = ", ".join(f"{u:.2f}" for u in us)
        print(
            f"{name:<18} {median:6.2f} us per request  +{median - base:5.2f} us "
            f"({median / base:.2f}x baseline; {each})"
        )


if __name__ == "__main__":
    main()
