"""Sending a case's request and comparing the result (README sections 4-6).

Every check returns a list of mismatch strings (empty = the attempt passed), so a failing
case reports everything that was wrong, not only the first thing.

``scheme: https`` cases go over TLS with SNI = the case's ``sni`` (default: the Host
without its port), trusting the session CA only (``harness.TlsMaterial``). ``protocol:
H2`` sends the request as HTTP/2 over TLS (ALPN ``h2``) with the ``h2`` library over a
plain ``ssl`` socket, so SNI and ``:authority`` are exactly the case's. Before the first H2
case of a target, a probe handshake offers ``h2, http/1.1``: if the gateway does not select
``h2``, the H2 cases are reported as skipped ("HTTP/2 over TLS not supported yet"), so
they start running by themselves once Turnout negotiates HTTP/2. ``protocol: H2C`` (on
``scheme: http``) sends the same HTTP/2 request in clear text with prior knowledge.

``kind: grpc`` / ``grpcWeightedDistribution`` cases call upstream's ``GrpcEcho`` with
grpcio over cleartext HTTP/2: a fresh channel (own subchannel pool, so a fresh
connection) per call, ``grpc.default_authority`` = the case's ``authority``, its
``metadata`` with lower-cased keys; the reply is decoded by ``echoes.decode_echo_response``.
"""

from __future__ import annotations

import http.client
import json
import math
import random
import re
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from websockets.exceptions import WebSocketException
from websockets.sync.client import connect as ws_connect

from tests.conformance.echoes import GRPC_SERVICE, NO_PROXY, decode_echo_response, raw_bytes
from tests.conformance.harness import ConformanceGateway, EchoFleet, host_name

H2_UNSUPPORTED = "HTTP/2 over TLS not supported yet"
TIMEOUT_CODES = frozenset({408, 504})
REDIRECT_CODES = frozenset({300, 301, 302, 303, 304, 305, 307, 308})


@dataclass
class Timing:
    window: float = 5.0  # upstream: 30 s; config is applied synchronously here
    required: int = 3
    interval: float = 0.1
    request_timeout: float = 10.0


# --- one HTTP exchange ----------------------------------------------------------------------


@dataclass
class Exchange:
    """What was sent and what came back."""

    method: str
    target: str
    host: str
    headers: dict[str, str]
    connect: str  # "address:port"
    status: int = 0
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    error: str = ""
    sni: str | None = None  # None: plain HTTP; else TLS with this server name ("" = none)
    protocol: str = "HTTP/1.1"

    def header(self, name: str) -> str | None:
        values = [v for n, v in self.response_headers if n.lower() == name.lower()]
        return ",".join(values) if values else None

    @property
    def echo(self) -> dict[str, Any]:
        """The echo body when Content-Type is exactly application/json, else {}."""
        if self.header("Content-Type") != "application/json":
            return {}
        try:
            doc = json.loads(self.body)
        except ValueError:
            return {}
        return doc if isinstance(doc, dict) else {}

    def describe_request(self) -> str:
        extra = "".join(f" {k}: {v};" for k, v in self.headers.items())
        via = f"{self.connect}"
        if self.sni is not None:
            via = f"https://{self.connect} (SNI {self.sni or 'none'}, {self.protocol})"
        elif self.protocol != "HTTP/1.1":
            via = f"{self.connect} ({self.protocol})"
        return f"{self.method} {self.target} Host: {self.host};{extra} -> {via}"

    def describe_response(self) -> str:
        if self.error:
            return f"no response ({self.error})"
        parts = [f"status {self.status}"]
        echo = self.echo
        if echo:
            keys = ("pod", "namespace", "method", "path", "host", "headers")
            parts.append("echo " + json.dumps({k: echo.get(k) for k in keys}, sort_keys=False))
        else:
            body = self.body[:200].decode("latin-1")
            parts.append(f"body {body!r}")
        hdrs = "; ".join(
            f"{n}: {v}"
            for n, v in self.response_headers
            if n.lower() not in ("date", "content-length", "server")
        )
        parts.append(f"headers [{hdrs}]")
        return ", ".join(parts)


@dataclass(frozen=True)
class ClientTls:
    """How to open a TLS connection: the client context and the SNI to send."""

    context: ssl.SSLContext
    sni: str  # "" = send no SNI


def tls_connect(address: str, port: int, tls: ClientTls, timeout: float) -> ssl.SSLSocket:
    raw = socket.create_connection((address, port), timeout=timeout)
    try:
        return tls.context.wrap_socket(raw, server_hostname=tls.sni or None)
    except BaseException:
        raw.close()
        raise


