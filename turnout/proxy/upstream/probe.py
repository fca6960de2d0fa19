"""Active health checks: an asyncio prober, one per replica, run by the supervisor.

``HealthChecker.configure(targets)`` starts one task per ``ProbeTarget`` (keyed by the
endpoint key ``host:port``). Each task probes, feeds the result to an ``ActiveState``
(``health.py``: ``unhealthy_threshold`` consecutive failures flip it to unhealthy,
``healthy_threshold`` consecutive successes flip it back) and calls ``on_change(key,
healthy)`` exactly once per flip; the caller forwards flips to the workers, which apply
them with ``EndpointHealth.set_active``. Probes of one target never overlap: the next
one starts ``interval × (1 ± jitter·U(-1, 1))`` seconds after the previous one ended
(the first after a random ``[0, interval·jitter]`` so a fleet does not probe in step).

A probe opens a fresh connection every time (a pooled one would test the pool, not the
endpoint), resolves a DNS name anew (``loop.getaddrinfo``, trying each address in turn)
and is bounded as a whole — resolution, connect, request, status line — by ``timeout``
(``asyncio.timeout``). ``TCP`` probes pass when the connect succeeds. ``HTTP`` probes
send ``METHOD path HTTP/1.1`` with ``host``, ``user-agent: turnout-health`` and
``connection: close``, parse the response head with the data plane's own client codec
and pass iff the status is in ``expected`` (default ``{200}``, as in Envoy); the body is
never read. Sockets are plain non-blocking sockets driven by ``loop.sock_*`` and closed
synchronously, so a cancelled or timed-out probe leaks nothing.

A target with ``tls`` (the Backend's ``tls``: trust anchors, client certificate for
mutual TLS, SNI) is probed over TLS with the same client context the data plane uses
(``upstream/tls.py``), offering ALPN ``http/1.1`` for HTTP probes and ``h2`` for gRPC
ones; the handshake is done on the probe's socket with an ``ssl.SSLObject`` over memory
BIOs, so the socket handling above (and its synchronous close) stays the same. A
certificate the Backend would not accept fails the probe, as it fails requests.

Initial state: every target starts *healthy* until proven otherwise. Envoy starts new
hosts unhealthy until their first check passes; healthy-first avoids a burst of 503s at
start-up and on reload, and the outlier detector still catches a dead endpoint on its
first requests. ``configure()`` keeps the state of targets whose settings are unchanged;
a retuned target (same key, other settings) restarts its task but keeps its verdict and
counters; a removed target's task is cancelled, and if it was unhealthy ``on_change(key,
True)`` is called, because an endpoint without active checks counts as healthy
(``EndpointHealth.active_ok``). ``close()`` cancels every task and waits for them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, Literal, TypedDict

from turnout.config.tls import UpstreamTLS
from turnout.core.netaddr import Address
from turnout.core.tasks import spawn
from turnout.proxy.protocols.heads import Headers, ResponseHead
from turnout.proxy.protocols.http1_client import Http1ClientConnection
from turnout.proxy.protocols.http2_client import Http2ClientConnection
from turnout.proxy.upstream.health import ActiveState
from turnout.proxy.upstream.tls import client_context

log = logging.getLogger("turnout.health")

ProbeKind = Literal["HTTP", "TCP", "GRPC"]

_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_PATH: Final = re.compile(r"/[\x21-\x7e]*")
_HOST: Final = re.compile(r"[\x21-\x7e]*")
_RECV_SIZE: Final = 65536


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """What to check on one endpoint, and how often. Equal targets keep their state."""

    key: str  # the endpoint key, "host:port" (str(address))
    address: Address
    kind: ProbeKind = "HTTP"
    path: str = "/"
    method: str = "GET"
    expected: frozenset[int] = frozenset({200})
    host: str = ""  # Host header; empty = the address ("host:port", "localhost" for unix)
    interval: float = 3.0
    timeout: float = 1.0
    healthy_threshold: int = 1
    unhealthy_threshold: int = 3
    jitter: float = 0.0  # fraction of the interval, 0 <= jitter < 1
    grpc_service: str = ""  # GRPC probes: the service asked about ("" = the server)
    tls: UpstreamTLS | None = None  # the Backend's TLS settings: probe over TLS
    server_name: str | None = None  # SNI and verified name (with tls)

    def __post_init__(self) -> None:
        if self.kind not in ("HTTP", "TCP", "GRPC"):
            raise ValueError(f"health check kind must be HTTP, TCP or GRPC, not {self.kind!r}")
        if not (self.interval > 0 and self.timeout > 0):
            raise ValueError("health check interval and timeout must be positive")
        if not 0.0 <= self.jitter < 1.0:
            raise ValueError("health check jitter must be in [0, 1)")
        if self.healthy_threshold < 1 or self.unhealthy_threshold < 1:
            raise ValueError("health check thresholds must be at least 1")
        if not _PATH.fullmatch(self.path):
            raise ValueError(f"health check path {self.path!r} must be an absolute path")
        if not _TOKEN.fullmatch(self.method):
            raise ValueError(f"health check method {self.method!r} is not a token")
        if not _HOST.fullmatch(self.host):
            raise ValueError(f"health check host {self.host!r} is not a valid Host value")

    def grpc_request(self) -> bytes:
        """A ``grpc.health.v1.Health/Check`` call as HTTP/1.1 bytes (the HTTP/2 codec
        re-frames them), carrying one ``HealthCheckRequest{service}`` message."""
        service = self.grpc_service.encode()
        message = (b"\x0a" + _varint(len(service)) + service) if service else b""
        body = b"\x00" + len(message).to_bytes(4, "big") + message
        host = self.host or ("localhost" if self.address.is_unix else str(self.address))
        return (
            f"POST /grpc.health.v1.Health/Check HTTP/1.1\r\nhost: {host}\r\n"
            "content-type: application/grpc\r\nte: trailers\r\n"
            f"user-agent: turnout-health\r\ncontent-length: {len(body)}\r\n\r\n"
        ).encode("ascii") + body

    def request(self) -> bytes:
        """The probe's request bytes (HTTP probes)."""
        host = self.host or ("localhost" if self.address.is_unix else str(self.address))
        return (
            f"{self.method} {self.path} HTTP/1.1\r\nhost: {host}\r\n"
            "user-agent: turnout-health\r\nconnection: close\r\n\r\n"
        ).encode("ascii")


