"""``turnout connect`` and ``turnout port-forward``: the CLI end of a ``turnout.tunnel``.

Both open one outbound WebSocket to the admin API (the same server and token as every
other command) and keep it open until Ctrl-C, reconnecting with a growing pause (0.5 s
up to 5 s) when it drops. A refusal from the server (bad token, no such sandbox, no
``local`` override, already connected) is final: it is printed and the command exits 1.

* connect: the gateway listens for keyed requests to the backend; each connection it
  accepts arrives here as a stream and is dialled to ``HOST:PORT`` on this machine.
* port-forward: this side listens on ``ADDRESS:LOCAL_PORT``; each local connection is a
  stream the gateway dials to one of the Backend's endpoints. The local listener stays
  up across reconnects; connections made while the tunnel is down are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlencode

from turnout.cli.bearer import bearer_headers
from turnout.cli.contexts import Target, resolve
from turnout.cli.errors import CliError
from turnout.cli.options import Connection
from turnout.cli.output import write
from turnout.tunnel import TunnelConnection, TunnelSession

FINAL_CODES = range(4400, 4600)  # the server refused: retrying will not help
MAX_PAUSE = 5.0


def _ws_url(target: Target, path: str, query: dict[str, Any]) -> str:
    base = target.server.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base.removeprefix("https://")
    else:
        base = "ws://" + base.removeprefix("http://")
    q = {k: v for k, v in query.items() if v is not None}
    return f"{base}{path}" + (f"?{urlencode(q)}" if q else "")


Attach = Callable[[TunnelSession], Awaitable[None]]


def _ws_tls(target: Target) -> ssl.SSLContext:
    """The same server check as the API client's (``client.tls_verify``)."""
    from turnout.cli.client import tls_verify

    verify = tls_verify(target)
    if isinstance(verify, ssl.SSLContext):
        return verify
    ctx = ssl.create_default_context()
    if not verify:  # insecureSkipTLSVerify, asked for explicitly
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def _keep_open(target: Target, url: str, attach: Attach, what: str) -> None:
    """Hold a tunnel session open over ``url`` until cancelled, reconnecting on drops."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI

    headers = bearer_headers(target)
    tls = _ws_tls(target) if url.startswith("wss://") else None
    pause = 0.5
    announced = False
    while True:
        try:
            async with connect(
                url,
                additional_headers=headers,
                compression=None,
                open_timeout=target.timeout,
                ssl=tls,
                ping_interval=20,
                ping_timeout=20,
            ) as ws:

                async def recv() -> bytes | None:
                    try:
                        data = await ws.recv(decode=False)
                    except ConnectionClosed:
                        return None
                    return data if isinstance(data, bytes) else None

                session = TunnelSession(TunnelConnection(client=True), ws.send, recv)
                attached = asyncio.ensure_future(attach(session))
                try:
                    # A refusal arrives as an immediate close with a 44xx code.
                    done, _ = await asyncio.wait({attached}, timeout=0.3)
                    if not done and not announced:
                        write(f"{what}; press Ctrl-C to stop")
                        announced = True
                    elif not done:
                        write("reconnected")
                    pause = 0.5
                    await attached
                finally:
                    attached.cancel()
                    with contextlib.suppress(BaseException):
                        await attached
                    await session.close("client closing")
                code = ws.close_code
                if code is not None and code in FINAL_CODES:
                    raise CliError(ws.close_reason or f"the server refused the tunnel ({code})")
        except InvalidURI as exc:
            raise CliError(f"bad server URL: {exc}") from None
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403, 404):
                raise CliError(f"the server answered {status} to the tunnel request") from None
            write(f"tunnel refused ({status}); retrying in {pause:g}s", err=True)
        except (OSError, ConnectionClosed, TimeoutError) as exc:
            write(f"tunnel lost ({type(exc).__name__}); reconnecting in {pause:g}s", err=True)
        else:
            write(f"tunnel closed; reconnecting in {pause:g}s", err=True)
        await asyncio.sleep(pause)
        pause = min(pause * 2, MAX_PAUSE)


def _run(main: Awaitable[None]) -> None:
    async def runner() -> None:
        task = asyncio.ensure_future(main)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task
        write("tunnel closed")

    asyncio.run(runner())


def connect(
    conn: Connection, sandbox: str, namespace: str | None, backend: str, host: str, port: int
) -> None:
    target = resolve(conn)
    ns = namespace or target.namespace or "default"
    path = f"/api/v1/namespaces/{quote(ns, safe='')}/sandboxes/{quote(sandbox, safe='')}/connect"
    url = _ws_url(target, path, {"backend": backend})

    async def attach(session: TunnelSession) -> None:
        async def dial(meta: dict[str, Any]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            return await asyncio.open_connection(host, port)

        await session.run(dial)

    what = (
        f"connected: requests for Backend {backend} with the key of Sandbox {ns}/{sandbox} "
        f"now reach {host}:{port}"
    )
    _run(_keep_open(target, url, attach, what))


def port_forward(
    conn: Connection,
    backend: str,
    namespace: str | None,
    local_port: int,
    address: str,
    remote_port: int | None,
) -> None:
    target = resolve(conn)
    ns = namespace or target.namespace or "default"
    path = (
        f"/api/v1/namespaces/{quote(ns, safe='')}/backends/{quote(backend, safe='')}/port-forward"
    )
    url = _ws_url(target, path, {"port": remote_port})

    async def main() -> None:
        current: list[TunnelSession] = []

        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if not current:
                writer.close()  # the tunnel is down: refuse rather than hang
                return
            await current[0].bridge(
                reader, writer, {"peer": str(writer.get_extra_info("peername"))}
            )

        try:
            server = await asyncio.start_server(accepted, address, local_port)
        except OSError as exc:
            raise CliError(f"cannot listen on {address}:{local_port}: {exc.strerror}") from None

        async def attach(session: TunnelSession) -> None:
            current[:] = [session]
            try:
                await session.run(None)
            finally:
                current.clear()

        bound = server.sockets[0].getsockname()[1]
        what = f"forwarding {address}:{bound} -> Backend {ns}/{backend}"
        async with server:
            await _keep_open(target, url, attach, what)

    _run(main())
