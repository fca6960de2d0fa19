"""A TCP relay for fault tests that can black-hole the traffic it carries.

``BlackHoleRelay`` listens on an ephemeral port and forwards every connection to a
target. ``black_hole()`` makes it keep accepting and reading but forward nothing, in
either direction — a peer that is reachable and silent, as a partition behind a
stateful firewall or a hung load balancer looks to a client (unlike ``SIGSTOP``, the
kernel on the far side is not involved: nothing is buffered for later). ``restore()``
forwards again; connections that lost bytes meanwhile are out of step, so
``restore(reset=True)`` also resets the connections opened before it, as such a
partition typically ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

from turnout.core.tasks import spawn


class BlackHoleRelay:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.silent = False
        self.swallowed = 0  # bytes read and dropped while black-holed
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    def black_hole(self) -> None:
        self.silent = True

    def restore(self, reset: bool = True) -> None:
        if reset:
            for writer in list(self.writers):
                _reset(writer)
            self.writers.clear()
        self.silent = False

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.writers.add(up_writer)
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            spawn(self._pipe(src, dst), keep=self.tasks)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                if self.silent:
                    self.swallowed += len(data)
                    continue
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            dst.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for writer in list(self.writers):
            _reset(writer)
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.server is not None:
            await self.server.wait_closed()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST rather than FIN, as a crashed or partitioned peer does."""
    sock = writer.get_extra_info("socket")
    if sock is not None and not writer.is_closing():
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()


async def _serve(target_port: int) -> None:
    """``python -m turnout.testing.relay PORT``: relay to 127.0.0.1:PORT in a process of
    its own (as a network device would be: no shared GIL with the test's load); prints
    its port; SIGUSR1 black-holes, SIGUSR2 restores (no reset), SIGTERM ends it."""
    import signal
    import sys

    relay = BlackHoleRelay(("127.0.0.1", target_port))
    port = await relay.start()
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, relay.black_hole)
    loop.add_signal_handler(signal.SIGUSR2, relay.restore, False)
    loop.add_signal_handler(signal.SIGTERM, done.set_result, None)
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    await done
    sys.stderr.write(f"swallowed {relay.swallowed}\n")
    await relay.close()


if __name__ == "__main__":
    import sys

    asyncio.run(_serve(int(sys.argv[1])))
