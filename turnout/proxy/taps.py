"""Request mirrors' body taps: what a rule's forward filters get when a request goes out.

A tap sees the request head as it goes on the wire and then copies of the body: first
the chunks that arrived while the request waited (a fault delay, a suspended filter),
then each chunk as it is forwarded (``Exchange.request_body``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from turnout.proxy.protocols.http1_client import render_request
from turnout.proxy.protocols.http1_wire import chunk, last_chunk

if TYPE_CHECKING:
    from turnout.proxy.filters.base import BodyTap, FilterContext
    from turnout.proxy.protocols.heads import Headers, RequestHead
    from turnout.proxy.snapshot.tables import RouteAction


def open_taps(
    action: RouteAction,
    ctx: FilterContext,
    head: RequestHead,
    client_ip: bytes,
    scheme: bytes,
    pending: list[bytes] | None,
    trailers: Headers | None,
    request_done: bool,
) -> list[BodyTap] | None:
    """The taps of ``action``'s forward filters, fed what the request already has."""
    wire_head = render_request(head, client_ip, scheme)
    taps: list[BodyTap] = []
    if ctx.ran is not None:
        ctx.ran += action.forward_filters
    for flt in action.forward_filters:
        tap = flt.on_forward(ctx, wire_head)
        if tap is None:
            continue
        if pending:
            for data in pending:
                tap.body(chunk(data) if head.chunked else data)
        if request_done:
            if head.chunked:
                tap.body(last_chunk(trailers))
            tap.end()
        taps.append(tap)
    return taps or None
