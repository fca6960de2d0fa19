"""aiohttp client integration: a ``TraceConfig`` that injects the propagation headers.

    session = aiohttp.ClientSession(trace_configs=[trace_config()])

aiohttp signals ``on_request_start`` with the very header multidict the request is
then built from (and reused for its redirects), awaited in the calling task, where the
request's context is current; writing into it is aiohttp's documented way to add
headers from a trace config.
"""

from __future__ import annotations

from types import SimpleNamespace

import aiohttp

from turnout.propagation.context import inject


async def on_request_start(
    session: aiohttp.ClientSession,
    trace_config_ctx: SimpleNamespace,
    params: aiohttp.TraceRequestStartParams,
) -> None:
    """The ``on_request_start`` callback: adds ``baggage`` / ``x-turnout-routing-key``."""
    inject(params.headers)


def trace_config() -> aiohttp.TraceConfig:
    """A new ``TraceConfig`` for ``ClientSession(trace_configs=[...])``; add your own
    callbacks to it or use it alongside others."""
    config = aiohttp.TraceConfig()
    config.on_request_start.append(on_request_start)
    return config
