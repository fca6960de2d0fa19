#!/usr/bin/env python3
"""Compression cost per KiB: the gateway's own encoder (``proxy.filters.compress``).

    .venv/bin/python bench/compression.py [--repeat 5]

For each coding at the policy's default level (gzip 6, brotli 4, zstd 3) and for bodies
of 4 KiB, 64 KiB and 1 MiB of JSON (an API response: repetitive keys, varied numbers),
it encodes the body the way the exchange does (``Compressor.chunk`` per 64 KiB upstream
read, then ``end``) and reports the best of ``--repeat`` runs as CPU µs per KiB of input
(``time.process_time``) and the compressed size; also the cost of decoding a request body
(``Decompressor``). In-process, no sockets: the cost a compressed response adds to a
request is this figure times its size in KiB.
"""

from __future__ import annotations

import argparse
import json
import random
import time

from turnout.proxy.filters.compress import BROTLI, GZIP, ZSTD, Compressor, Decompressor

LEVELS = {GZIP: 6, BROTLI: 4, ZSTD: 3}
READ = 65536


def body(size: int) -> bytes:
    rng = random.Random(42)
    items = []
    out = b""
    while len(out) < size:
        items.append(
            {
                "id": len(items),
                "price": rng.randint(1, 99999) / 100,
                "name": f"item-{rng.random():.6f}",
                "tags": ["a", "b"],
            }
        )
        if len(items) % 50 == 0:
            out = json.dumps({"items": items}).encode()
    return out[:size]


def encode(coding: bytes, data: bytes) -> bytes:
    c = Compressor(coding, LEVELS[coding])
    parts = [c.chunk(data[i : i + READ]) for i in range(0, len(data), READ)]
    parts.append(c.end())
    return b"".join(parts)


def best(fn: object, repeat: int, number: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        for _ in range(number):
            fn()  # type: ignore[operator]
        times.append((time.process_time() - t0) / number)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    print("| coding (level) | body | encoded size | encode µs/KiB | decode µs/KiB |")
    print("|---|---:|---:|---:|---:|")
    for size in (4 << 10, 64 << 10, 1 << 20):
        data = body(size)
        number = max(1, (4 << 20) // size)
        for coding in (GZIP, BROTLI, ZSTD):
            enc = encode(coding, data)
            t_enc = best(lambda c=coding, d=data: encode(c, d), args.repeat, number)

            def dec(c: bytes = coding, e: bytes = enc) -> None:
                d = Decompressor(c, 1 << 30)
                for i in range(0, len(e), READ):
                    d.chunk(e[i : i + READ])
                d.end()

            t_dec = best(dec, args.repeat, number)
            kib = size / 1024
            print(
                f"| {coding.decode()} ({LEVELS[coding]}) | {size >> 10} KiB | "
                f"{len(enc) / size * 100:.1f} % | {t_enc / kib * 1e6:.1f} | "
                f"{t_dec / kib * 1e6:.1f} |"
            )


if __name__ == "__main__":
    main()
