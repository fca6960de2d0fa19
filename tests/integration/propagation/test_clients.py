"""Each client integration against a real server that echoes what it received (service C
of conftest.py), and the thread-pool helpers: a plain ``ThreadPoolExecutor`` loses the
context, which is why ``wrap`` and ``ContextThreadPoolExecutor`` exist."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

import aiohttp
import httpx
import pytest
import requests

from tests.integration.propagation.conftest import fetch
from turnout.propagation import ContextThreadPoolExecutor, PropagationContext, extract, use, wrap
from turnout.propagation import aiohttp as tp_aiohttp
from turnout.propagation import httpx as tp_httpx
from turnout.propagation import requests as tp_requests

INBOUND = extract({"baggage": "turnout-routing-key=k1,other=x"})
NOTHING: dict[str, object] = {"baggage": None, "header": None, "key": None, "members": {}}


def assert_carried(seen: dict[str, Any], key: str = "k1") -> None:
    assert seen["header"] == key
    assert seen["key"] == key
    assert seen["members"] == {"turnout-routing-key": key, "other": "x"}


# -- httpx ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/echo", "/redirect"])
def test_httpx_sync(service_c: str, path: str) -> None:
    hooks = tp_httpx.event_hooks()
    with httpx.Client(event_hooks=hooks, trust_env=False, follow_redirects=True) as client:
        with use(INBOUND):
            assert_carried(client.get(service_c + path).json())
        assert client.get(service_c + path).json() == NOTHING


@pytest.mark.parametrize("path", ["/echo", "/redirect"])
def test_httpx_async(service_c: str, path: str) -> None:
    async def main() -> None:
        hooks = tp_httpx.event_hooks()
        async with httpx.AsyncClient(
            event_hooks=hooks, trust_env=False, follow_redirects=True
        ) as client:
            with use(INBOUND):
                assert_carried((await client.get(service_c + path)).json())
            assert (await client.get(service_c + path)).json() == NOTHING

    asyncio.run(main())


def test_httpx_install_keeps_the_clients_hooks(service_c: str) -> None:
    def own_baggage(request: httpx.Request) -> None:
        request.headers["baggage"] = "mine=1"

    with httpx.Client(event_hooks={"request": [own_baggage]}, trust_env=False) as client:
        tp_httpx.install(client)
        tp_httpx.install(client)
        assert client.event_hooks["request"] == [own_baggage, tp_httpx.inject_request]
        with use(INBOUND):
            seen = client.get(service_c + "/echo").json()
    assert seen["baggage"] == "turnout-routing-key=k1,mine=1,other=x"


# -- requests ---------------------------------------------------------------------------------


def test_requests_session(service_c: str) -> None:
    with tp_requests.install(requests.Session()) as session:
        session.trust_env = False
        with use(INBOUND):
            assert_carried(session.get(service_c + "/echo", timeout=10).json())
            # Redirects, and requests prepared outside the session, go through it too.
            assert_carried(session.get(service_c + "/redirect", timeout=10).json())
            prepared = requests.Request("GET", service_c + "/echo").prepare()
            assert_carried(session.send(prepared, timeout=10).json())
            # The caller's own baggage is merged, not replaced.
            mine = session.get(service_c + "/echo", headers={"Baggage": "mine=1"}, timeout=10)
            assert mine.json()["baggage"] == "turnout-routing-key=k1,mine=1,other=x"
        assert session.get(service_c + "/echo", timeout=10).json() == NOTHING


def test_requests_install_keeps_mounted_adapters() -> None:
    session = requests.Session()
    custom = requests.adapters.HTTPAdapter(max_retries=3)
    session.mount("http://internal/", custom)
    tp_requests.install(session)
    tp_requests.install(session)
    adapter = session.get_adapter("http://internal/x")
    assert isinstance(adapter, tp_requests.PropagatingAdapter)
    assert adapter.inner is custom
    assert list(session.adapters) == ["http://internal/", "https://", "http://"]
    session.close()


# -- aiohttp ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/echo", "/redirect"])
def test_aiohttp(service_c: str, path: str) -> None:
    async def get(session: aiohttp.ClientSession) -> Any:
        async with session.get(service_c + path) as response:
            return await response.json()

    async def main() -> None:
        configs = [tp_aiohttp.trace_config()]
        async with aiohttp.ClientSession(trace_configs=configs) as session:
            with use(INBOUND):
                assert_carried(await get(session))
                seen = await asyncio.gather(*(get(session) for _ in range(4)))
                assert all(one["key"] == "k1" for one in seen)
            assert await get(session) == NOTHING

    asyncio.run(main())


# -- thread pools -----------------------------------------------------------------------------


def test_context_thread_pool_executor(service_c: str) -> None:
    url = service_c + "/echo"
    with ContextThreadPoolExecutor(max_workers=2) as pool:
        with use(INBOUND):
            assert_carried(pool.submit(fetch, url).result())
            assert [s["key"] for s in pool.map(fetch, [url] * 4)] == ["k1"] * 4
        # The same (reused) worker threads, submitted outside the request: no key.
        assert pool.submit(fetch, url).result() == NOTHING
        with use(PropagationContext("k2")):
            assert pool.submit(fetch, url).result()["key"] == "k2"


def test_run_in_executor_with_the_context_pool(service_c: str) -> None:
    url = service_c + "/echo"

    async def main(pool: Executor) -> list[Any]:
        loop = asyncio.get_running_loop()
        with use(INBOUND):
            return list(
                await asyncio.gather(*(loop.run_in_executor(pool, fetch, url) for _ in range(3)))
            )

    with ContextThreadPoolExecutor(max_workers=3) as pool:
        for seen in asyncio.run(main(pool)):
            assert_carried(seen)


def _plain(pool: ThreadPoolExecutor, fn: Callable[[str], Any], url: str) -> Any:
    return pool.submit(fn, url).result()


def test_a_plain_thread_pool_loses_the_context(service_c: str) -> None:
    """Why the helpers exist: a ThreadPoolExecutor runs work in its worker threads' own
    contexts, not the submitter's, so an outbound call made there carries no key."""
    url = service_c + "/echo"
    with ThreadPoolExecutor(max_workers=2) as pool, use(INBOUND):
        assert _plain(pool, fetch, url) == NOTHING
        assert_carried(_plain(pool, wrap(fetch), url))

    async def main() -> tuple[Any, Any]:
        loop = asyncio.get_running_loop()
        with use(INBOUND):
            # The loop's default executor is a plain ThreadPoolExecutor too;
            # asyncio.to_thread copies the context itself.
            return (
                await loop.run_in_executor(None, fetch, url),
                await asyncio.to_thread(fetch, url),
            )

    plain, to_thread = asyncio.run(main())
    assert plain == NOTHING
    assert_carried(to_thread)