def send(
    address: str,
    port: int,
    method: str,
    target: str,
    host: str,
    headers: dict[str, str],
    timeout: float,
    tls: ClientTls | None = None,
) -> Exchange:
    """One HTTP/1.1 request on a fresh connection (keep-alive off, as upstream), sent
    verbatim; over TLS when ``tls`` is given."""
    ex = Exchange(method, target, host, dict(headers), f"{address}:{port}")
    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        if tls is not None:
            ex.sni = tls.sni
            conn.sock = tls_connect(address, port, tls, timeout)
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.putheader("Connection", "close")
        conn.endheaders()
        resp = conn.getresponse()
        ex.status = resp.status
        ex.response_headers = resp.getheaders()
        ex.body = resp.read()
    except (OSError, http.client.HTTPException) as exc:
        ex.error = f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()
    return ex


def send_h2(
    address: str,
    port: int,
    method: str,
    target: str,
    host: str,
    headers: dict[str, str],
    timeout: float,
    tls: ClientTls | None,
) -> Exchange:
    """One HTTP/2 request (one stream) on a fresh connection: over TLS that must negotiate
    ``h2``, or, with ``tls`` None, cleartext with prior knowledge (h2c). ``host`` becomes
    ``:authority``, header names are lower-cased (RFC 9113)."""
    ex = Exchange(
        method,
        target,
        host,
        dict(headers),
        f"{address}:{port}",
        sni=tls.sni if tls is not None else None,
        protocol="H2" if tls is not None else "H2C",
    )
    # h2 (python-hyper) is what Turnout's HTTP/2 support is built on; imported here so the
    # runner works without it as long as no H2 case runs.
    try:
        from h2.config import H2Configuration
        from h2.connection import H2Connection
        from h2.events import (
            ConnectionTerminated,
            DataReceived,
            ResponseReceived,
            StreamEnded,
            StreamReset,
        )
        from h2.exceptions import H2Error
    except ImportError as exc:
        ex.error = f"runner: cannot send HTTP/2 ({exc})"
        return ex
    sock: socket.socket
    try:
        if tls is None:
            sock = socket.create_connection((address, port), timeout=timeout)
        else:
            sock = tls_connect(address, port, tls, timeout)
    except OSError as exc:
        ex.error = f"{type(exc).__name__}: {exc}"
        return ex
    try:
        if isinstance(sock, ssl.SSLSocket):
            alpn = sock.selected_alpn_protocol()
            if alpn != "h2":
                ex.error = f"ALPN selected {alpn!r}, not 'h2'"
                return ex
        conn = H2Connection(H2Configuration(client_side=True))
        conn.initiate_connection()
        stream = conn.get_next_available_stream_id()
        scheme = "https" if tls is not None else "http"
        fields = [(":method", method), (":scheme", scheme), (":authority", host)]
        fields.append((":path", target))
        fields.extend((k.lower(), v) for k, v in headers.items())
        conn.send_headers(stream, fields, end_stream=True)
        sock.sendall(conn.data_to_send())
        body = bytearray()
        done = False
        while not done:
            data = sock.recv(65536)
            if not data:
                ex.error = "connection closed before the response ended"
                break
            for event in conn.receive_data(data):
                if isinstance(event, ResponseReceived) and event.stream_id == stream:
                    for raw_name, raw_value in event.headers:
                        name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
                        if name == ":status":
                            ex.status = int(value)
                        elif not name.startswith(":"):
                            ex.response_headers.append((name, value))
                elif isinstance(event, DataReceived) and event.stream_id == stream:
                    body.extend(event.data)
                    conn.acknowledge_received_data(event.flow_controlled_length, stream)
                elif isinstance(event, StreamEnded) and event.stream_id == stream:
                    done = True
                elif isinstance(event, StreamReset) and event.stream_id == stream:
                    ex.error = f"stream reset by the gateway ({event.error_code!r})"
                    done = True
                elif isinstance(event, ConnectionTerminated) and not done:
                    ex.error = f"GOAWAY ({event.error_code!r}) before the response ended"
                    done = True
            sock.sendall(conn.data_to_send())
        ex.body = bytes(body)
        if done and not ex.error:
            conn.close_connection()
            sock.sendall(conn.data_to_send())
    except (OSError, H2Error, ValueError) as exc:
        ex.error = f"{type(exc).__name__}: {exc}"
    finally:
        sock.close()
    return ex


def probe_alpn(address: str, port: int, tls: ClientTls, timeout: float) -> tuple[str, str]:
    """(ALPN protocol the gateway selected or "", error) for one handshake offering the
    context's protocols."""
    try:
        sock = tls_connect(address, port, tls, timeout)
    except OSError as exc:
        return "", f"{type(exc).__name__}: {exc}"
    try:
        return sock.selected_alpn_protocol() or "", ""
    finally:
        sock.close()


# --- one gRPC call --------------------------------------------------------------------------