class ProbeStatus(TypedDict):
    healthy: bool
    lastCheck: float  # wall-clock time (time.time()) of the last finished probe; 0 = none
    lastError: str  # why the last probe failed; "" when it passed
    consecutive: int  # length of the current run of equal results
    checks: int  # probes finished (a counter, for metrics)
    failures: int  # probes failed (a counter, for metrics)


def jittered(interval: float, jitter: float, rand: random.Random) -> float:
    """``interval`` scaled by a random factor in ``[1 - jitter, 1 + jitter]``."""
    if jitter <= 0.0:
        return interval
    return max(0.0, interval * (1.0 + jitter * rand.uniform(-1.0, 1.0)))


class _StatusReader:
    """Codec events of a probe response: only the final status (or the error) matters."""

    __slots__ = ("error", "status")

    def __init__(self) -> None:
        self.status = 0
        self.error = ""

    def response_informational(self, head: ResponseHead) -> None:
        pass

    def response_head(self, head: ResponseHead) -> None:
        self.status = head.status

    def response_body(self, data: bytes) -> None:
        pass

    def response_complete(self, trailers: Headers | None) -> None:
        pass

    def tunnel_data(self, data: bytes) -> None:
        pass

    def protocol_error(self, message: str) -> None:
        self.error = message


async def _sockaddrs(
    loop: asyncio.AbstractEventLoop, address: Address
) -> list[tuple[int, str | tuple[str, int]]]:
    if address.is_unix:
        return [(socket.AF_UNIX, address.path)]
    if address.is_ip:
        family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
        return [(family, (address.host, address.port))]
    infos = await loop.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)
    out: list[tuple[int, str | tuple[str, int]]] = []
    for family, _type, _proto, _canon, sockaddr in infos:
        entry = (int(family), (str(sockaddr[0]), int(sockaddr[1])))
        if entry not in out:
            out.append(entry)
    if not out:
        raise OSError(f"{address.host!r} has no addresses")
    return out


async def _connect(loop: asyncio.AbstractEventLoop, address: Address) -> socket.socket:
    """A connected non-blocking socket to the first address that accepts."""
    last: OSError | None = None
    for family, sockaddr in await _sockaddrs(loop, address):
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, sockaddr)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        except BaseException:  # cancelled (or timed out): never leak the socket
            sock.close()
            raise
        return sock
    assert last is not None
    raise last


