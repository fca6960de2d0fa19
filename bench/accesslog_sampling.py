#!/usr/bin/env python3
"""Per-request cost of the access log at several sampling rates (``--access-log-sample``).

Runs ``bench/inproc.py``'s socket-free request loop (a real HTTP/1.1 transport, route
table and upstream connection over fake transports; 200 responses, so every request is
subject to sampling) with the log off, then on at each rate, best of 7 loops, and prints
µs per request and the cost over "off". Rounds alternate the order to spread drift.

    python bench/accesslog_sampling.py [--requests 50000] [--rounds 3]
"""

from __future__ import annotations

import argparse

import uvloop
from inproc import measure

from turnout.core import accel

RATES = (1.0, 0.1, 0.01, 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"data plane: {accel.describe()}")
    results: dict[str, list[float]] = {}
    cases: list[tuple[str, bool, float]] = [("off", False, 1.0)]
    cases += [(f"sample {rate:g}", True, rate) for rate in RATES]
    for round_ in range(args.rounds):
        order = cases if round_ % 2 == 0 else list(reversed(cases))
        for name, on, rate in order:
            us = uvloop.run(measure(args.requests, on, False, rate))
            results.setdefault(name, []).append(us)
    off = min(results["off"])
    print(f"{'access log':<14}{'best us/req':>12}{'over off':>10}")
    for name, _, _ in cases:
        best = min(results[name])
        print(f"{name:<14}{best:>12.2f}{best - off:>+10.2f}")


if __name__ == "__main__":
    main()
