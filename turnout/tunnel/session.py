"""Asyncio glue: runs a ``TunnelConnection`` over one WebSocket and bridges local sockets.

``TunnelSession(conn, send, recv)`` knows the WebSocket only as two callables — ``send``
puts one binary message on the wire, ``recv`` returns the next one (``None`` once the
WebSocket closed) — so the same code serves Starlette's ``WebSocket`` on the gateway and
the ``websockets`` client in the CLI. Either side may listen and either side may dial:

* ``run(dial)`` pumps frames until the WebSocket closes. For every stream the peer
  opens it calls ``dial(meta)``; on success it answers OPEN_OK and bridges the returned
  reader/writer, on failure it answers RST with the error text. ``dial=None`` refuses
  every stream (a side that only listens).
* ``bridge(reader, writer, meta)`` opens a stream for a locally accepted connection,
  waits for the peer's OPEN_OK and bridges it; a RST closes the local socket. It returns
  a ``BridgeResult`` saying how the stream ended (``reset`` holds the reason, e.g. the
  peer's dial error).

Per stream, two tasks move bytes:

* local → peer: read the local socket only while the stream's send window is open, at
  most one window's worth, send DATA, and wait until the frames were handed to the
  WebSocket before reading again. With the window at 0 the task stops reading; the
  ``StreamReader`` fills to its limit, pauses the transport, and the kernel's buffers
  push back on the local writer. A ``WindowUpdated`` resumes it. Local EOF sends FIN.
* peer → local: DATA is queued (never more than the window the peer was granted, which
  the protocol enforces), written, and *drained*; only then is it acknowledged, which
  grants the peer more credit. The writer's high-water mark is set to 0 so ``drain()``
  returns only once the kernel took every byte: acknowledged bytes have truly left user
  space, so a stream whose local reader is slow holds at most one window here and the
  remote sender stalls. Peer FIN becomes ``write_eof()`` (TCP and unix sockets support
  it); the socket is closed once both directions ended.

Frames go out through one lock-protected flush, so concurrent streams never interleave
``send`` calls (Starlette's ``WebSocket`` does not allow that). The receive loop itself
never waits for ``send``: it only schedules a flush. Otherwise two peers whose receive
loops both wait to send while neither reads could deadlock.

When the WebSocket drops (``recv`` returns ``None`` or raises, ``send`` raises), every
stream's local socket is aborted at once and ``run`` returns. A protocol error from the
peer closes the session with GOAWAY, aborts every stream and raises
``TunnelProtocolError`` from ``run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from turnout.core.tasks import spawn
from turnout.tunnel.protocol import (
    MAX_DATA,
    DataReceived,
    Event,
    SessionClosed,
    StreamAccepted,
    StreamEnded,
    StreamLimitError,
    StreamOpened,
    StreamReset,
    StreamStateError,
    TunnelConnection,
    TunnelProtocolError,
    WindowUpdated,
)

__all__ = ["BridgeResult", "Dial", "Recv", "Send", "StreamInfo", "TunnelSession"]

log = logging.getLogger(__name__)

Send: TypeAlias = Callable[[bytes], Awaitable[None]]
Recv: TypeAlias = Callable[[], Awaitable[bytes | None]]
Dial: TypeAlias = Callable[
    [dict[str, Any]], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
]

# How long a closing session waits to get its GOAWAY out before giving up on the peer.
_GOODBYE_TIMEOUT: Final = 1.0


@dataclass(frozen=True, slots=True)
class BridgeResult:
    """How a bridged stream ended."""

    stream_id: int  # 0 when no stream could be opened
    reset: str | None  # why it was aborted (RST, dial error, session end); None = clean end
    sent: int  # bytes read from the local socket and sent to the peer
    received: int  # bytes from the peer written to the local socket


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """A live stream's flow-control state, for tests and diagnostics."""

    stream_id: int
    paused: bool  # local reading stopped: the send window is exhausted
    send_window: int  # bytes the peer still lets this side send
    queued: int  # bytes from the peer held in user space, not yet drained to the socket
    sent: int
    received: int