class _Channel:
    """A probe's byte stream: the socket itself, or TLS over it (``ssl.SSLObject`` on
    memory BIOs, so the socket stays a plain one that ``check`` closes synchronously)."""

    __slots__ = ("_in", "_loop", "_out", "_sock", "_tls")

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        self._loop = loop
        self._sock = sock
        self._tls: ssl.SSLObject | None = None
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()

    async def handshake(self, ctx: ssl.SSLContext, server_name: str | None) -> None:
        self._tls = ctx.wrap_bio(self._in, self._out, server_hostname=server_name)
        while True:
            try:
                self._tls.do_handshake()
            except ssl.SSLWantReadError:
                await self._flush()
                if not await self._fill():
                    raise ConnectionError("connection closed during the TLS handshake") from None
                continue
            await self._flush()
            return

    async def _flush(self) -> None:
        data = self._out.read()
        if data:
            await self._loop.sock_sendall(self._sock, data)

    async def _fill(self) -> bool:
        data = await self._loop.sock_recv(self._sock, _RECV_SIZE)
        if not data:
            self._in.write_eof()
            return False
        self._in.write(data)
        return True

    async def send(self, data: bytes) -> None:
        if self._tls is None:
            await self._loop.sock_sendall(self._sock, data)
            return
        self._tls.write(data)
        await self._flush()

    async def recv(self) -> bytes:
        """Bytes received, b"" at the end of the stream."""
        tls = self._tls
        if tls is None:
            return await self._loop.sock_recv(self._sock, _RECV_SIZE)
        while True:
            try:
                return tls.read(_RECV_SIZE)
            except ssl.SSLWantReadError:
                await self._flush()
                if not await self._fill():
                    return b""
            except ssl.SSLZeroReturnError:
                return b""


async def _http_status(chan: _Channel, target: ProbeTarget) -> str:
    await chan.send(target.request())
    reader = _StatusReader()
    codec = Http1ClientConnection(reader)
    codec.expect(target.method == "HEAD")
    while not reader.status and not reader.error:
        data = await chan.recv()
        if not data:
            return "connection closed before a response"
        codec.feed(data)
    if reader.error:
        return reader.error
    if reader.status not in target.expected:
        return f"unexpected status {reader.status}"
    return ""


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


class _GrpcReader(_StatusReader):
    """A unary gRPC response: the body and the trailers."""

    __slots__ = ("body", "done", "headers", "trailers")

    def __init__(self) -> None:
        super().__init__()
        self.body = b""
        self.done = False
        self.headers: Headers = []
        self.trailers: Headers = []

    def response_head(self, head: ResponseHead) -> None:
        self.status = head.status
        self.headers = head.headers

    def response_body(self, data: bytes) -> None:
        if len(self.body) < _RECV_SIZE:
            self.body += data

    def response_complete(self, trailers: Headers | None) -> None:
        self.trailers = trailers or []
        self.done = True


def serving(message: bytes) -> bool:
    """Whether a ``HealthCheckResponse`` says SERVING (field 1, varint 1)."""
    return len(message) >= 2 and message[0] == 0x08 and message[1] == 1


async def _grpc_health(chan: _Channel, target: ProbeTarget) -> str:
    reader = _GrpcReader()
    codec = Http2ClientConnection(reader)
    codec.expect(False)
    codec.send(target.grpc_request())
    await chan.send(codec.data_to_send())
    while not reader.done and not reader.error:
        data = await chan.recv()
        if not data:
            return "connection closed before a response"
        codec.feed(data)
        out = codec.data_to_send()
        if out:
            await chan.send(out)
    if reader.error:
        return reader.error
    if reader.status != 200:
        return f"unexpected HTTP status {reader.status}"
    # an error is often "Trailers-Only": the status in the response headers
    trailers = dict(reader.trailers) or dict(reader.headers)
    code = trailers.get(b"grpc-status", b"?")
    if code != b"0":
        return f"grpc-status {code.decode('latin-1')}: " + trailers.get(
            b"grpc-message", b""
        ).decode("latin-1")
    if not serving(reader.body[5:]):
        return "not SERVING"
    return ""


# Client contexts by (settings fingerprint, ALPN): a handful per supervisor.
_CONTEXTS: dict[tuple[str, str], ssl.SSLContext] = {}


def _context(target: ProbeTarget) -> ssl.SSLContext:
    assert target.tls is not None
    alpn = "h2" if target.kind == "GRPC" else "http/1.1"
    key = (target.tls.fingerprint, alpn)
    ctx = _CONTEXTS.get(key)
    if ctx is None:
        ctx = _CONTEXTS[key] = client_context(target.tls)
        ctx.set_alpn_protocols([alpn])
    return ctx


