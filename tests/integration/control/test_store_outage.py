"""The store when the database is unreachable, goes away, or stops answering.

"Goes away" is simulated two ways, both against the real server: ``pg_terminate_backend``
on the store's pooled connections, and a TCP relay on 127.0.0.1 between the store and
PostgreSQL that the test can cut (connections reset, new ones refused) or freeze (bytes
swallowed, nothing answered). Every call must either succeed (the pool re-connects) or
raise ``StoreUnavailable`` within a bounded time — never hang, never leak a driver error.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from turnout.control.store import Change, StoreError, StoreUnavailable, open_store

Terminate = Callable[[str, str], Awaitable[int]]
TIMEOUT = 1.0


def put(name: str) -> Change:
    manifest = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {},
    }
    return Change("put", "HTTPRoute", "default", name, manifest)


class Relay:
    """A TCP relay to PostgreSQL that can be frozen or cut."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.frozen = False
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.writers.add(up_writer)
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.get_running_loop().create_task(self._pipe(src, dst))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                if not self.frozen:
                    dst.write(data)
                    await dst.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            dst.close()

    async def cut(self) -> None:
        """Refuse new connections and reset the open ones."""
        assert self.server is not None
        self.server.close()
        for w in list(self.writers):
            sock = w.get_extra_info("socket")
            if sock is not None and not w.is_closing():
                # RST rather than FIN, like a crashed server
                linger = struct.pack("ii", 1, 0)
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            w.close()
        self.writers.clear()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()

    async def close(self) -> None:
        if self.server is not None and self.server.is_serving():
            await self.cut()


async def timed(call: Awaitable[Any]) -> tuple[float, Any]:
    start = time.monotonic()
    try:
        result: Any = await call
    except StoreError as exc:
        result = exc
    return time.monotonic() - start, result


def test_open_store_on_a_closed_port_fails_fast() -> None:
    async def main() -> None:
        start = time.monotonic()
        with pytest.raises(StoreUnavailable) as info:
            await open_store("postgresql://postgres:hunter2@127.0.0.1:1/x", timeout=TIMEOUT)
        assert time.monotonic() - start < TIMEOUT + 1
        message = str(info.value)
        assert message.startswith(
            "cannot reach the store at postgresql://postgres:***@127.0.0.1:1/x: "
        )
        assert "hunter2" not in message

    asyncio.run(main())