@dataclass
class GrpcExchange:
    """One unary call of ``GrpcEcho`` and its outcome."""

    method: str
    authority: str  # "" = grpcio's default (the target address)
    metadata: list[tuple[str, str]]
    connect: str
    code: str = ""  # gRPC status name, e.g. OK, UNIMPLEMENTED
    details: str = ""
    reply: dict[str, Any] = field(default_factory=dict)  # echoes.decode_echo_response
    error: str = ""  # the runner could not make the call at all

    @property
    def pod(self) -> str:
        return str((self.reply.get("context") or {}).get("pod", ""))

    def describe_request(self) -> str:
        meta = "".join(f" {k}: {v};" for k, v in self.metadata)
        authority = self.authority or "(target address)"
        return f"gRPC /{GRPC_SERVICE}/{self.method} :authority {authority};{meta} -> {self.connect}"

    def describe_response(self) -> str:
        if self.error:
            return f"no call ({self.error})"
        if self.code != "OK":
            return f"code {self.code} ({self.details!r})"
        ctx = self.reply.get("context") or {}
        return (
            f"code OK, method {self.reply.get('fullyQualifiedMethod')!r}, "
            f"namespace {ctx.get('namespace')!r}, pod {ctx.get('pod')!r}, "
            f"authority {self.reply.get('authority')!r}, metadata {self.reply.get('headers')}"
        )


def send_grpc(
    address: str,
    port: int,
    method: str,
    authority: str,
    metadata: list[tuple[str, str]],
    timeout: float,
) -> GrpcExchange:
    """One unary call (empty ``EchoRequest``) over cleartext HTTP/2 on a fresh channel with
    its own subchannel pool, so a fresh connection (as upstream); ``:authority`` is
    ``authority`` when given (``grpc.default_authority``), metadata keys lower-cased."""
    import grpc  # grpcio only when a gRPC case runs

    meta = [(k.lower(), str(v)) for k, v in metadata]
    ex = GrpcExchange(method, authority, meta, f"{address}:{port}")
    options: list[tuple[str, Any]] = [NO_PROXY, ("grpc.use_local_subchannel_pool", 1)]
    if authority:
        options.append(("grpc.default_authority", authority))
    try:
        with grpc.insecure_channel(f"{address}:{port}", options=options) as channel:
            call = channel.unary_unary(
                f"/{GRPC_SERVICE}/{method}",
                request_serializer=raw_bytes,
                response_deserializer=raw_bytes,
            )
            try:
                reply = call(b"", metadata=meta, timeout=timeout)
            except grpc.RpcError as exc:
                ex.code = exc.code().name
                ex.details = exc.details() or ""
                return ex
            ex.code = "OK"
            try:
                ex.reply = decode_echo_response(reply)
            except ValueError as exc:
                ex.error = f"undecodable EchoResponse ({exc}): {reply[:100]!r}"
    except (ValueError, OSError) as exc:
        ex.error = f"{type(exc).__name__}: {exc}"
    return ex


def compare_grpc(case: dict[str, Any], ex: GrpcExchange) -> list[str]:
    """README 6 (kind: grpc): the status code; for OK also the echoed fully qualified
    method, namespace and pod prefix. ``declaredButNotChecked`` is not enforced."""
    if ex.error:
        return [f"call failed: {ex.error}"]
    expect = case["expect"]
    want = expect.get("code", "OK")
    if ex.code != want:
        return [f"code: expected {want}, got {ex.code} ({ex.details!r})"]
    if want != "OK":
        return []
    out = []
    method = ex.reply.get("fullyQualifiedMethod", "")
    if expect.get("fullyQualifiedMethod") and method != expect["fullyQualifiedMethod"]:
        out.append(f"method: expected {expect['fullyQualifiedMethod']!r}, got {method!r}")
    namespace = (ex.reply.get("context") or {}).get("namespace", "")
    if expect.get("namespace") and namespace != expect["namespace"]:
        out.append(f"namespace: expected {expect['namespace']!r}, got {namespace!r}")
    if expect.get("backend") and not ex.pod.startswith(expect["backend"]):
        out.append(f"backend: expected a pod of {expect['backend']!r}, got {ex.pod!r}")
    return out


# --- a case ---------------------------------------------------------------------------------


@dataclass
class CaseResult:
    index: int
    label: str
    ok: bool
    attempts: int = 0
    failed_attempts: int = 0
    request: str = ""
    expected: str = ""
    got: str = ""
    mismatches: list[str] = field(default_factory=list)
    skipped: str = ""  # not run, and why (the case needs a feature Turnout lacks)

    def report(self) -> str:
        lines = [f"case {self.index}{f' ({self.label})' if self.label else ''}:"]
        lines.append(f"    request:  {self.request}")
        lines.append(f"    expected: {self.expected}")
        lines.append(f"    got:      {self.got}")
        lines.extend(f"    - {m}" for m in self.mismatches)
        lines.append(
            f"    ({self.failed_attempts} of {self.attempts} attempts failed; last failure shown)"
        )
        return "\n".join(lines)


