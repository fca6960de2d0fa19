"""The ``grpc.aio`` server interceptor, for every kind of handler the aio server runs:
coroutines, async generators, coroutines writing through the context, and plain
(sync) functions and generators, which the aio server runs in a thread pool.

The sync ones are where setting the context in ``intercept_service`` would not do: the
aio server calls them through ``loop.run_in_executor``, outside the RPC's context
(grpc/grpc#37881). The interceptor wraps the handler instead.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest

from tests.integration.propagation.conftest import NO_PROXY
from turnout.propagation import current, extract, use
from turnout.propagation.grpc import aio_server_interceptor, client_interceptor
from turnout.testing import BackgroundLoop


def _key() -> bytes:
    return json.dumps(current().routing_key).encode()


async def async_unary(request: bytes, context: Any) -> bytes:
    await asyncio.sleep(0)
    # A task started by the handler inherits the context too.
    return await asyncio.create_task(asyncio.to_thread(_key))


async def async_generator(request: bytes, context: Any) -> AsyncIterator[bytes]:
    for _ in range(3):
        await asyncio.sleep(0)
        yield _key()


async def async_writer(request: bytes, context: Any) -> None:
    for _ in range(2):
        await context.write(_key())


async def async_bidi(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
    async for _ in requests:
        yield _key()


async def async_collect(requests: AsyncIterator[bytes], context: Any) -> bytes:
    async for _ in requests:
        pass
    return _key()


def sync_unary(request: bytes, context: Any) -> bytes:
    return _key()


def sync_generator(request: bytes, context: Any) -> Iterator[bytes]:
    for _ in range(3):
        yield _key()


def sync_bidi(requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
    for _ in requests:
        yield _key()


def _identity(data: bytes) -> bytes:
    return data


def _handlers() -> Any:
    options = {"request_deserializer": _identity, "response_serializer": _identity}
    return grpc.method_handlers_generic_handler(
        "aio.S",
        {
            "AsyncUnary": grpc.unary_unary_rpc_method_handler(async_unary, **options),
            "AsyncGenerator": grpc.unary_stream_rpc_method_handler(async_generator, **options),
            "AsyncWriter": grpc.unary_stream_rpc_method_handler(async_writer, **options),
            "AsyncBidi": grpc.stream_stream_rpc_method_handler(async_bidi, **options),
            "AsyncCollect": grpc.stream_unary_rpc_method_handler(async_collect, **options),
            "SyncUnary": grpc.unary_unary_rpc_method_handler(sync_unary, **options),
            "SyncGenerator": grpc.unary_stream_rpc_method_handler(sync_generator, **options),
            "SyncBidi": grpc.stream_stream_rpc_method_handler(sync_bidi, **options),
        },
    )


@pytest.fixture(scope="module")
def aio_target(bg: BackgroundLoop) -> Iterator[str]:
    pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="aio-sync-handlers")

    async def start() -> tuple[Any, int]:
        server = grpc.aio.server(
            migration_thread_pool=pool, interceptors=[aio_server_interceptor()], options=NO_PROXY
        )
        server.add_generic_rpc_handlers((_handlers(),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    server, port = bg.run(start())
    yield f"127.0.0.1:{port}"
    bg.run(server.stop(None))
    pool.shutdown()


@pytest.fixture(scope="module")
def channel(aio_target: str) -> Iterator[grpc.Channel]:
    plain = grpc.insecure_channel(aio_target, options=NO_PROXY)
    yield grpc.intercept_channel(plain, client_interceptor())
    plain.close()


def _call(channel: grpc.Channel, method: str) -> list[Any]:
    path = f"/aio.S/{method}"
    if method.endswith("Unary"):
        answers = [channel.unary_unary(path)(b"", timeout=10)]
    elif method.endswith("Collect"):
        answers = [channel.stream_unary(path)(iter([b"a", b"b"]), timeout=10)]
    elif method.endswith("Bidi"):
        answers = list(channel.stream_stream(path)(iter([b"a", b"b"]), timeout=10))
    else:
        answers = list(channel.unary_stream(path)(b"", timeout=10))
    return [json.loads(answer) for answer in answers]


METHODS = [
    "AsyncUnary",
    "AsyncGenerator",
    "AsyncWriter",
    "AsyncBidi",
    "AsyncCollect",
    "SyncUnary",
    "SyncGenerator",
    "SyncBidi",
]


@pytest.mark.parametrize("method", METHODS)
def test_every_handler_kind_sees_the_key(channel: grpc.Channel, method: str) -> None:
    with use(extract({"baggage": "turnout-routing-key=a1"})):
        keyed = _call(channel, method)
    assert keyed and all(key == "a1" for key in keyed)
    unkeyed = _call(channel, method)  # nothing left behind by the keyed call
    assert unkeyed and all(key is None for key in unkeyed)


def test_concurrent_rpcs_keep_their_own_keys(channel: grpc.Channel) -> None:
    def one(i: int) -> tuple[int, list[Any]]:
        with use(extract({"x-turnout-routing-key": f"key{i}"} if i % 2 else {})):
            return i, _call(channel, METHODS[i % len(METHODS)])

    with ThreadPoolExecutor(max_workers=16) as pool:
        for i, keys in pool.map(one, range(32)):
            assert keys and all(key == (f"key{i}" if i % 2 else None) for key in keys), i
