#!/usr/bin/env python3
"""A fixed number of keep-alive GETs, for counters that need an exact request count.

    python bench/fixed_load.py PORT REQUESTS CONNECTIONS [PATH]

wrk runs for a time, so its request count is only known afterwards and a profiler's
window never lines up with it exactly; this sends exactly REQUESTS requests (split over
CONNECTIONS connections, each waiting for its response before the next request) and
exits non-zero unless every response was a 200.
"""

from __future__ import annotations

import asyncio
import sys


async def connection(port: int, path: str, count: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    ok = 0
    try:
        for _ in range(count):
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await asyncio.wait_for(reader.readexactly(length), 30)
            ok += head.startswith(b"HTTP/1.1 200 ")
    finally:
        writer.close()
    return ok


async def run(port: int, requests: int, connections: int, path: str) -> int:
    each = requests // connections
    done = await asyncio.gather(*(connection(port, path, each) for _ in range(connections)))
    sent = each * connections
    print(f"{sum(done)} of {sent} requests answered 200")
    return 0 if sum(done) == sent else 1


def main() -> None:
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    port, requests, connections = (int(a) for a in sys.argv[1:4])
    path = sys.argv[4] if len(sys.argv) == 5 else "/api/items/42"
    sys.exit(asyncio.run(run(port, requests, connections, path)))


if __name__ == "__main__":
    main()
