#!/usr/bin/env python3
"""CPU per request of the sans-IO HTTP/2 server codec alone (no sockets, no upstream).

Replays what ``h2load -c1 -m10`` sends (a GET with h2load's header set; ten streams
per read) into ``Http2ServerConnection`` and answers each stream as the exchange does
(``send_response`` + ``send_body`` of 100 bytes + ``end_response``), pulling the output
once per read. The client bytes are encoded before the clock starts, so the figure is
the codec's own cost: the part of a proxied HTTP/2 request a faster codec can remove.
``bench/protocols.py`` gives the end-to-end figure beside nginx.

    .venv/bin/python bench/h2codec.py [--requests 20000] [--profile out.txt] [--reference]

``--reference`` puts back what the codec used before issue 17 (the ``hpack`` library's
contexts and h2's own inbound validation and cookie joining), so the before/after ratio
comes from one build and one run.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import resource
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hpack
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.settings import SettingCodes

from turnout.proxy.protocols import http2_overrides as overrides
from turnout.proxy.protocols.heads import Headers, RequestHead, ResponseHead
from turnout.proxy.protocols.http1 import Limits
from turnout.proxy.protocols.http2 import MAX_HEADER_LIST_SIZE, Http2ServerConnection

STREAMS_PER_READ = 10
BODY = b"x" * 99 + b"\n"
REQUEST = [
    (b":method", b"GET"),
    (b":scheme", b"http"),
    (b":authority", b"127.0.0.1:8080"),
    (b":path", b"/"),
    (b"user-agent", b"h2load nghttp2/1.52.0"),
    (b"accept-encoding", b"gzip, deflate"),
]


class Answer:
    """``Http2Events`` that answers every complete request at once."""

    def __init__(self) -> None:
        self.server: Http2ServerConnection | None = None
        self.done = 0

    def request_received(self, stream_id: int, head: RequestHead) -> None:
        pass

    def request_body(self, stream_id: int, data: bytes) -> None:
        pass

    def request_complete(self, stream_id: int, trailers: Headers | None) -> None:
        server = self.server
        assert server is not None
        head = ResponseHead(200, [(b"content-type", b"text/plain"), (b"server", b"up")])
        head.content_length = len(BODY)
        server.send_response(stream_id, head, False)
        server.send_body(stream_id, BODY)
        server.end_response(stream_id, None)
        self.done += 1

    def request_failed(self, stream_id: int, status: int, message: str) -> None:
        raise AssertionError(message)

    def request_refused(self, status: int, message: str) -> None:
        raise AssertionError(message)

    def stream_writable(self, stream_id: int, writable: bool) -> None:
        pass

    def stream_closed(self, stream_id: int, reset: bool) -> None:
        pass


def client_reads(requests: int) -> list[bytes]:
    """The client's bytes, one element per read of the server."""
    client = H2Connection(
        H2Configuration(client_side=True, header_encoding=None, validate_inbound_headers=False)
    )
    client.local_settings.update({SettingCodes.INITIAL_WINDOW_SIZE: (1 << 31) - 1})
    client.initiate_connection()
    client.increment_flow_control_window((1 << 31) - 1 - 65535)
    reads = [client.data_to_send()]
    sid = 1
    for _ in range(requests // STREAMS_PER_READ):
        for _ in range(STREAMS_PER_READ):
            client.send_headers(sid, REQUEST, end_stream=True)
            # The server's answers never reach this client: forget the stream.
            client.streams.pop(sid)
            sid += 2
        reads.append(client.data_to_send())
    return reads


def reference(server: Http2ServerConnection) -> None:
    """The codec as it was: hpack's contexts, h2's validation of received fields."""
    conn = server._h2
    conn.encoder = hpack.Encoder()
    conn.decoder = hpack.Decoder(MAX_HEADER_LIST_SIZE)
    conn.config.validate_inbound_headers = True
    conn.config.normalize_inbound_headers = True
    overrides.request_fields = overrides.trailer_fields = lambda headers: headers


def run(reads: list[bytes], ref: bool = False) -> tuple[float, int]:
    handler = Answer()
    server = Http2ServerConnection(handler, Limits())
    saved = overrides.request_fields, overrides.trailer_fields
    if ref:
        reference(server)
    handler.server = server
    try:
        return _run(server, handler, reads)
    finally:
        overrides.request_fields, overrides.trailer_fields = saved


def _run(server: Http2ServerConnection, handler: Answer, reads: list[bytes]) -> tuple[float, int]:
    out = 0
    before = resource.getrusage(resource.RUSAGE_SELF)
    for data in reads:
        server.receive(data)
        out += len(server.data_to_send())
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    assert handler.done == (len(reads) - 1) * STREAMS_PER_READ, handler.done
    assert not server.closed, server.error
    return cpu, handler.done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs")
    ap.add_argument("--profile", help="write a cProfile summary here")
    ap.add_argument("--reference", action="store_true", help="also time the pre-issue-17 codec")
    args = ap.parse_args()
    reads = client_reads(args.requests)
    run(reads[: len(reads) // 10 + 1])  # warm up
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        run(reads)
        prof.disable()
        with open(args.profile, "w") as fh:
            pstats.Stats(prof, stream=fh).sort_stats("tottime").print_stats(40)
    # Alternate the two so that a change in the machine's load hits both alike.
    ours: list[float] = []
    ref: list[float] = []
    for _ in range(args.repeat):
        ours.append(run(reads)[0])
        if args.reference:
            ref.append(run(client_reads(args.requests), ref=True)[0])
    best = min(ours) / args.requests * 1e6
    print(f"{args.requests} requests: {best:.1f} µs CPU per request")
    if ref:
        before = min(ref) / args.requests * 1e6
        print(f"reference (hpack + h2 validation): {before:.1f} µs ({before / best:.2f}×)")


if __name__ == "__main__":
    main()
