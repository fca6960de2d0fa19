#!/usr/bin/env python3
"""Soak and reload storm: mixed load on a real ``turnout serve`` while its configuration
is reloaded and its workers are killed; every failed request is explained or counted.

It starts real upstreams (the sample HTTP echo, a ``websockets`` echo, a grpcio
bidirectional-stream echo), a ``turnout serve`` with ``--workers`` workers routing to them
(HTTPRoute + GRPCRoute on one plain listener), and the paced Python clients of
``bench/soak_load.py`` (HTTP/1.1 keep-alive and ``Connection: close``, h2c, WebSocket,
gRPC streams). Meanwhile, from this thread:

- every ``--reload-every`` s it rewrites the manifest with a new ``x-soak-tag`` response
  header (saved by a rename, as editors do; the file watcher picks it up), waits until
  the supervisor and every worker report the new revision, and checks that a new
  connection is answered with the new header;
- every ``--kill-every`` s it freezes one worker (SIGSTOP), reads the ports of its TCP
  connections (clients' ports downstream, its own towards the upstreams), and SIGKILLs
  it; a failure is allowed only when it happened on one of those connections between
  the freeze and ``--window`` s after the kill;
- every ``--sample-every`` s it reads RSS and open fds of the supervisor and each worker;
  per process, after ``--warmup`` s, RSS is judged by its slope and fds by their floor
  (see ``turnout/testing/soak.py``), both only over ``--min-slope-window`` s or more.

``--storm N`` instead reloads N times back to back (each waits for the previous revision
to be live everywhere) under the same load, with no kills: zero failures expected.

    python bench/soak.py --duration 1800 --reload-every 10 --kill-every 120
    python bench/soak.py --storm 100

It prints a summary table, writes ``soak.json`` (and the server's log) into ``--out`` and
exits 1 when a failure was not allowed, a reload did not apply or was not served, or a
process's RSS slope or fds floor over a long enough window exceeds its limit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

import grpc  # noqa: E402
import psutil  # noqa: E402
from websockets.asyncio.server import ServerConnection, serve  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

from bench.soak_load import KINDS, Tally, run_load  # noqa: E402
from turnout.samples.echo import start_echo  # noqa: E402
from turnout.testing import BackgroundLoop, TurnoutProcess, free_port  # noqa: E402
from turnout.testing.manifests import backend, dump, gateway, route, to  # noqa: E402
from turnout.testing.requests import get  # noqa: E402
from turnout.testing.soak import (  # noqa: E402
    Kill,
    Sample,
    classify,
    resource_trend,
    steep,
)

MiB = 2**20


# --- upstreams ---------------------------------------------------------------------


def _grpc_bidi(requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
    # The worker's port towards us identifies its upstream connection (see soak_load).
    context.send_initial_metadata((("x-peer-port", context.peer().rsplit(":", 1)[1]),))
    for message in requests:
        yield message.upper()


def start_grpc() -> tuple[grpc.Server, int]:
    ident = dict(request_deserializer=lambda b: b, response_serializer=lambda b: b)
    handler = grpc.method_handlers_generic_handler(
        "soak.Echo", {"Bidi": grpc.stream_stream_rpc_method_handler(_grpc_bidi, **ident)}
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=32), options=[("grpc.enable_http_proxy", 0)]
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


async def _ws_echo(ws: ServerConnection) -> None:
    # A worker killed under a tunnel cuts it: that is the soak's doing, not news.
    with contextlib.suppress(ConnectionClosed):
        async for message in ws:
            await ws.send(message)


async def _start_ws() -> Any:
    return await serve(_ws_echo, "127.0.0.1", 0)


@dataclass
class Upstreams:
    bg: BackgroundLoop
    echo: int
    ws: int
    grpc: int
    closers: list[Any] = field(default_factory=list)

    @classmethod
    def start(cls) -> Upstreams:
        bg = BackgroundLoop()
        echo_server, echo_state = bg.run(start_echo())
        ws_server = bg.run(_start_ws())
        grpc_server, grpc_port = start_grpc()
        up = cls(bg, echo_state.port, ws_server.sockets[0].getsockname()[1], grpc_port)
        up.closers = [
            lambda: grpc_server.stop(0),
            lambda: bg.call(echo_server.close),
            lambda: bg.call(ws_server.close),
            bg.close,
        ]
        return up

    def close(self) -> None:
        for close in self.closers:
            try:
                close()
            except Exception as exc:  # shutting down: say it, keep closing the rest
                print(f"closing an upstream: {exc!r}", file=sys.stderr)

    def ports(self) -> set[int]:
        return {self.echo, self.ws, self.grpc}


def manifest(port: int, up: Upstreams, tag: str) -> str:
    tagged = to("echo", "/")
    tagged["filters"] = [
        {
            "type": "ResponseHeaderModifier",
            "responseHeaderModifier": {"set": [{"name": "x-soak-tag", "value": tag}]},
        }
    ]
    grpc_route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GRPCRoute",
        "metadata": {"name": "grpc", "namespace": "default"},
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "rules": [
                {"matches": [{"method": {"service": "soak.Echo"}}], "backendRefs": [{"name": "g"}]}
            ],
        },
    }
    return dump(
        gateway("gw", port),
        backend("echo", up.echo),
        backend("ws", up.ws),
        backend("g", up.grpc, appProtocol="grpc"),
        route("http", [to("ws", "/ws"), tagged]),
        grpc_route,
    )


# --- the disturbances ----------------------------------------------------------------


@dataclass
class Reload:
    revision: int
    at: float
    seconds: float | None  # until every worker ran it; None when it never did
    error: str = ""


class Conductor:
    """Reloads, kills and samples one ``turnout serve``, from a plain thread."""

    def __init__(self, gw: TurnoutProcess, port: int, up: Upstreams, args: Any) -> None:
        self.gw, self.port, self.up, self.args = gw, port, up, args
        self.reloads: list[Reload] = []
        self.kills: list[Kill] = []
        self.replace_seconds: list[float] = []
        self.samples: list[Sample] = []
        self.problems: list[str] = []
        self.revision = int(gw.status()["revision"])

    def reload(self) -> None:
        want = self.revision + 1
        path = self.gw.config
        scratch = path.parent / f".{path.name}.tmp"
        scratch.write_text(manifest(self.port, self.up, f"rev-{want}"))
        start = time.monotonic()
        os.replace(scratch, path)
        deadline = start + self.args.reload_timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = self.gw.status()
            workers = status.get("workers", [])
            if status.get("revision", 0) >= want and all(w["revision"] >= want for w in workers):
                self.revision = int(status["revision"])
                self.reloads.append(Reload(want, start, time.monotonic() - start))
                self.probe(want)
                return
            time.sleep(0.02)
        error = f"revision {want} not live after {self.args.reload_timeout}s: {status}"
        self.reloads.append(Reload(want, start, None, error))
        self.problems.append(error)
        self.revision = max(self.revision, int(status.get("revision", self.revision)))

    def probe(self, revision: int) -> None:
        """A new connection after the reload is answered by the new revision."""
        try:
            reply = get(self.port, "/probe", timeout=10)
        except (OSError, http.client.HTTPException) as exc:
            self.problems.append(f"probe after revision {revision}: {exc!r}")
            return
        tag = reply.headers.get("x-soak-tag")
        if reply.status != 200 or tag != f"rev-{revision}":
            self.problems.append(f"revision {revision} live, yet served {reply.status} {tag}")

    def kill(self) -> None:
        pids = self.gw.worker_pids()
        victim = random.choice(pids)
        frozen_at = time.monotonic()
        os.kill(victim, signal.SIGSTOP)
        try:
            clients: set[int] = set()
            upstream: set[int] = set()
            for conn in psutil.Process(victim).net_connections(kind="tcp"):
                if not conn.raddr:
                    continue  # the listener
                if conn.laddr.port == self.port:
                    clients.add(conn.raddr.port)
                elif conn.raddr.port in self.up.ports():
                    upstream.add(conn.laddr.port)
        finally:
            os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        self.kills.append(
            Kill(victim, frozen_at, killed_at, frozenset(clients), frozenset(upstream))
        )
        deadline = killed_at + 30
        while time.monotonic() < deadline:
            status = self.gw.status()
            pids_now = [w["pid"] for w in status.get("workers", [])]
            if status.get("ready") and victim not in pids_now and len(pids_now) == len(pids):
                self.replace_seconds.append(time.monotonic() - killed_at)
                return
            time.sleep(0.05)
        self.problems.append(f"worker {victim} not replaced within 30s")

    def sample(self) -> None:
        now = time.monotonic()
        assert self.gw.proc is not None
        roles = [(self.gw.proc.pid, "supervisor")]
        roles += [(pid, "worker") for pid in self.gw.worker_pids()]
        for pid, role in roles:
            try:
                proc = psutil.Process(pid)
                self.samples.append(Sample(now, pid, role, proc.memory_info().rss, proc.num_fds()))
            except psutil.Error:
                pass  # a worker that died between the status and the read

    def soak(self, stop: threading.Event) -> None:
        a = self.args
        start = time.monotonic()
        due = {
            "sample": start,
            "reload": start + a.reload_every if a.reload_every else float("inf"),
            "kill": start + a.kill_every if a.kill_every else float("inf"),
        }
        end = start + a.duration
        while not stop.is_set():
            what = min(due, key=lambda k: due[k])
            if due[what] >= end:
                break
            stop.wait(max(0.0, due[what] - time.monotonic()))
            getattr(self, what)()
            every = {"sample": a.sample_every, "reload": a.reload_every, "kill": a.kill_every}
            due[what] += every[what]
            if what != "sample":
                self.log(what, time.monotonic() - start)
        self.sample()

    def storm(self, stop: threading.Event) -> None:
        time.sleep(2)  # every kind of load under way before the first reload
        self.sample()
        for _ in range(self.args.storm):
            if stop.is_set():
                break
            self.reload()
            if len(self.reloads) % 10 == 0:
                self.sample()
                self.log("reload", time.monotonic() - self.reloads[0].at)
        time.sleep(2)  # requests that straddled the last reload finish
        self.sample()

    def log(self, what: str, t: float) -> None:
        print(
            f"[{t:7.1f}s] {what:6} reloads={len(self.reloads)} kills={len(self.kills)} "
            f"revision={self.revision}",
            flush=True,
        )


# --- the run -------------------------------------------------------------------------


def run(args: Any, out: Path) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="turnout-soak-"))
    up = Upstreams.start()
    port = free_port()
    config = work / "gateway.yaml"
    config.write_text(manifest(port, up, "rev-1"))
    # A worker that dies of a fatal signal other than the soak's own SIGKILL leaves its
    # Python stack in the log (one aborted once, silently: SIGABRT, no message).
    gw = TurnoutProcess(config, workers=args.workers, env={"PYTHONFAULTHANDLER": "1"})
    tally = Tally()
    stop = threading.Event()
    began = time.monotonic()
    try:
        gw.start(timeout=60)
        conductor = Conductor(gw, port, up, args)
        direct = conductor.storm if args.storm else conductor.soak

        async def main() -> None:
            load = asyncio.ensure_future(run_load(tally, port, args.slots, args.rate))
            load.add_done_callback(lambda _: stop.set())  # a broken client ends the run
            try:
                await asyncio.to_thread(direct, stop)
            finally:
                stop.set()
                tally.stop.set()
                await load

        try:
            asyncio.run(main())
        except KeyboardInterrupt:
            print("interrupted: reporting what ran", file=sys.stderr)
        return report(args, time.monotonic() - began, tally, conductor)
    finally:
        stop.set()
        gw.stop()
        shutil.copy(gw.stderr_path, out / "turnout.log")
        up.close()
        shutil.rmtree(work, ignore_errors=True)


def report(args: Any, seconds: float, tally: Tally, c: Conductor) -> dict[str, Any]:
    verdict = classify(tally.failures, c.kills, args.window)
    trends = resource_trend(c.samples, 0 if args.storm else args.warmup)
    steep_lines = [
        line
        for t in trends
        for line in steep(t, args.min_slope_window, args.max_rss_slope, args.max_fd_drift)
    ]
    applied = [r.seconds for r in c.reloads if r.seconds is not None]
    return {
        "mode": f"storm {args.storm}" if args.storm else "soak",
        "args": vars(args),
        "seconds": round(seconds, 1),
        "requests": {k: tally.ok[k] for k in KINDS},
        "allowed": [asdict(f) for f in verdict.allowed],
        "unallowed": [asdict(f) for f in verdict.unallowed],
        "reloads": {
            "done": len(applied),
            "failed": len(c.reloads) - len(applied),
            "apply_mean_s": round(sum(applied) / len(applied), 3) if applied else None,
            "apply_max_s": round(max(applied), 3) if applied else None,
        },
        "kills": [
            asdict(k) | {"ports": sorted(k.ports), "upstream_ports": sorted(k.upstream_ports)}
            for k in c.kills
        ],
        "replace_max_s": round(max(c.replace_seconds), 2) if c.replace_seconds else None,
        "trends": [asdict(t) for t in trends],
        "samples": [asdict(s) for s in c.samples],
        "problems": c.problems + steep_lines,
        "ok": not verdict.unallowed and not c.problems and not steep_lines,
    }


def _per_kind(failures: list[dict[str, Any]], kind: str) -> int:
    return sum(1 for f in failures if f["kind"] == kind)


def summary(r: dict[str, Any]) -> str:
    lines = [
        f"Turnout soak: {r['mode']}, {r['seconds']:.0f} s, {r['args']['workers']} workers",
        "",
        f"{'kind':14} {'ok':>9} {'failed (allowed)':>17} {'failed (not)':>13}",
    ]
    for kind in KINDS:
        lines.append(
            f"{kind:14} {r['requests'][kind]:9,} {_per_kind(r['allowed'], kind):17} "
            f"{_per_kind(r['unallowed'], kind):13}"
        )
    rl = r["reloads"]
    lines += [
        "",
        f"reloads: {rl['done']} applied, {rl['failed']} not; time to live on every worker "
        f"mean {rl['apply_mean_s']} s, max {rl['apply_max_s']} s",
        f"kills: {len(r['kills'])}; replacement ready within {r['replace_max_s']} s",
        "",
        f"{'process':18} {'fitted':>7} {'RSS start':>10} {'RSS end':>9} {'MiB/h':>8} "
        f"{'fds':>9} {'fds/h':>7} {'fds floor':>10}",
    ]
    for t in r["trends"]:
        rss = "-" if t["rss_slope"] is None else f"{t['rss_slope'] / MiB:.1f}"
        fds = "-" if t["fds_slope"] is None else f"{t['fds_slope']:.1f}"
        lines.append(
            f"{t['role'] + ' ' + str(t['pid']):18} {t['seconds']:6.0f}s "
            f"{t['rss_start'] / MiB:9.1f}M {t['rss_end'] / MiB:8.1f}M {rss:>8} "
            f"{t['fds_start']:>4}→{t['fds_end']:<4} {fds:>7} "
            f"{t['fds_floor_start']:>5}→{t['fds_floor_end']:<4}"
        )
    lines.append("")
    for f in r["unallowed"][:20]:
        lines.append(f"NOT ALLOWED {f['kind']} port={f['port']}: {f['error']}")
    lines += [f"PROBLEM {p}" for p in r["problems"]]
    lines.append("PASS" if r["ok"] else "FAIL")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=1800, help="soak seconds")
    ap.add_argument("--reload-every", type=float, default=10, help="seconds; 0 = never")
    ap.add_argument("--kill-every", type=float, default=120, help="seconds; 0 = never")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--storm", type=int, default=0, help="N reloads in a row, no kills")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "turnout-soak")
    ap.add_argument("--slots", type=int, default=2, help="concurrent clients per kind")
    ap.add_argument("--rate", type=float, default=5, help="requests per second per client")
    ap.add_argument("--sample-every", type=float, default=5)
    ap.add_argument("--warmup", type=float, default=60, help="seconds left out of the slopes")
    ap.add_argument("--window", type=float, default=15, help="seconds after a kill")
    ap.add_argument("--reload-timeout", type=float, default=15)
    ap.add_argument("--max-rss-slope", type=float, default=8, help="MiB/h per process")
    ap.add_argument(
        "--max-fd-drift", type=int, default=5, help="rise of a process's fewest open fds"
    )
    ap.add_argument(
        "--min-slope-window", type=float, default=600, help="judge slopes fitted on this many s"
    )
    args = ap.parse_args()
    if args.workers < 2 and args.kill_every and not args.storm:
        ap.error("--workers must be 2 or more when killing workers")
    args.out.mkdir(parents=True, exist_ok=True)
    result = run(args, args.out)
    (args.out / "soak.json").write_text(json.dumps(result, indent=1, default=str))
    print(summary(result))
    print(f"\nwritten: {args.out / 'soak.json'}, {args.out / 'turnout.log'}")
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