async def check(target: ProbeTarget) -> str:
    """Probe ``target`` once: "" when it passed, else why it failed."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(target.timeout):
            sock = await _connect(loop, target.address)
            try:
                if target.kind == "TCP":
                    return ""
                chan = _Channel(loop, sock)
                if target.tls is not None:
                    await chan.handshake(_context(target), target.server_name)
                if target.kind == "GRPC":
                    return await _grpc_health(chan, target)
                return await _http_status(chan, target)
            finally:
                sock.close()
    except TimeoutError:
        return f"timed out after {target.timeout:g}s"
    except ssl.SSLError as exc:
        return f"TLS: {exc.reason or exc}"
    except socket.gaierror as exc:
        return f"cannot resolve {target.address.host!r}: {exc.strerror or exc}"
    except OSError as exc:  # asyncio's messages hide the errno's text: spell it out
        return os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__


class _Probe:
    __slots__ = ("checks", "failures", "last_check", "last_error", "state", "target", "task")

    def __init__(self, target: ProbeTarget, state: ActiveState) -> None:
        self.target = target
        self.state = state
        self.task: asyncio.Task[None] | None = None
        self.last_check = 0.0
        self.last_error = ""
        self.checks = 0
        self.failures = 0


class HealthChecker:
    """Runs the active health checks of every configured target."""

    def __init__(
        self, on_change: Callable[[str, bool], None], rand: random.Random | None = None
    ) -> None:
        self._on_change = on_change
        self._rand = rand if rand is not None else random.Random()
        self._probes: dict[str, _Probe] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self._closed = False

    def configure(self, targets: Iterable[ProbeTarget]) -> None:
        """Probe exactly ``targets`` from now on (call from the running loop).

        Unchanged targets keep their task and state; retuned ones keep their verdict and
        counters; removed ones stop (and report healthy if they were not). Keys must be
        unique: ``ValueError`` otherwise, and nothing changes.
        """
        if self._closed:
            raise RuntimeError("HealthChecker is closed")
        wanted: dict[str, ProbeTarget] = {}
        for target in targets:
            if target.key in wanted:
                raise ValueError(f"two health checks for endpoint {target.key!r}")
            wanted[target.key] = target
        loop = asyncio.get_running_loop()
        for key in [k for k in self._probes if k not in wanted]:
            probe = self._probes.pop(key)
            self._stop(probe)
            if not probe.state.healthy:
                self._notify(key, True)
        for key, target in wanted.items():
            old = self._probes.get(key)
            if old is not None and old.target == target:
                continue
            state = ActiveState(target.healthy_threshold, target.unhealthy_threshold)
            probe = _Probe(target, state)
            if old is not None:
                self._stop(old)
                state.healthy = old.state.healthy
                state.successes = old.state.successes
                state.failures = old.state.failures
                probe.last_check = old.last_check
                probe.last_error = old.last_error
                probe.checks = old.checks
                probe.failures = old.failures
            probe.task = spawn(self._run(probe), loop=loop, name=f"health-check {key}")
            self._probes[key] = probe

    def healthy(self, key: str) -> bool | None:
        """The current verdict for ``key``, None when it is not checked."""
        probe = self._probes.get(key)
        return None if probe is None else probe.state.healthy

    def snapshot(self) -> dict[str, ProbeStatus]:
        """Per-key state for status pages and metrics (replay it to a new worker)."""
        return {
            key: ProbeStatus(
                healthy=p.state.healthy,
                lastCheck=p.last_check,
                lastError=p.last_error,
                consecutive=p.state.consecutive,
                checks=p.checks,
                failures=p.failures,
            )
            for key, p in self._probes.items()
        }

    async def close(self) -> None:
        """Cancel every probe and wait until all of them have ended."""
        self._closed = True
        for probe in self._probes.values():
            self._stop(probe)
        self._probes.clear()
        while self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)

    # -- internals ------------------------------------------------------------------------

    def _stop(self, probe: _Probe) -> None:
        task = probe.task
        if task is None or task.done():
            return
        task.cancel()
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def _run(self, probe: _Probe) -> None:
        target = probe.target
        rand = self._rand
        delay = rand.uniform(0.0, target.interval * target.jitter) if target.jitter else 0.0
        while True:
            if delay:
                await asyncio.sleep(delay)
            try:
                error = await check(target)
            except Exception as exc:  # a bug must not end the checks of this endpoint
                log.exception("health check of %s failed internally", target.key)
                error = f"internal error: {exc!r}"
            self._record(probe, error)
            delay = jittered(target.interval, target.jitter, rand)

    def _record(self, probe: _Probe, error: str) -> None:
        probe.checks += 1
        probe.last_check = time.time()
        probe.last_error = error
        if error:
            probe.failures += 1
        if probe.state.observe(not error):
            key = probe.target.key
            if probe.state.healthy:
                log.info("endpoint %s passes its health checks again", key)
            else:
                log.warning("endpoint %s failed its health checks: %s", key, error)
            self._notify(key, probe.state.healthy)

    def _notify(self, key: str, healthy: bool) -> None:
        try:
            self._on_change(key, healthy)
        except Exception:
            log.exception("health-change callback failed for %s", key)
