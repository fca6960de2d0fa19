#!/usr/bin/env python3
"""Fuzz the gateway's parsers of untrusted bytes (targets in tests/fuzz/targets.py).

    .venv/bin/python bench/fuzz.py --target http1 --runs 1000000
    .venv/bin/python bench/fuzz.py --target all --runs 20000 --engine mutate
    .venv/bin/python bench/fuzz.py --seed        # rebuild tests/fuzz/corpus/ from the tests

Engines: ``atheris`` (coverage-guided libFuzzer, if installed: ``pip install atheris``)
or ``mutate``, the deterministic mutator of ``targets.mutate`` seeded by ``--seed-value``
(reproducible: the same command finds the same input). Every input runs under a
``--timeout`` bound (SIGALRM): an input that takes longer is a hang and is reported like
a crash. A failing input is written to ``bench/results/fuzz/<target>-<sha1>`` and the
run stops with exit code 1.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import signal
import ssl
import sys
import time
from pathlib import Path
from string import Template
from types import FrameType

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.fuzz import targets  # noqa: E402  (the repository root is on the path now)

FINDINGS = REPO / "bench" / "results" / "fuzz"
MAX_SEED = 8192  # bytes; bigger test vectors (limit probes) are left out of the corpus


class Hang(Exception):
    pass


def _alarm(_signum: int, _frame: FrameType | None) -> None:
    raise Hang("the input took longer than the per-input bound")


def run_one(fn: targets.Target, data: bytes, timeout: float) -> None:
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        fn(data)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def save(name: str, data: bytes) -> Path:
    FINDINGS.mkdir(parents=True, exist_ok=True)
    path = FINDINGS / f"{name}-{hashlib.sha1(data).hexdigest()[:12]}"
    path.write_bytes(data)
    return path


def fuzz_mutate(name: str, runs: int, seed: int, timeout: float) -> int:
    fn = targets.TARGETS[name]
    pool = targets.corpus(name) or [b""]
    rng = random.Random(seed)
    started = time.monotonic()
    for i in range(runs):
        data = pool[i] if i < len(pool) else targets.mutate(rng, rng.choice(pool), pool)
        try:
            run_one(fn, data, timeout)
        except Exception as exc:
            path = save(name, data)
            print(f"{name}: FAILED at execution {i + 1}: {type(exc).__name__}: {exc} ({path})")
            return 1
        if (i + 1) % 100_000 == 0:
            print(f"{name}: {i + 1} executions", flush=True)
    took = time.monotonic() - started
    print(f"{name}: {runs} executions, no failure ({took:.0f} s, {runs / took:.0f}/s)")
    return 0


def fuzz_atheris(name: str, runs: int, timeout: float) -> int:
    import atheris  # type: ignore[import-not-found]

    fn = targets.TARGETS[name]

    def one(data: bytes) -> None:
        try:
            run_one(fn, data, timeout)
        except Exception:
            print(f"{name}: failing input saved as {save(name, data)}")
            raise

    # libFuzzer adds what it finds to the first directory: a work copy, not the seeds.
    work = FINDINGS / f"corpus-{name}"
    work.mkdir(parents=True, exist_ok=True)
    fn(b"")  # import and build everything the target needs before instrumenting it
    atheris.instrument_all()  # Python bytecode only: compiled (mypyc) modules are opaque
    argv = [sys.argv[0], f"-runs={runs}", f"-timeout={int(timeout) + 1}"]
    atheris.Setup([*argv, str(work), str(targets.CORPUS / name)], one)
    atheris.Fuzz()
    return 0


# -- the seed corpus ------------------------------------------------------------------


def _hostile_requests() -> list[bytes]:
    from tests.integration.test_hostile_input import load_corpus

    return [v.request for v in load_corpus()]


def _h2_requests() -> list[bytes]:
    import h2.config
    import h2.connection

    out = []
    for headers, body in (
        ([(":method", "GET"), (":path", "/api/items/42"), (":scheme", "http")], b""),
        ([(":method", "POST"), (":path", "/x"), (":scheme", "http"), (":authority", "a")], b"x"),
    ):
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        conn.send_headers(1, [*headers, ("host", "a")], end_stream=not body)
        if body:
            conn.send_data(1, body, end_stream=True)
        conn.ping(b"12345678")
        out.append(conn.data_to_send()[len(targets.PREFACE) :])
    return out


def _client_hellos() -> list[bytes]:
    out = []
    for name in ("api.example.com", None):
        ctx = ssl.create_default_context()
        obj = ssl.MemoryBIO()
        tls = ctx.wrap_bio(ssl.MemoryBIO(), obj, server_hostname=name)
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        out.append(obj.read())
    return out


def _configs() -> list[bytes]:
    gateway = Template((REPO / "bench" / "turnout-gateway.yaml").read_text())
    text = gateway.safe_substitute(gateway_port=8080, upstream="127.0.0.1:9000")
    out = [text.encode()]
    for path in sorted((REPO / "bench" / "features").glob("*.yaml")):
        out.append(path.read_bytes())
    return out


def seed_corpus() -> None:
    requests = _hostile_requests()
    seeds: dict[str, list[bytes]] = {
        # The first byte picks where the input is split into two reads (targets.split).
        "http1": [bytes([len(r) % 251]) + r for r in requests],
        "routing": [bytes([7]) + r for r in requests[:20]],
        "http2": [bytes([9]) + r for r in _h2_requests()],
        "config": _configs(),  # parsed whole: no split byte
        "clienthello": [bytes([n]) + h for n in (0, 40) for h in _client_hellos()],
    }
    for name, items in seeds.items():
        items = [d for d in items if len(d) <= MAX_SEED]  # the repository stays small
        folder = targets.CORPUS / name
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
        for data in items:
            (folder / hashlib.sha1(data).hexdigest()[:16]).write_bytes(data)
        print(f"{name}: {len(items)} seeds in {folder.relative_to(REPO)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="all", choices=["all", *targets.TARGETS])
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--engine", choices=["auto", "atheris", "mutate"], default="auto")
    ap.add_argument("--seed-value", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds per input")
    ap.add_argument("--seed", action="store_true", help="rebuild the corpus and exit")
    args = ap.parse_args()
    if args.seed:
        seed_corpus()
        return 0
    signal.signal(signal.SIGALRM, _alarm)
    engine = args.engine
    if engine == "auto":
        try:
            import atheris  # type: ignore[import-not-found]  # noqa: F401
        except ImportError:
            engine = "mutate"
        else:
            engine = "atheris"
    names = list(targets.TARGETS) if args.target == "all" else [args.target]
    if engine == "atheris":
        if len(names) != 1:
            ap.error("atheris runs one target per process: give --target")
        return fuzz_atheris(names[0], args.runs, args.timeout)
    return max(fuzz_mutate(n, args.runs, args.seed_value, args.timeout) for n in names)


if __name__ == "__main__":
    sys.exit(main())