class _Stream:
    """One bridged stream: its local socket and the hand-offs between its two pumps."""

    __slots__ = (
        "id",
        "inbox",
        "inbox_ready",
        "meta",
        "paused",
        "queued",
        "reader",
        "ready",
        "received",
        "remote_ended",
        "reset",
        "sent",
        "tasks",
        "window_open",
        "writer",
    )

    def __init__(self, stream_id: int, meta: dict[str, Any]) -> None:
        self.id = stream_id
        self.meta = meta
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.ready = asyncio.Event()  # accepted by the peer, or aborted
        self.window_open = asyncio.Event()
        self.inbox: deque[bytes] = deque()  # peer data not yet written (≤ the window)
        self.inbox_ready = asyncio.Event()
        self.queued = 0  # bytes in the inbox or being drained, i.e. not acknowledged
        self.remote_ended = False
        self.paused = False
        self.reset: str | None = None
        self.tasks: tuple[asyncio.Task[None], ...] = ()
        self.sent = 0
        self.received = 0


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class TunnelSession:
    """A ``TunnelConnection`` driven over one WebSocket, bridging local sockets.

    ``conn`` must be created with ``client=True`` on the WebSocket client and
    ``client=False`` on the server. Call ``run`` once (it returns when the WebSocket
    closes); call ``bridge`` for each locally accepted connection while it runs.
    """

    def __init__(self, conn: TunnelConnection, send: Send, recv: Recv) -> None:
        self._conn = conn
        self._send = send
        self._recv = recv
        self._streams: dict[int, _Stream] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # peer-opened streams (dial + bridge)
        self._outbox: deque[bytes] = deque()
        self._send_lock = asyncio.Lock()
        self._flusher: asyncio.Task[None] | None = None
        self._send_failed = False
        self._running = False
        self._dial: Dial | None = None
        self._dial_timeout: float | None = None

    # ------------------------------------------------------------------ inspection

    @property
    def closed(self) -> bool:
        """True once the session ended (GOAWAY either way, WebSocket gone, ``close``)."""
        return self._conn.closed

    @property
    def stream_ids(self) -> list[int]:
        return list(self._streams)

    def stream_info(self, stream_id: int) -> StreamInfo | None:
        st = self._streams.get(stream_id)
        if st is None:
            return None
        return StreamInfo(
            stream_id,
            st.paused,
            self._conn.send_window(stream_id),
            st.queued,
            st.sent,
            st.received,
        )

    # ------------------------------------------------------------------ public API

    async def run(self, dial: Dial | None = None, *, dial_timeout: float | None = 10.0) -> None:
        """Pump frames until the WebSocket closes or the session ends.

        ``dial(meta)`` connects the local end of each stream the peer opens; it may
        raise (``OSError``, ...) to refuse, and is cancelled after ``dial_timeout``
        seconds. Raises ``TunnelProtocolError`` if the peer broke the protocol (after
        sending GOAWAY and closing every stream).
        """
        if self._running:
            raise RuntimeError("TunnelSession.run() is already running")
        self._running = True
        self._dial = dial
        self._dial_timeout = dial_timeout
        error: TunnelProtocolError | None = None
        reason = "websocket closed"
        try:
            while not self._conn.closed:
                try:
                    message = await self._recv()
                except Exception as exc:  # the WebSocket library's own close/error types
                    reason = f"websocket failed: {_describe(exc)}"
                    break
                if message is None:
                    break
                try:
                    events = self._conn.receive_frame(message)
                except TunnelProtocolError as exc:
                    error = exc
                    reason = f"protocol error: {exc}"
                    break
                for event in events:
                    self._handle(event)
                self._kick()
            else:
                reason = self._conn.close_reason or "session closed"
        finally:
            await self._teardown(reason, goodbye=error is not None)
        if error is not None:
            raise error

    async def bridge(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        meta: Mapping[str, Any] | None = None,
    ) -> BridgeResult:
        """Open a stream for a locally accepted connection and bridge it until it ends.

        ``meta`` (JSON-serializable, ≤ 4 KiB encoded) reaches the peer's ``dial``. The
        local socket is closed when the stream ends; a refused or reset stream aborts it
        and the reason is in the result. ``run`` must be running for the peer's answer
        to arrive.
        """
        try:
            stream_id = self._conn.open_stream(dict(meta) if meta else None)
        except (StreamStateError, StreamLimitError) as exc:
            writer.transport.abort()
            return BridgeResult(0, str(exc), 0, 0)
        except BaseException:
            writer.transport.abort()
            raise
        st = _Stream(stream_id, dict(meta or {}))
        st.reader = reader
        st.writer = writer
        self._streams[stream_id] = st
        self._kick()
        try:
            await st.ready.wait()
            if st.reset is None:
                await self._run_stream(st)
        except asyncio.CancelledError:
            self._reset(st, "local side cancelled")
            raise
        finally:
            self._streams.pop(stream_id, None)
        return BridgeResult(stream_id, st.reset, st.sent, st.received)

    async def close(self, reason: str = "") -> None:
        """End the session: abort every stream and send GOAWAY. The caller then closes
        the WebSocket, which makes ``run`` return."""
        self._conn.close(reason)
        self._abort_all(f"session closed: {reason}" if reason else "session closed")
        await self._say_goodbye()

    # ------------------------------------------------------------------ peer events

    def _handle(self, event: Event) -> None:
        if isinstance(event, DataReceived):
            st = self._streams.get(event.stream_id)
            if st is not None:
                st.inbox.append(event.data)
                st.queued += len(event.data)
                st.inbox_ready.set()
        elif isinstance(event, WindowUpdated):
            st = self._streams.get(event.stream_id)
            if st is not None:
                st.window_open.set()
        elif isinstance(event, StreamOpened):
            self._on_open(event)
        elif isinstance(event, StreamAccepted):
            st = self._streams.get(event.stream_id)
            if st is not None:
                st.ready.set()
        elif isinstance(event, StreamEnded):
            st = self._streams.get(event.stream_id)
            if st is not None:
                st.remote_ended = True
                st.inbox_ready.set()
        elif isinstance(event, StreamReset):
            st = self._streams.get(event.stream_id)
            if st is not None:
                self._abort(st, f"reset by peer: {event.reason}")
        elif isinstance(event, SessionClosed):
            self._abort_all(f"peer closed the session: {event.reason}")

    def _on_open(self, event: StreamOpened) -> None:
        dial = self._dial
        if dial is None:
            self._conn.reset_stream(event.stream_id, "this side accepts no streams")
            return
        st = _Stream(event.stream_id, event.meta)
        self._streams[st.id] = st
        spawn(self._accept(st, dial), keep=self._tasks)

    async def _accept(self, st: _Stream, dial: Dial) -> None:
        writer: asyncio.StreamWriter | None = None
        bridged = False
        try:
            try:
                async with asyncio.timeout(self._dial_timeout):
                    reader, writer = await dial(st.meta)
            except Exception as exc:  # whatever the dial raised is the peer's answer
                log.info("tunnel stream %d: dial failed: %s", st.id, _describe(exc))
                self._reset(st, f"dial failed: {_describe(exc)}")
                return
            if st.reset is not None:  # the peer gave up, or the session ended, meanwhile
                return
            st.reader = reader
            st.writer = writer
            self._conn.accept(st.id)
            self._kick()
            bridged = True
            await self._run_stream(st)
        finally:
            self._streams.pop(st.id, None)
            if writer is not None and not bridged:
                writer.transport.abort()

    # ------------------------------------------------------------------ stream pumps

    async def _run_stream(self, st: _Stream) -> None:
        writer = st.writer
        assert writer is not None
        # Drain means "in the kernel": see the module docstring.
        writer.transport.set_write_buffer_limits(high=0)
        st.tasks = (
            spawn(self._local_to_peer(st)),
            spawn(self._peer_to_local(st)),
        )
        try:
            await asyncio.wait(st.tasks)
        finally:
            for task in st.tasks:
                task.cancel()
            for task in st.tasks:
                # A pump that raised is a bug: report it rather than lose it.
                exc = task.exception() if task.done() and not task.cancelled() else None
                if exc is not None:
                    log.error("tunnel stream %d failed", st.id, exc_info=exc)
                    self._reset(st, f"internal error: {_describe(exc)}")
            self._streams.pop(st.id, None)
            if st.reset is None:
                writer.close()  # both directions ended: a clean close
            else:
                writer.transport.abort()

    async def _local_to_peer(self, st: _Stream) -> None:
        reader = st.reader
        assert reader is not None
        conn = self._conn
        sid = st.id
        while True:
            window = conn.send_window(sid)
            if window == 0:
                if not conn.is_live(sid):  # cannot happen without an abort; be safe
                    self._abort(st, "stream closed")
                    return
                # Stop reading the local socket until the peer grants credit: its data
                # backs up into the kernel and slows the local writer down.
                st.window_open.clear()
                st.paused = True
                try:
                    await st.window_open.wait()
                finally:
                    st.paused = False
                continue
            try:
                data = await reader.read(min(window, MAX_DATA))
            except OSError as exc:
                self._reset(st, f"local read failed: {_describe(exc)}")
                return
            if not data:
                with contextlib.suppress(StreamStateError):
                    conn.end_stream(sid)
                await self._flush()
                return
            try:
                conn.send_data(sid, data)  # all of it: the window only grew during read()
            except StreamStateError:
                return  # reset by the peer a moment ago; its StreamReset aborts us
            st.sent += len(data)
            # Wait until the frames left for the WebSocket: one read in flight per stream.
            await self._flush()

    async def _peer_to_local(self, st: _Stream) -> None:
        writer = st.writer
        assert writer is not None
        conn = self._conn
        sid = st.id
        while True:
            if not st.inbox:
                if st.remote_ended:
                    break
                st.inbox_ready.clear()
                await st.inbox_ready.wait()
                continue
            chunks = list(st.inbox)
            st.inbox.clear()
            size = sum(len(chunk) for chunk in chunks)
            try:
                writer.writelines(chunks)
                await writer.drain()
            except OSError as exc:
                self._reset(st, f"local write failed: {_describe(exc)}")
                return
            # Only now, with the bytes in the kernel, may the peer send more.
            st.received += size
            st.queued -= size
            conn.acknowledge(sid, size)
            self._kick()
        if writer.can_write_eof():
            try:
                writer.write_eof()  # pass the peer's half-close on
            except OSError as exc:
                self._reset(st, f"local shutdown failed: {_describe(exc)}")

    # ------------------------------------------------------------------ aborting

    def _reset(self, st: _Stream, reason: str) -> None:
        """Abort a stream from this side: RST to the peer, local socket aborted."""
        self._conn.reset_stream(st.id, reason)
        self._kick()
        self._abort(st, reason)

    def _abort(self, st: _Stream, reason: str) -> None:
        """Stop a stream's pumps and abort its local socket (the peer knows already)."""
        self._streams.pop(st.id, None)
        if st.reset is not None:
            return
        st.reset = reason
        st.ready.set()
        for task in st.tasks:
            task.cancel()
        if st.writer is not None:
            st.writer.transport.abort()

    def _abort_all(self, reason: str) -> None:
        for st in list(self._streams.values()):
            self._abort(st, reason)

    async def _teardown(self, reason: str, *, goodbye: bool) -> None:
        log.debug("tunnel session ending: %s", reason)
        self._conn.close(reason)  # later bridge() calls fail fast
        self._abort_all(reason)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if goodbye:
            await self._say_goodbye()
        else:
            # The WebSocket is gone: nothing queued can be delivered.
            self._conn.data_to_send()
            self._outbox.clear()
        await asyncio.gather(*tasks, return_exceptions=True)
        flusher = self._flusher
        if flusher is not None and not flusher.done():
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)

    async def _say_goodbye(self) -> None:
        # Frames still waiting belong to aborted streams; only the GOAWAY matters now.
        self._outbox.clear()
        # Best effort: a peer that stopped reading must not hold the close up.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_GOODBYE_TIMEOUT):
                await self._flush()

    # ------------------------------------------------------------------ sending

    def _kick(self) -> None:
        """Get queued frames sent without waiting (used where waiting could deadlock)."""
        self._outbox.extend(self._conn.data_to_send())
        if self._outbox and (self._flusher is None or self._flusher.done()):
            self._flusher = spawn(self._flush())

    async def _flush(self) -> None:
        """Send every queued frame, in order, one ``send`` at a time."""
        async with self._send_lock:
            while True:
                self._outbox.extend(self._conn.data_to_send())
                if not self._outbox or self._send_failed:
                    return
                frame = self._outbox.popleft()
                try:
                    await self._send(frame)
                except Exception as exc:  # the WebSocket library's own close/error types
                    reason = f"websocket send failed: {_describe(exc)}"
                    log.debug("tunnel session: %s", reason)
                    self._send_failed = True
                    self._outbox.clear()
                    self._conn.close(reason)
                    self._abort_all(reason)
                    return