@dataclass
class Attempt:
    mismatches: list[str]
    request: str = ""
    got: str = ""


class CaseRunner:
    def __init__(
        self,
        test: dict[str, Any],
        gateway: ConformanceGateway,
        fleet: EchoFleet,
        defaults: dict[str, Any],
        timing: Timing,
        case_skip: Callable[[dict[str, Any]], str] = lambda case: "",
    ) -> None:
        self.test = test
        self.gateway = gateway
        self.fleet = fleet
        self.defaults = defaults
        self.timing = timing
        self.case_skip = case_skip
        self._alpn: dict[tuple[str, int, str], tuple[str, str]] = {}
        self._alpn_lock = threading.Lock()

    # -- plumbing shared by every kind --

    def target(self, case: dict[str, Any]) -> tuple[str, int]:
        gw = case.get("gateway") or self.test["gateway"]
        scheme = case["request"].get("scheme", "http")
        port = int(case.get("port") or self.defaults["port"][scheme])
        return self.gateway.address(gw), port

    def build(self, case: dict[str, Any], ids: dict[str, str]) -> tuple[dict[str, Any], str]:
        """The request to send and the expected backend path, with {uuid} filled."""
        req = case["request"]
        address, port = self.target(case)
        path = req.get("path", "/")
        expect_req = case["expect"].get("request") or {}
        expected_path = expect_req.get("path")
        if case.get("uuid"):
            value = ids.get("case") or str(uuid.uuid4())
            path = path.replace("{uuid}", value)
            if expected_path:
                expected_path = expected_path.replace("{uuid}", value)
        headers = {k: str(v) for k, v in (req.get("headers") or {}).items()}
        setters = req.get("backendSetResponseHeaders") or {}
        if setters:
            headers["X-Echo-Set-Header"] = ",".join(f"{k}:{v}" for k, v in setters.items())
        scheme = req.get("scheme", "http")
        default_port = int(self.defaults["port"][scheme])
        host = req.get("host") or (address if port == default_port else f"{address}:{port}")
        sent = {
            "address": address,
            "port": port,
            "method": req.get("method", self.defaults["request"]["method"]),
            "target": path,
            "host": host,
            "headers": headers,
        }
        return sent, expected_path or ""

    def client_tls(self, case: dict[str, Any], alpn: tuple[str, ...]) -> ClientTls:
        req = case["request"]
        sni = req["sni"] if "sni" in req else host_name(req.get("host") or "")
        return ClientTls(self.gateway.tls.client_context(alpn), str(sni or ""))

    def h2_skip(self, case: dict[str, Any]) -> str:
        """The skip reason for an H2 case when the gateway does not negotiate h2 (probed
        once per address, port and SNI), else ""."""
        address, port = self.target(case)
        tls = self.client_tls(case, ("h2", "http/1.1"))
        key = (address, port, tls.sni)
        with self._alpn_lock:
            if key not in self._alpn:
                self._alpn[key] = probe_alpn(address, port, tls, self.timing.request_timeout)
            alpn, error = self._alpn[key]
        if error or alpn == "h2":
            return ""  # a failed probe is not a skip: the case runs and reports the failure
        return f"{H2_UNSUPPORTED} (ALPN offered h2, http/1.1; the gateway chose {alpn or 'none'})"

    def send_case(
        self, case: dict[str, Any], ids: dict[str, str], extra: dict[str, str] | None = None
    ) -> tuple[Exchange, str]:
        sent, expected_path = self.build(case, ids)
        headers = {**sent["headers"], **(extra or {})}
        args = (
            sent["address"],
            sent["port"],
            sent["method"],
            sent["target"],
            sent["host"],
            headers,
            self.timing.request_timeout,
        )
        req = case["request"]
        if req.get("scheme", "http") != "https":
            if req.get("protocol", "HTTP/1.1") == "H2C":
                return send_h2(*args, None), expected_path
            return send(*args), expected_path
        if req.get("protocol", "HTTP/1.1") == "H2":
            return send_h2(*args, self.client_tls(case, ("h2",))), expected_path
        return send(*args, self.client_tls(case, ("http/1.1",))), expected_path

    def consistently(
        self, index: int, case: dict[str, Any], attempt: Callable[[], Attempt]
    ) -> CaseResult:
        """Repeat until ``required`` passes in a row; give up ``window`` s after the start."""
        start = time.monotonic()
        passes = attempts = failed = 0
        last: Attempt | None = None
        while True:
            result = attempt()
            attempts += 1
            if not result.mismatches:
                passes += 1
                if passes >= self.timing.required:
                    return CaseResult(
                        index, case.get("name", ""), True, attempts, failed, request=result.request
                    )
                continue
            passes = 0
            failed += 1
            last = result
            if time.monotonic() - start > self.timing.window:
                return CaseResult(
                    index,
                    case.get("name", ""),
                    False,
                    attempts,
                    failed,
                    request=last.request,
                    expected=describe_expect(case),
                    got=last.got,
                    mismatches=last.mismatches,
                )
            time.sleep(self.timing.interval)

    # -- kinds --

    def run(self, index: int, case: dict[str, Any]) -> CaseResult:
        kind = case.get("kind")
        req = case["request"]
        skipped = self.case_skip(case)
        if skipped:
            return CaseResult(index, case.get("name", ""), True, skipped=skipped)
        unsupported = runner_limitation(case)
        if unsupported:
            return CaseResult(
                index,
                case.get("name", ""),
                False,
                request=json.dumps(req),
                expected=describe_expect(case),
                got="not sent",
                mismatches=[unsupported],
            )
        if req.get("protocol") == "H2":
            skipped = self.h2_skip(case)
            if skipped:
                return CaseResult(index, case.get("name", ""), True, skipped=skipped)
        if kind is None:
            return self.run_plain(index, case)
        if kind == "websocket":
            return self.run_websocket(index, case)
        if kind == "weightedDistribution":
            return self.run_weighted(index, case)
        if kind == "backendHeaderConsistency":
            return self.run_header_consistency(index, case)
        if kind == "mirrorPercentage":
            return self.run_mirror_percentage(index, case)
        if kind == "grpc":
            return self.run_grpc(index, case)
        if kind == "grpcWeightedDistribution":
            return self.run_grpc_weighted(index, case)
        raise AssertionError(f"unhandled kind {kind!r} for {req}")

    def plain_attempt(self, case: dict[str, Any], ids: dict[str, str]) -> Attempt:
        ex, expected_path = self.send_case(case, ids)
        mismatches = compare(case, ex, expected_path)
        if not mismatches and case["expect"].get("mirroredTo"):
            mismatches = self.check_mirrored(case["expect"]["mirroredTo"], expected_path)
        return Attempt(mismatches, ex.describe_request(), ex.describe_response())

    def run_plain(self, index: int, case: dict[str, Any]) -> CaseResult:
        ids = {"case": str(uuid.uuid4())} if case.get("uuid") == "perCase" else {}
        return self.consistently(index, case, lambda: self.plain_attempt(case, ids))

    def check_mirrored(self, targets: list[dict[str, Any]], path: str) -> list[str]:
        deadline = time.monotonic() + 10.0
        missing = list(targets)
        while missing and time.monotonic() < deadline:
            missing = [
                t
                for t in missing
                if not any(
                    path in s.received for s in self.fleet.http_instances(t["namespace"], t["name"])
                )
            ]
            if missing:
                time.sleep(0.05)
        return [f"mirror {t['namespace']}/{t['name']} never received {path}" for t in missing]

    def run_websocket(self, index: int, case: dict[str, Any]) -> CaseResult:
        address, port = self.target(case)
        path = case["request"].get("path", "/ws")
        origin = case["request"].get("origin", "").replace("<test name>", self.test["name"])
        url = f"ws://{address}:{port}{path}"
        messages: list[str | bytes] = [
            m["data"] if m["type"] == "text" else bytes.fromhex(m["dataHex"])
            for m in case["messages"]
        ]

        def attempt() -> Attempt:
            request = f"WebSocket {url} Origin: {origin}; frames {messages!r}"
            got: list[str | bytes] = []
            try:
                with ws_connect(
                    url, origin=origin or None, open_timeout=self.timing.request_timeout
                ) as ws:
                    for message in messages:
                        ws.send(message)
                        got.append(ws.recv(timeout=self.timing.request_timeout))
            except (OSError, WebSocketException, TimeoutError) as exc:
                return Attempt(
                    [f"websocket failed: {type(exc).__name__}: {exc}"], request, repr(got)
                )
            bad = [
                f"frame {i}: sent {m!r}, echoed {g!r}"
                for i, (m, g) in enumerate(zip(messages, got, strict=True))
                if m != g
            ]
            return Attempt(bad, request, f"echoed {got!r}")

        return self.consistently(index, case, attempt)

    def send_grpc_case(self, case: dict[str, Any], extra: list[tuple[str, str]]) -> GrpcExchange:
        address, port = self.target(case)
        req = case["request"]
        metadata = [(k, str(v)) for k, v in (req.get("metadata") or {}).items()] + extra
        return send_grpc(
            address,
            port,
            req["method"],
            str(req.get("authority") or ""),
            metadata,
            self.timing.request_timeout,
        )

    def run_grpc(self, index: int, case: dict[str, Any]) -> CaseResult:
        def attempt() -> Attempt:
            ex = self.send_grpc_case(case, [])
            return Attempt(compare_grpc(case, ex), ex.describe_request(), ex.describe_response())

        return self.consistently(index, case, attempt)

    def run_grpc_weighted(self, index: int, case: dict[str, Any]) -> CaseResult:
        """README 6 (grpcWeightedDistribution): like ``run_weighted``, with the gRPC call,
        ``x-jitter`` metadata as entropy and the pod from ``assertions.context.pod``."""

        def one(_: int) -> tuple[str, list[str], str]:
            extra = [("x-jitter", str(random.randint(0, 9999)))] if random.random() < 0.5 else []
            ex = self.send_grpc_case(case, extra)
            service = "-".join(ex.pod.split("-")[:-2])
            return service, compare_grpc(case, ex), ex.describe_response()

        return self.sample_weights(self.run_grpc(index, case), case, one)

    def run_weighted(self, index: int, case: dict[str, Any]) -> CaseResult:
        def one(_: int) -> tuple[str, list[str], str]:
            extra = {"X-Jitter": str(random.randint(0, 9999))} if random.random() < 0.5 else {}
            ex, expected_path = self.send_case(case, {}, extra)
            pod = str(ex.echo.get("pod", ""))
            service = "-".join(pod.split("-")[:-2])
            return service, compare(case, ex, expected_path), ex.describe_response()

        return self.sample_weights(self.run_plain(index, case), case, one)

    def sample_weights(
        self,
        first: CaseResult,
        case: dict[str, Any],
        one: Callable[[int], tuple[str, list[str], str]],
    ) -> CaseResult:
        """After a passing first request: send ``totalRequests`` with ``one`` (→ service,
        mismatches, response) and compare each service's share with the case's weights,
        up to ``maxAttempts`` times."""
        if not first.ok:
            return first
        sampling, weights = case["sampling"], case["weights"]
        attempts: list[str] = []
        for _ in range(int(sampling["maxAttempts"])):
            with ThreadPoolExecutor(int(sampling["concurrency"])) as pool:
                results = list(pool.map(one, range(int(sampling["totalRequests"]))))
            bad = [f"{got}: {m}" for _, mm, got in results for m in mm]
            counts: dict[str, int] = {}
            for service, _, _ in results:
                counts[service] = counts.get(service, 0) + 1
            problems = bad[:3] + weight_problems(counts, weights, float(sampling["tolerance"]))
            if not problems:
                return first
            attempts.append(f"counts {counts}: " + "; ".join(problems))
        first.ok = False
        first.expected = f"shares {weights} ± {sampling['tolerance']}"
        first.got = attempts[-1]
        first.mismatches = [f"attempt {i + 1}: {a}" for i, a in enumerate(attempts)]
        return first

    def run_header_consistency(self, index: int, case: dict[str, Any]) -> CaseResult:
        first = self.run_plain(index, case)
        if not first.ok:
            return first
        name = case["headerName"]
        problems: list[str] = []
        for _ in range(int(case["repeat"])):
            ex, expected_path = self.send_case(case, {})
            mm = compare(case, ex, expected_path)
            echo = ex.echo
            values = [
                v
                for k, vs in (echo.get("headers") or {}).items()
                if k.lower() == name.lower()
                for v in vs
            ]
            pod = str(echo.get("pod", ""))
            if len(values) != 1:
                mm.append(f"expected exactly one {name} header, got {values}")
            elif not pod.startswith(values[0]):
                mm.append(f"pod {pod!r} answered but {name} is {values[0]!r}")
            if mm:
                problems.append(f"{ex.describe_response()}: {'; '.join(mm)}")
        if problems:
            first.ok = False
            first.expected = f"each backend request carries one {name} header naming its pod"
            first.got = f"{len(problems)} of {case['repeat']} requests wrong"
            first.mismatches = problems[:5]
        return first

    def run_mirror_percentage(self, index: int, case: dict[str, Any]) -> CaseResult:
        first = self.run_plain(index, case)
        if not first.ok:
            return first
        sampling = case["sampling"]
        param = sampling.get("requestIdQueryParam", "gateway-api-conformance-request-id")
        n = int(sampling["totalRequests"])
        outcomes: list[str] = []
        for attempt_no in range(int(sampling["maxAttempts"])):
            rid = str(uuid.uuid4())
            variant = _with_request_id(case, param, rid)

            def one(_: int, variant: dict[str, Any] = variant) -> bool:
                deadline = time.monotonic() + self.timing.window
                while time.monotonic() < deadline:
                    ex, expected_path = self.send_case(variant, {})
                    if not compare(variant, ex, expected_path):
                        return True
                    time.sleep(self.timing.interval)
                return False

            with ThreadPoolExecutor(int(sampling["concurrency"])) as pool:
                sent_ok = sum(pool.map(one, range(n)))
            time.sleep(0.5)  # let in-flight mirror copies land
            target = variant["expect"]["request"]["path"]
            problems = [] if sent_ok == n else [f"{n - sent_ok} requests never met expect"]
            for mirror in case["mirroredTo"]:
                p = float(mirror["percent"]) / 100
                got = sum(
                    s.received.count(target)
                    for s in self.fleet.http_instances(mirror["namespace"], mirror["name"])
                )
                spread = float(sampling["toleranceStdDevs"]) * math.sqrt(n * p * (1 - p))
                if abs(got - n * p) > spread:
                    problems.append(
                        f"{mirror['name']}: {got} copies, expected {n * p:.0f} ± {spread:.1f}"
                    )
            if not problems:
                return first
            outcomes.append("; ".join(problems))
            if attempt_no + 1 < int(sampling["maxAttempts"]):
                time.sleep(2.0)
        first.ok = False
        first.expected = f"mirror shares {case['mirroredTo']}"
        first.got = outcomes[-1]
        first.mismatches = [f"attempt {i + 1}: {o}" for i, o in enumerate(outcomes)]
        return first


