"""WebSocket endpoints behind ``turnout connect`` and ``turnout port-forward``.

Both carry a ``turnout.tunnel`` session (many TCP streams over one WebSocket, opened by
the developer's CLI: outbound only, nothing installed on the server):

* ``/namespaces/{ns}/sandboxes/{name}/connect?backend=B``: while the socket is open,
  this replica listens on the unix socket a ``local: {}`` override of backend ``B``
  compiles to (``config.sandboxes.tunnel_socket``). Workers dial it like any endpoint;
  each connection becomes a stream the CLI dials to the developer's local port. With
  nobody connected the socket does not exist and keyed requests answer 502.
* ``/namespaces/{ns}/backends/{name}/port-forward[?port=P]``: the reverse. The CLI
  listens locally and opens a stream per connection; this side dials one of the
  Backend's endpoints (round robin, ``port`` filling endpoints that name none).

Both need the editor role in the namespace (they reach into the network behind the
gateway). WebSockets cannot carry an HTTP error status once upgraded, so refusals
accept and then close with a 44xx code whose reason is the message (4401, 4403, 4404,
4409 like the HTTP statuses; 4400 for a bad request), and the CLI prints it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, WebSocket
from starlette.websockets import WebSocketDisconnect

from turnout.config.sandboxes import tunnel_socket
from turnout.control.auth import Principal, Role
from turnout.control.service import AuthError, ControlPlane
from turnout.core.netaddr import Address, AddressError, parse_address
from turnout.tunnel import TunnelConnection, TunnelSession

log = logging.getLogger("turnout.control.tunnels")
router = APIRouter(tags=["sandboxes"])

Name = Annotated[str, Path(min_length=1, max_length=253)]


class Refused(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


async def _authorize(ws: WebSocket, control: ControlPlane, namespace: str) -> Principal:
    remote = f"{ws.client.host}:{ws.client.port}" if ws.client else ""
    target = f"WEBSOCKET {ws.url.path}"
    try:
        principal = await control.authenticate(ws.headers.get("authorization"), remote, target)
    except AuthError as exc:
        raise Refused(4000 + exc.status, str(exc)) from None
    if not principal.may(Role.EDITOR) or not principal.writes_namespace(namespace):
        message = f"token {principal.name!r} may not open tunnels in namespace {namespace!r}"
        await control.audit(principal, "tunnel", "forbidden", target, message, remote)
        raise Refused(4403, message)
    return principal


def _session(ws: WebSocket) -> TunnelSession:
    async def recv() -> bytes | None:
        try:
            msg = await ws.receive()
        except (WebSocketDisconnect, RuntimeError):
            return None
        if msg["type"] == "websocket.disconnect":
            return None
        data: bytes | None = msg.get("bytes")
        return data  # a text frame (None) ends the session: the protocol is binary

    return TunnelSession(TunnelConnection(client=False), ws.send_bytes, recv)


async def _refuse(ws: WebSocket, exc: Refused) -> None:
    with contextlib.suppress(Exception):
        await ws.close(code=exc.code, reason=str(exc)[:120])


@router.websocket("/namespaces/{namespace}/sandboxes/{name}/connect")
async def connect(
    ws: WebSocket,
    namespace: Name,
    name: Name,
    backend: Annotated[str, Query(min_length=1, max_length=253)],
) -> None:
    control: ControlPlane = ws.app.state.control
    await ws.accept()
    try:
        principal = await _authorize(ws, control, namespace)
        path = _local_socket(control, namespace, name, backend)
    except Refused as exc:
        await _refuse(ws, exc)
        return
    session = _session(ws)
    active = control.tunnels
    if path in active:
        await _refuse(
            ws, Refused(4409, f"backend {backend!r} is already connected by {active[path]}")
        )
        return
    active[path] = principal.actor
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # left by a replica that crashed

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await session.bridge(reader, writer, {"backend": backend})

    server = await asyncio.start_unix_server(accepted, path)
    log.info("%s connected sandbox %s/%s backend %s", principal.actor, namespace, name, backend)
    try:
        await session.run(None)
    except Exception as exc:  # a peer protocol violation: the session is over
        log.warning("tunnel for %s/%s %s ended: %s", namespace, name, backend, exc)
    finally:
        server.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        active.pop(path, None)
        await session.close("gateway closing")
        with contextlib.suppress(Exception):
            await ws.close()
        log.info("sandbox %s/%s backend %s disconnected", namespace, name, backend)


def _local_socket(control: ControlPlane, namespace: str, name: str, backend: str) -> str:
    entry = control.view.get(("Sandbox", namespace, name))
    if entry is None:
        raise Refused(4404, f"Sandbox {namespace}/{name} not found")
    spec = entry.manifest.get("spec") or {}
    overrides = spec.get("overrides") or []
    if not any(o.get("backend") == backend and o.get("local") is not None for o in overrides):
        raise Refused(
            4400,
            f"Sandbox {namespace}/{name} has no 'local' override for backend {backend!r}",
        )
    if not control.tunnel_dir:
        raise Refused(4503, "this server has no tunnel directory")
    return tunnel_socket(control.tunnel_dir, (namespace, name), backend)


@router.websocket("/namespaces/{namespace}/backends/{name}/port-forward")
async def port_forward(
    ws: WebSocket,
    namespace: Name,
    name: Name,
    port: Annotated[int | None, Query(ge=1, le=65535)] = None,
) -> None:
    control: ControlPlane = ws.app.state.control
    await ws.accept()
    try:
        principal = await _authorize(ws, control, namespace)
        targets = _endpoints(control, namespace, name, port)
    except Refused as exc:
        await _refuse(ws, exc)
        return
    turn = itertools.cycle(targets)

    async def dial(meta: dict[str, Any]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        target = next(turn)
        if target.is_unix:
            return await asyncio.open_unix_connection(target.path)
        return await asyncio.open_connection(target.host, target.port)

    session = _session(ws)
    log.info("%s port-forwarding to Backend %s/%s", principal.actor, namespace, name)
    try:
        await session.run(dial)
    except Exception as exc:
        log.warning("port-forward to %s/%s ended: %s", namespace, name, exc)
    finally:
        await session.close("gateway closing")
        with contextlib.suppress(Exception):
            await ws.close()


def _endpoints(control: ControlPlane, namespace: str, name: str, port: int | None) -> list[Address]:
    entry = control.view.get(("Backend", namespace, name))
    if entry is None:
        raise Refused(4404, f"Backend {namespace}/{name} not found")
    spec = entry.manifest.get("spec") or {}
    out = []
    for ep in spec.get("endpoints") or []:
        try:
            addr = parse_address(str(ep.get("address")), allow_missing_port=True)
            if not addr.is_unix and addr.port == 0:
                if port is None:
                    continue
                addr = parse_address(str(ep.get("address")), default_port=port)
        except AddressError:
            continue
        out.append(addr)
    if not out:
        raise Refused(4400, f"Backend {namespace}/{name} has no endpoint with a port (pass ?port=)")
    return out
