"""The propagation kit: carry the sandbox routing key, and the rest of the W3C baggage,
from each request a service receives to every call it makes while serving it, so the
gateway in front of the next hop can route the call to the sandbox's override.

A server integration extracts the context from each inbound request and runs the
request inside it; a client integration injects it into each outbound call. The
context lives in a ``contextvars.ContextVar`` (see :mod:`turnout.propagation.context`),
so it follows the request into coroutines and ``asyncio`` tasks by itself; for thread
pools use :func:`wrap` or :class:`ContextThreadPoolExecutor`.

Each integration is its own module and is imported on its own, so this package needs
none of the libraries it integrates with::

    # ASGI (Starlette, FastAPI, any ASGI app) - inbound
    from turnout.propagation.asgi import PropagationMiddleware
    app = PropagationMiddleware(app)

    # WSGI (Flask, Django, any WSGI app) - inbound
    from turnout.propagation.wsgi import PropagationMiddleware
    app = PropagationMiddleware(app)

    # httpx, sync or async - outbound
    from turnout.propagation.httpx import event_hooks
    client = httpx.AsyncClient(event_hooks=event_hooks())

    # requests - outbound
    from turnout.propagation.requests import install
    session = install(requests.Session())

    # aiohttp client - outbound
    from turnout.propagation.aiohttp import trace_config
    session = aiohttp.ClientSession(trace_configs=[trace_config()])

    # gRPC (sync channels; sync and grpc.aio servers)
    from turnout.propagation import grpc as tp_grpc
    channel = grpc.intercept_channel(channel, tp_grpc.client_interceptor())
    server = grpc.server(pool, interceptors=[tp_grpc.server_interceptor()])
    server = grpc.aio.server(interceptors=[tp_grpc.aio_server_interceptor()])

    # Anything else: by hand
    from turnout.propagation import current, extract, inject, use
    with use(extract(inbound_headers)):
        inject(outbound_headers)  # any MutableMapping[str, str]
        current().routing_key     # the key, or None

    # Thread pools
    from turnout.propagation import ContextThreadPoolExecutor, wrap
    pool = ContextThreadPoolExecutor()
    await loop.run_in_executor(pool, blocking_call)
    threading.Thread(target=wrap(blocking_call)).start()
"""

from __future__ import annotations

from turnout.propagation.baggage import (
    MAX_BYTES,
    MAX_MEMBERS,
    Member,
    format_baggage,
    parse_baggage,
    parse_tracestate,
)
from turnout.propagation.context import (
    EMPTY,
    ContextThreadPoolExecutor,
    PropagationContext,
    bound_context,
    current,
    extract,
    inject,
    outbound_headers,
    use,
    wrap,
)

__all__ = [
    "EMPTY",
    "MAX_BYTES",
    "MAX_MEMBERS",
    "ContextThreadPoolExecutor",
    "Member",
    "PropagationContext",
    "bound_context",
    "current",
    "extract",
    "format_baggage",
    "inject",
    "outbound_headers",
    "parse_baggage",
    "parse_tracestate",
    "use",
    "wrap",
]