def weight_problems(
    counts: dict[str, int], weights: dict[str, float], tolerance: float
) -> list[str]:
    """README 6 (weightedDistribution): no unknown backend, traffic exactly to the backends
    with weight > 0, every observed share within ``tolerance`` of its weight."""
    total = sum(counts.values()) or 1
    problems = []
    unknown = sorted(s for s in counts if s not in weights)
    if unknown:
        problems.append(f"unknown backends answered: {unknown}")
    for name, weight in weights.items():
        share = counts.get(name, 0) / total
        if weight == 0 and counts.get(name, 0):
            problems.append(f"{name} has weight 0 but got {counts[name]} requests")
        elif weight > 0 and not counts.get(name):
            problems.append(f"{name} has weight {weight} but got no requests")
        elif abs(share - weight) > tolerance:
            problems.append(f"{name}: share {share:.3f}, weight {weight}")
    return problems


def _with_request_id(case: dict[str, Any], param: str, rid: str) -> dict[str, Any]:
    out = json.loads(json.dumps(case))
    for holder in (out["request"], out["expect"]["request"]):
        path = holder["path"]
        holder["path"] = f"{path}{'&' if '?' in path else '?'}{param}={rid}"
    return out


def runner_limitation(case: dict[str, Any]) -> str:
    """Cases this runner cannot send: failures, never silently passed (the test module's
    skip table covers them while Turnout lacks the feature anyway)."""
    req = case["request"]
    scheme, protocol = req.get("scheme", "http"), req.get("protocol", "HTTP/1.1")
    if scheme not in ("http", "https"):
        return f"runner: scheme {scheme} is not implemented"
    supported = (("http", "HTTP/1.1"), ("http", "H2C"), ("https", "HTTP/1.1"), ("https", "H2"))
    if (scheme, protocol) not in supported:
        return f"runner: protocol {protocol} over {scheme} is not implemented"
    if scheme == "https" and case.get("kind") == "websocket":
        return "runner: WebSocket over TLS is not implemented"
    if scheme == "https" and case.get("kind") in ("grpc", "grpcWeightedDistribution"):
        return "runner: gRPC over TLS is not implemented"
    return ""