def test_open_store_on_a_silent_server_times_out() -> None:
    """A server that accepts TCP connections and never answers."""

    async def main() -> None:
        writers: list[asyncio.StreamWriter] = []

        async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)
            try:
                await reader.read()
            finally:
                writer.close()

        server = await asyncio.start_server(mute, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            start = time.monotonic()
            with pytest.raises(StoreUnavailable, match=r"timed out|timeout"):
                await open_store(f"postgresql://postgres@127.0.0.1:{port}/x", timeout=TIMEOUT)
            assert time.monotonic() - start < TIMEOUT + 1
        finally:
            server.close()
            for writer in writers:
                writer.close()
            await server.wait_closed()
            await asyncio.sleep(0.05)  # let the handlers finish

    asyncio.run(main())


def test_open_store_errors_for_missing_database_and_sqlite_dir(pg_url: str, tmp_path: Any) -> None:
    async def main() -> None:
        missing = make_url(pg_url).set(database="turnout_no_such_db").render_as_string(False)
        with pytest.raises(StoreUnavailable, match='"turnout_no_such_db" does not exist'):
            await open_store(missing, timeout=TIMEOUT)
        with pytest.raises(StoreUnavailable, match="does not exist"):
            await open_store(f"sqlite:///{tmp_path}/nope/turnout.db", timeout=TIMEOUT)

    asyncio.run(main())


def test_terminated_connections_reconnect_or_fail_cleanly(
    pg_url: str, pg_terminate: Terminate
) -> None:
    async def main() -> None:
        store = await open_store(pg_url, timeout=TIMEOUT)
        try:
            await store.commit([put("a")], actor="t")
            for i in range(5):
                # the pool holds idle connections; kill every one of them on the server
                await asyncio.gather(store.load(), store.latest_revision(), store.ping())
                assert await pg_terminate(pg_url, "turnout") >= 1
                for call in (store.load(), store.commit([put(f"b{i}")], actor="t")):
                    elapsed, result = await timed(call)
                    assert elapsed < TIMEOUT + 1
                    # pool_pre_ping replaces the dead connections: the calls succeed
                    assert not isinstance(result, BaseException), result
            assert await store.latest_revision() == 6
        finally:
            await store.close()

    asyncio.run(main())


def test_calls_fail_within_the_timeout_when_the_server_goes_away(pg_url: str) -> None:
    async def main() -> None:
        relay = Relay(("127.0.0.1", make_url(pg_url).port or 5432))
        port = await relay.start()
        url = make_url(pg_url).set(port=port).render_as_string(False)
        store = await open_store(url, timeout=TIMEOUT)
        try:
            await store.commit([put("a")], actor="t")
            await relay.cut()
            for call in (
                store.load(),
                store.commit([put("b")], actor="t"),
                store.latest_revision(),
                store.record_audit(actor="t", action="apply", result="error"),
                store.tokens(),
            ):
                elapsed, result = await timed(call)
                assert isinstance(result, StoreUnavailable), result
                assert str(result).startswith("cannot reach the store at postgresql://")
                assert elapsed < TIMEOUT + 1
        finally:
            await store.close()
            await relay.close()

    asyncio.run(main())


def test_calls_fail_within_bounded_time_when_the_server_stops_answering(pg_url: str) -> None:
    async def main() -> None:
        relay = Relay(("127.0.0.1", make_url(pg_url).port or 5432))
        port = await relay.start()
        url = make_url(pg_url).set(port=port).render_as_string(False)
        store = await open_store(url, timeout=TIMEOUT)
        try:
            await store.commit([put("a")], actor="t")
            relay.frozen = True
            for call in (store.load(), store.commit([put("b")], actor="t")):
                elapsed, result = await timed(call)
                assert isinstance(result, StoreUnavailable), result
                # worst case: the pooled connection's ping times out, then a new connect does
                assert elapsed < 2 * TIMEOUT + 1
            # the server answers again: the store recovers by itself
            relay.frozen = False
            elapsed, result = await timed(store.commit([put("c")], actor="t"))
            assert not isinstance(result, BaseException), result
            assert (await store.load())[0] == 2
        finally:
            await store.close()
            await relay.close()

    asyncio.run(main())


def test_a_commit_waiting_for_the_commit_lock_is_bounded(
    pg_url: str, pg_terminate: Terminate
) -> None:
    """Another writer holding the commit lock too long, then its session killed."""

    async def main() -> None:
        import asyncpg

        from turnout.control.store.repository import COMMIT_LOCK

        store = await open_store(pg_url, timeout=TIMEOUT)
        holder: Any = await asyncpg.connect(pg_url)
        try:
            await store.commit([put("a")], actor="t")
            await holder.execute("SELECT pg_advisory_lock($1)", COMMIT_LOCK)
            elapsed, result = await timed(store.commit([put("b")], actor="t"))
            assert isinstance(result, StoreUnavailable), result
            assert "timed out" in str(result)
            assert TIMEOUT - 0.1 < elapsed < TIMEOUT + 1

            # a commit blocked on the lock whose own session is killed fails at once
            task = asyncio.get_running_loop().create_task(store.commit([put("c")], actor="t"))
            await asyncio.sleep(0.3)
            assert await pg_terminate(pg_url, "turnout") >= 1
            elapsed, result = await timed(task)
            assert isinstance(result, StoreUnavailable), result

            await holder.execute("SELECT pg_advisory_unlock($1)", COMMIT_LOCK)
            r = await store.commit([put("d")], actor="t")
            assert (r.revision, await store.latest_revision()) == (2, 2)
            assert [o.name for o in r.objects] == ["a", "d"]
        finally:
            await holder.close()
            await store.close()

    asyncio.run(main())
