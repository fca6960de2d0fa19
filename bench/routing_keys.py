#!/usr/bin/env python3
"""Per-request cost of finding a sandbox routing key (``proxy.routing.keys.find_key``).

While any Sandbox or RouteGroup exists, every request is searched for a key. This times
that search on request heads shaped like real traffic (a browser-like request with
cookies and a W3C ``baggage`` header without our member; the same with the key in
``baggage``; with the key in the ``x-turnout-routing-key`` header; and wrk's minimal
request), best of 7 runs of 200 000 calls, and relates it to the CPU Turnout spends per
proxied request (pass the figure from docs/benchmarks.md with --per-request-us).

    python bench/routing_keys.py [--per-request-us 24.5]
"""

from __future__ import annotations

import argparse
import timeit

from turnout.core import accel
from turnout.proxy.protocols.heads import RequestHead
from turnout.proxy.routing.keys import find_key

BROWSER = [
    (b"host", b"shop.example.com"),
    (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0"),
    (b"accept", b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    (b"accept-language", b"en-GB,en;q=0.9"),
    (b"accept-encoding", b"gzip, deflate, br"),
    (b"cookie", b"session=8f14e45fceea167a5a36dedd4bea2543; theme=dark; consent=yes"),
    (b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    (b"baggage", b"userId=alice,serverNode=DF%2028,isProduction=false"),
]
CASES = {
    "browser request, no key": (BROWSER, b"page=2"),
    "browser request, key in baggage": (
        [*BROWSER[:-1], (b"baggage", b"userId=alice,turnout-routing-key=feature-x")],
        b"page=2",
    ),
    "key in x-turnout-routing-key": ([*BROWSER, (b"x-turnout-routing-key", b"feature-x")], b""),
    "wrk request (host, x-user-id), no key": (
        [(b"host", b"127.0.0.1:8080"), (b"x-user-id", b"bench-user-42")],
        b"",
    ),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-request-us", type=float, default=0.0)
    ap.add_argument("--number", type=int, default=200_000)
    args = ap.parse_args()
    print(f"data plane: {accel.describe()}")
    print("| request | ns per search |" + (" share of a request |" if args.per_request_us else ""))
    print("|---|---:|" + ("---:|" if args.per_request_us else ""))
    for name, (headers, query) in CASES.items():
        head = RequestHead(b"GET", b"/products", query, headers)
        best = min(timeit.repeat(lambda head=head: find_key(head), number=args.number, repeat=7))
        ns = best / args.number * 1e9
        share = f" {ns / (args.per_request_us * 1000) * 100:.1f} % |" if args.per_request_us else ""
        print(f"| {name} | {ns:.0f} |{share}")


if __name__ == "__main__":
    main()