# --- comparison (README section 5) ----------------------------------------------------------


def joined(headers: dict[str, list[str]] | list[tuple[str, str]], name: str) -> str | None:
    items = headers.items() if isinstance(headers, dict) else [(n, [v]) for n, v in headers]
    values = [v for n, vs in items if n.lower() == name.lower() for v in vs]
    return ",".join(values) if values else None


def expected_statuses(expect: dict[str, Any]) -> list[int]:
    return list(expect.get("statusAnyOf") or [expect.get("status", 200)])


def compare(case: dict[str, Any], ex: Exchange, expected_path: str) -> list[str]:
    expect = case["expect"]
    if ex.error:
        return [f"request failed: {ex.error}"]
    wanted = expected_statuses(expect)
    out: list[str] = []
    if ex.status not in wanted and not (ex.status in TIMEOUT_CODES and TIMEOUT_CODES & set(wanted)):
        out.append(f"status: expected {' or '.join(map(str, wanted))}, got {ex.status}")
        return out
    if ex.status in REDIRECT_CODES and expect.get("redirect"):
        out.extend(compare_redirect(expect["redirect"], ex.header("Location")))
    if ex.status in (200, 204):
        out.extend(compare_ok(expect, ex, expected_path))
    return out


def compare_redirect(want: dict[str, Any], location: str | None) -> list[str]:
    if not location:
        return ["redirect: no Location header"]
    parts = urlsplit(location)
    netloc = parts.netloc.rpartition("@")[2]
    m = re.fullmatch(r"(\[[^\]]*\]|[^:]*)(?::(.*))?", netloc)
    host, port = (m.group(1), m.group(2) or "") if m else (netloc, "")
    out = []
    if parts.scheme != want["scheme"]:
        out.append(
            f"redirect scheme: expected {want['scheme']!r}, got {parts.scheme!r} ({location})"
        )
    if "host" in want and host != want["host"]:
        out.append(f"redirect host: expected {want['host']!r}, got {host!r} ({location})")
    if unquote(parts.path) != want["path"]:
        out.append(f"redirect path: expected {want['path']!r}, got {parts.path!r} ({location})")
    if "port" in want:
        if port != str(want["port"]):
            out.append(f"redirect port: expected {want['port']!r}, got {port!r} ({location})")
    else:
        allowed = {"", "80"} if want["scheme"] == "http" else {"", "443"}
        if port not in allowed:
            out.append(
                f"redirect port: expected none or {max(allowed)} for {want['scheme']}, "
                f"got {port!r} ({location})"
            )
    return out


