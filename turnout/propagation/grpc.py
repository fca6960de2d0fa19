"""gRPC integration: interceptors that carry the propagation context over RPCs, as
``baggage`` and ``x-turnout-routing-key`` metadata.

Client (sync ``grpc`` channels)::

    channel = grpc.intercept_channel(grpc.insecure_channel(target), client_interceptor())

The interceptor runs when the call is made, in the calling thread, where the request's
context is current, and adds the metadata to the call's own (merging into a
``baggage`` entry the caller set). One object intercepts all four call shapes.

Server (sync ``grpc.server``, and ``grpc.aio.server``)::

    server = grpc.server(pool, interceptors=[server_interceptor()])
    server = grpc.aio.server(interceptors=[aio_server_interceptor()])

A sync server looks the handler up (running the interceptors) in its serving thread
and runs the handler later in its thread pool; for a streaming response it calls
``next`` on the handler's iterator once per message. Whether a context variable set in
``intercept_service`` is still set there is an implementation detail that has changed
between grpcio versions (recent ones run both in one per-RPC
``contextvars.Context``; the aio server runs sync handlers in an executor outside the
RPC's context, grpc/grpc#37881). So the interceptor relies on none of it: it returns a
copy of the handler whose behaviour function runs, and whose response iterator is
stepped, inside a :class:`contextvars.Context` holding the request's propagation
context, wherever and whenever the server calls them.

``grpc.aio`` servers choose how to run a behaviour by its kind (coroutine function,
async generator function, or a plain function run in the server's thread pool), so
each wrapper keeps the kind of what it wraps: coroutines and async generators run with
the context set in the RPC's task around each step, plain functions as on the sync
server.

Not covered: ``grpc.aio`` channels (client side), which take per-shape
``grpc.aio.*ClientInterceptor`` classes; pass ``metadata=`` built from
:func:`~turnout.propagation.context.outbound_headers` there for now.
"""

from __future__ import annotations

import collections
import functools
import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import grpc

from turnout.propagation.context import (
    BAGGAGE,
    IteratorInContext,
    PropagationContext,
    bound_context,
    extract,
    outbound_headers,
    use,
)

# What grpc calls a behaviour: (request or request iterator, servicer context) -> ...
Behavior = Callable[[Any, Any], Any]


class _CallDetails(
    collections.namedtuple(
        "_CallDetails",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,  # type: ignore[misc]  # grpcio ships no type information
):
    """grpc.ClientCallDetails is abstract; this is how grpc's own code makes one."""


def _with_metadata(details: Any) -> Any:
    metadata = list(details.metadata or ())
    out = outbound_headers(str(v) for k, v in metadata if k == BAGGAGE)
    if not out:
        return details
    metadata = [(k, v) for k, v in metadata if k not in out]
    metadata.extend(out.items())
    return _CallDetails(
        details.method,
        details.timeout,
        metadata,
        details.credentials,
        getattr(details, "wait_for_ready", None),
        getattr(details, "compression", None),
    )


class ClientInterceptor(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[misc]
    grpc.StreamStreamClientInterceptor,  # type: ignore[misc]
):
    """Adds ``baggage`` / ``x-turnout-routing-key`` metadata to every call."""

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(_with_metadata(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(_with_metadata(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return continuation(_with_metadata(details), request_iterator)

    def intercept_stream_stream(
        self, continuation: Any, details: Any, request_iterator: Any
    ) -> Any:
        return continuation(_with_metadata(details), request_iterator)


def client_interceptor() -> ClientInterceptor:
    """The interceptor for ``grpc.intercept_channel(channel, client_interceptor())``."""
    return ClientInterceptor()


def _wrap_behavior(behavior: Behavior, ctx: PropagationContext, streaming: bool) -> Behavior:
    if inspect.iscoroutinefunction(behavior):

        @functools.wraps(behavior)
        async def run_coroutine(request: Any, servicer_context: Any) -> Any:
            # Awaited start to end in the RPC's task: set and reset stay in one context.
            with use(ctx):
                return await behavior(request, servicer_context)

        return run_coroutine

    if inspect.isasyncgenfunction(behavior):

        @functools.wraps(behavior)
        async def run_async_generator(request: Any, servicer_context: Any) -> AsyncIterator[Any]:
            responses = behavior(request, servicer_context)
            # Set around each step rather than across the yields: between steps the
            # server's task runs its own code, and an abandoned generator is closed
            # from another task, where a token set here could not be reset.
            try:
                while True:
                    with use(ctx):
                        try:
                            response = await anext(responses)
                        except StopAsyncIteration:
                            return
                    yield response
            finally:
                with use(ctx):
                    await responses.aclose()

        return run_async_generator

    if streaming:

        @functools.wraps(behavior)
        def run_generator(request: Any, servicer_context: Any) -> Iterator[Any]:
            # A generator function, so the aio server also sees a sync streaming handler.
            context = bound_context(ctx)
            yield from IteratorInContext(context, context.run(behavior, request, servicer_context))

        return run_generator

    @functools.wraps(behavior)
    def run(request: Any, servicer_context: Any) -> Any:
        return bound_context(ctx).run(behavior, request, servicer_context)

    return run


def _in_context(handler: Any, ctx: PropagationContext) -> Any:
    """A copy of an ``RpcMethodHandler`` whose behaviour runs inside ``ctx``."""
    options = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        behavior = _wrap_behavior(handler.stream_stream, ctx, streaming=True)
        return grpc.stream_stream_rpc_method_handler(behavior, **options)
    if handler.request_streaming:
        behavior = _wrap_behavior(handler.stream_unary, ctx, streaming=False)
        return grpc.stream_unary_rpc_method_handler(behavior, **options)
    if handler.response_streaming:
        behavior = _wrap_behavior(handler.unary_stream, ctx, streaming=True)
        return grpc.unary_stream_rpc_method_handler(behavior, **options)
    behavior = _wrap_behavior(handler.unary_unary, ctx, streaming=False)
    return grpc.unary_unary_rpc_method_handler(behavior, **options)


class ServerInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Runs each RPC's handler inside the context its invocation metadata carries."""

    def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            return None  # not found: let the server answer UNIMPLEMENTED
        return _in_context(handler, extract(handler_call_details.invocation_metadata or ()))


def server_interceptor() -> ServerInterceptor:
    """The interceptor for ``grpc.server(..., interceptors=[server_interceptor()])``."""
    return ServerInterceptor()


class AioServerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """The ``grpc.aio`` server's counterpart of :class:`ServerInterceptor`."""

    async def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        return _in_context(handler, extract(handler_call_details.invocation_metadata or ()))


def aio_server_interceptor() -> AioServerInterceptor:
    """The interceptor for ``grpc.aio.server(interceptors=[aio_server_interceptor()])``."""
    return AioServerInterceptor()
