"""The runner's HTTP/2 echo backends (README 3.2, 3.3) and the few protobuf messages of
upstream's gRPC echo, encoded by hand (no protoc here; the wire format is simple).

- ``H2cEcho``: the h2c-only echo behind ``infra-backend-v1:8081`` (appProtocol
  ``kubernetes.io/h2c``). HTTP/2 with prior knowledge only (the ``h2`` library over
  asyncio); it answers every stream with the same JSON echo body as the HTTP/1.1 echo
  (``proto`` ``HTTP/2.0``, ``host`` = ``:authority``), and an HTTP/1.x request with 400,
  so a pass proves the gateway spoke HTTP/2 to it.
- ``GrpcEcho``: a grpcio server for ``grpc-infra-backend-*``, implementing
  ``gateway_api_conformance.echo_basic.grpcecho.GrpcEcho``: ``Echo`` and ``EchoTwo`` answer
  an ``EchoResponse`` carrying the fully qualified method, the received metadata, the
  ``:authority`` and the instance's identity (namespace, service, pod); ``EchoThree`` answers
  ``UNIMPLEMENTED``, as upstream's does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from turnout.samples.echo import EchoIdentity, EchoProtocol, EchoState, canonical

# --- protobuf, by hand ------------------------------------------------------------------------
#
# EchoRequest {}
# EchoResponse { Assertions assertions = 1; EchoRequest request = 2; }
# Assertions { string fully_qualified_method = 1; repeated Header headers = 2;
#              string authority = 3; Context context = 4; TLSAssertions tls_assertions = 5; }
# Header { string key = 1; string value = 2; }
# Context { string namespace = 1; string ingress = 2; string service_name = 3; string pod = 4; }

GRPC_SERVICE = "gateway_api_conformance.echo_basic.grpcecho.GrpcEcho"
GRPC_METHODS = ("Echo", "EchoTwo")  # EchoThree: UNIMPLEMENTED
NO_PROXY = ("grpc.enable_http_proxy", 0)


def pb_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def pb_bytes(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2): strings, bytes, sub-messages."""
    return pb_varint(number << 3 | 2) + pb_varint(len(payload)) + payload


def pb_string(number: int, value: str) -> bytes:
    """A proto3 string field; empty strings are left out, as proto3 does."""
    return pb_bytes(number, value.encode()) if value else b""


def pb_fields(data: bytes) -> dict[int, list[Any]]:
    """Field number -> values (bytes for wire type 2, int otherwise). Raises ValueError on
    a malformed message."""
    out: dict[int, list[Any]] = {}
    pos = 0

    def varint() -> int:
        nonlocal pos
        shift = value = 0
        while True:
            if pos >= len(data) or shift > 63:
                raise ValueError("truncated varint")
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while pos < len(data):
        tag = varint()
        number, wire = tag >> 3, tag & 7
        value: Any
        if wire == 0:
            value = varint()
        elif wire == 2:
            size = varint()
            if pos + size > len(data):
                raise ValueError("truncated length-delimited field")
            value, pos = data[pos : pos + size], pos + size
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if pos + size > len(data):
                raise ValueError("truncated fixed-width field")
            value, pos = int.from_bytes(data[pos : pos + size], "little"), pos + size
        else:
            raise ValueError(f"unsupported wire type {wire}")
        out.setdefault(number, []).append(value)
    return out


def _str(fields: dict[int, list[Any]], number: int) -> str:
    values = fields.get(number) or [b""]
    return bytes(values[-1]).decode("utf-8", "replace")


def encode_echo_response(
    method: str, headers: Iterable[tuple[str, str]], authority: str, identity: EchoIdentity
) -> bytes:
    context = (
        pb_string(1, identity.namespace)
        + pb_string(3, identity.service)
        + pb_string(4, identity.pod)
    )
    assertions = pb_string(1, method)
    for key, value in headers:
        assertions += pb_bytes(2, pb_string(1, key) + pb_string(2, value))
    assertions += pb_string(3, authority) + pb_bytes(4, context)
    return pb_bytes(1, assertions) + pb_bytes(2, b"")


def decode_echo_response(data: bytes) -> dict[str, Any]:
    """The ``EchoResponse`` as ``{fullyQualifiedMethod, headers: [[k, v]], authority,
    context: {namespace, ingress, serviceName, pod}}``."""
    top = pb_fields(data)
    assertions = pb_fields(bytes((top.get(1) or [b""])[-1]))
    context = pb_fields(bytes((assertions.get(4) or [b""])[-1]))
    headers = []
    for raw in assertions.get(2) or []:
        header = pb_fields(bytes(raw))
        headers.append([_str(header, 1), _str(header, 2)])
    return {
        "fullyQualifiedMethod": _str(assertions, 1),
        "headers": headers,
        "authority": _str(assertions, 3),
        "context": {
            "namespace": _str(context, 1),
            "ingress": _str(context, 2),
            "serviceName": _str(context, 3),
            "pod": _str(context, 4),
        },
    }


def raw_bytes(b: bytes) -> bytes:
    return b


# --- gRPC echo ------------------------------------------------------------------------------