def compare_ok(expect: dict[str, Any], ex: Exchange, expected_path: str) -> list[str]:
    out: list[str] = []
    echo = ex.echo
    if expect.get("answeredByGateway"):
        if echo:
            out.append("expected the gateway to answer, but a backend echoed the request")
        return out + compare_response(expect.get("response") or {}, ex)
    if "namespace" in expect and echo.get("namespace", "") != expect["namespace"]:
        out.append(f"namespace: expected {expect['namespace']!r}, got {echo.get('namespace')!r}")
    pod = str(echo.get("pod", ""))
    if expect.get("backend") and not pod.startswith(expect["backend"]):
        out.append(f"backend: expected a pod of {expect['backend']!r}, got {pod!r}")
    req = expect.get("request") or {}
    if req:
        if echo.get("path", "") != expected_path:
            out.append(f"backend path: expected {expected_path!r}, got {echo.get('path')!r}")
        method = echo.get("method") or ex.method
        if method != req.get("method", "GET"):
            out.append(f"backend method: expected {req.get('method', 'GET')!r}, got {method!r}")
        if "host" in req and echo.get("host", "") != req["host"]:
            out.append(f"backend host: expected {req['host']!r}, got {echo.get('host')!r}")
        got_headers = echo.get("headers") or {}
        for name, value in (req.get("headers") or {}).items():
            actual = joined(got_headers, name)
            if actual is None:
                out.append(f"backend header {name}: expected {value!r}, absent")
            elif actual != str(value):
                out.append(f"backend header {name}: expected {value!r}, got {actual!r}")
        for name in req.get("absentHeaders") or []:
            actual = joined(got_headers, name)
            if actual is not None:
                out.append(f"backend header {name}: expected absent, got {actual!r}")
    return out + compare_response(expect.get("response") or {}, ex)


