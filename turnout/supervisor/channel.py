"""Supervisor ↔ worker control channel: framed pickles and file descriptors over a socketpair.

Hand-written because nothing in the standard library passes listening sockets
(SCM_RIGHTS) *and* integrates with a running asyncio loop: ``multiprocessing``'s
``send_handle`` blocks, and asyncio streams drop ancillary data. The protocol is tiny:
each frame is a 4-byte big-endian length and a 2-byte descriptor count, then a pickled
message (a dataclass of ``turnout.proxy.messages``). Descriptors ride on the first byte
of their frame; the receiver keeps arriving descriptors in FIFO order and hands each
frame its count.

Both ends are the same program, started by the supervisor, so unpickling is trusted.
"""

from __future__ import annotations

import array
import asyncio
import os
import pickle
import socket
import struct
from collections import deque
from collections.abc import Callable

from turnout.proxy.messages import Message

_HEADER = struct.Struct(">IH")
_MAX_FDS = 253

# What arrives is whatever the peer pickled: receivers match on the class and ignore
# what they do not know (``messages.UnknownMessages``).
Handler = Callable[[object, list[int]], None]


class ChannelClosed(ConnectionError):
    pass


class ControlChannel:
    """One end of the channel. ``handler(message, fds)`` runs in the loop for each message."""

    def __init__(self, sock: socket.socket, handler: Handler, on_close: Callable[[], None]) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._handler = handler
        self._on_close = on_close
        self._inbuf = bytearray()
        self._fds: deque[int] = deque()
        self._outbuf: deque[tuple[memoryview, list[int]]] = deque()
        self._loop = asyncio.get_running_loop()
        self._writing = False
        self.closed = False
        self._loop.add_reader(sock.fileno(), self._readable)

    def send(self, message: Message, fds: list[int] | None = None) -> None:
        if self.closed:
            raise ChannelClosed("control channel is closed")
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        fds = list(fds or [])
        frame = memoryview(_HEADER.pack(len(payload), len(fds)) + payload)
        self._outbuf.append((frame, fds))
        if not self._writing:
            self._drain()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self._loop.remove_reader(self._sock.fileno())
            if self._writing:
                self._loop.remove_writer(self._sock.fileno())
        except (ValueError, OSError):
            pass
        self._sock.close()
        while self._fds:
            os.close(self._fds.popleft())
        self._on_close()

    # -- internals ------------------------------------------------------------------------

    def _drain(self) -> None:
        while self._outbuf:
            frame, fds = self._outbuf[0]
            try:
                if fds:
                    for i in range(0, len(fds), _MAX_FDS):
                        part = fds[i : i + _MAX_FDS]
                        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", part))]
                        # Each descriptor batch rides on one byte of the frame.
                        sent = self._sock.sendmsg([frame[:1]], anc)
                        frame = frame[sent:]
                        self._outbuf[0] = (frame, [])
                        if not frame:
                            break
                    fds = []
                sent = self._sock.send(frame) if frame else 0
            except BlockingIOError:
                self._want_write()
                return
            except OSError:
                self.close()
                return
            frame = frame[sent:]
            if frame:
                self._outbuf[0] = (frame, [])
                self._want_write()
                return
            self._outbuf.popleft()
        if self._writing:
            self._writing = False
            self._loop.remove_writer(self._sock.fileno())

    def _want_write(self) -> None:
        if not self._writing:
            self._writing = True
            self._loop.add_writer(self._sock.fileno(), self._drain)

    def _readable(self) -> None:
        try:
            data, anc, _flags, _addr = self._sock.recvmsg(1 << 18, socket.CMSG_SPACE(_MAX_FDS * 4))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
                self._fds.extend(fds)
        if not data:
            self.close()
            return
        self._inbuf += data
        self._dispatch()

    def _dispatch(self) -> None:
        buf = self._inbuf
        hsize = _HEADER.size
        while len(buf) >= hsize:
            size, count = _HEADER.unpack_from(buf)
            if len(buf) < hsize + size:
                return
            message: object = pickle.loads(bytes(buf[hsize : hsize + size]))
            del buf[: hsize + size]
            fds: list[int] = []
            for _ in range(count):
                if self._fds:
                    fds.append(self._fds.popleft())
            self._handler(message, fds)
            if self.closed:
                return