class GrpcEcho:
    """One instance of upstream's gRPC echo (cleartext HTTP/2, grpcio, own thread pool).
    ``state.received`` records the fully qualified method of every call."""

    def __init__(self, identity: EchoIdentity) -> None:
        self.state = EchoState(identity)
        self.server: Any = None

    def start(self) -> GrpcEcho:
        import grpc  # the runner needs grpcio only when a gRPC backend is started

        handlers = {
            name: grpc.unary_unary_rpc_method_handler(
                self._echo, request_deserializer=raw_bytes, response_serializer=raw_bytes
            )
            for name in GRPC_METHODS
        }
        handlers["EchoThree"] = grpc.unary_unary_rpc_method_handler(
            self._unimplemented, request_deserializer=raw_bytes, response_serializer=raw_bytes
        )
        server = grpc.server(ThreadPoolExecutor(max_workers=8), options=[NO_PROXY])
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(GRPC_SERVICE, handlers),)
        )
        self.state.port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self.server = server
        return self

    def _echo(self, request: bytes, context: Any) -> bytes:
        method = _call_detail(context, "method")
        self.state.requests += 1
        self.state.received.append(method)
        headers = [
            (m.key, m.value if isinstance(m.value, str) else m.value.hex())
            for m in context.invocation_metadata()
        ]
        authority = _call_detail(context, "host")
        return encode_echo_response(method, headers, authority, self.state.identity)

    def _unimplemented(self, request: bytes, context: Any) -> bytes:
        import grpc

        self.state.requests += 1
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "EchoThree is not implemented")
        return b""

    def close(self) -> None:
        if self.server is not None:
            self.server.stop(0)


def _call_detail(context: Any, name: str) -> str:
    """``method`` / ``host`` (``:authority``) of the call. grpcio's public servicer context
    exposes neither, so this reads its call details; "" if a grpcio version lacks them (the
    cases check neither the echoed authority nor, beyond this, the method source)."""
    details = getattr(getattr(context, "_rpc_event", None), "call_details", None)
    value = getattr(details, name, b"")
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")


# --- h2c echo -------------------------------------------------------------------------------

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class H2cEchoProtocol(asyncio.Protocol):
    def __init__(self, state: EchoState) -> None:
        self.state = state
        self.transport: asyncio.Transport | None = None
        self.conn: Any = None
        self.head = b""
        self.streams: dict[int, list[tuple[str, str]]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        from h2.config import H2Configuration
        from h2.connection import H2Connection
        from h2.events import ConnectionTerminated, DataReceived, RequestReceived, StreamEnded
        from h2.exceptions import H2Error

        assert self.transport is not None
        if self.conn is None:
            self.head += data
            if len(self.head) < len(_PREFACE) and _PREFACE.startswith(self.head):
                return
            if not self.head.startswith(_PREFACE):
                self._refuse_http1()
                return
            data, self.head = self.head, b""
            self.conn = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
            self.conn.initiate_connection()
        try:
            events = self.conn.receive_data(data)
            for event in events:
                if isinstance(event, RequestReceived):
                    self.streams[event.stream_id] = [(str(k), str(v)) for k, v in event.headers]
                elif isinstance(event, DataReceived):
                    self.conn.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
                elif isinstance(event, StreamEnded) and event.stream_id in self.streams:
                    self._answer(event.stream_id, self.streams.pop(event.stream_id))
                elif isinstance(event, ConnectionTerminated):
                    self.transport.write(self.conn.data_to_send())
                    self.transport.close()
                    return
        except H2Error:
            self.transport.close()
            return
        self.transport.write(self.conn.data_to_send())

    def _refuse_http1(self) -> None:
        assert self.transport is not None
        self.state.requests += 1
        body = b"this backend speaks HTTP/2 with prior knowledge only\n"
        self.transport.write(
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        self.transport.close()

    def _answer(self, stream: int, fields: list[tuple[str, str]]) -> None:
        pseudo = {k: v for k, v in fields if k.startswith(":")}
        path = pseudo.get(":path", "")
        self.state.requests += 1
        self.state.received.append(path)
        headers: dict[str, list[str]] = {}
        extra: list[tuple[str, str]] = []
        for name, value in fields:
            if name.startswith(":") or name == "host":
                continue
            headers.setdefault(canonical(name), []).append(value)
            if name == "x-echo-set-header" and value:
                extra.extend((k.lower(), v) for k, v in EchoProtocol._set_headers(value))
        ident = self.state.identity
        doc = {
            "path": path,
            "host": pseudo.get(":authority", ""),
            "method": pseudo.get(":method", ""),
            "proto": "HTTP/2.0",
            "headers": headers,
            "namespace": ident.namespace,
            "ingress": "",
            "service": ident.service,
            "pod": ident.pod,
            "httpPort": str(self.state.port),
        }
        body = json.dumps(doc).encode() + b"\n"
        self.conn.send_headers(
            stream,
            [
                (":status", "200"),
                ("content-type", "application/json"),
                ("content-length", str(len(body))),
                *extra,
            ],
        )
        size = self.conn.max_outbound_frame_size
        for i in range(0, len(body), size):  # a few hundred bytes: well inside any window
            self.conn.send_data(stream, body[i : i + size], end_stream=i + size >= len(body))


class H2cEcho:
    """The h2c-only echo (README 3.2), on the runner's background loop."""

    def __init__(self, identity: EchoIdentity) -> None:
        self.state = EchoState(identity)
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> H2cEcho:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: H2cEchoProtocol(self.state), "127.0.0.1", 0)
        self.state.port = int(self.server.sockets[0].getsockname()[1])
        return self

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