def compare_response(want: dict[str, Any], ex: Exchange) -> list[str]:
    out: list[str] = []

    def norm(v: str) -> str:
        return v.replace(" ", "") if want.get("ignoreWhitespace") else v

    for name, value in (want.get("headers") or {}).items():
        actual = joined(ex.response_headers, name)
        if actual is None:
            out.append(f"response header {name}: expected {value!r}, absent")
        elif norm(actual) != norm(str(value)):
            out.append(f"response header {name}: expected {value!r}, got {actual!r}")
    for name, options in (want.get("headersOneOf") or {}).items():
        actual = joined(ex.response_headers, name)
        if actual is None or norm(actual) not in {norm(str(o)) for o in options}:
            out.append(f"response header {name}: expected one of {options!r}, got {actual!r}")
    for name in want.get("absentHeaders") or []:
        actual = joined(ex.response_headers, name)
        if actual is not None:
            out.append(f"response header {name}: expected absent, got {actual!r}")
    return out


def describe_expect(case: dict[str, Any]) -> str:
    expect = dict(case["expect"])
    if case.get("kind"):
        expect["kind"] = case["kind"]
    return json.dumps(expect, sort_keys=False)


# --- a whole test ---------------------------------------------------------------------------


def run_cases(runner: CaseRunner, cases: list[dict[str, Any]]) -> list[CaseResult]:
    """Cases are independent (README 1.3): run them in parallel, keep their order."""
    lock = threading.Lock()
    results: dict[int, CaseResult] = {}

    def one(item: tuple[int, dict[str, Any]]) -> None:
        index, case = item
        result = runner.run(index, case)
        with lock:
            results[index] = result

    with ThreadPoolExecutor(max(1, min(16, len(cases)))) as pool:
        list(pool.map(one, enumerate(cases, 1)))
    return [results[i] for i in sorted(results)]
