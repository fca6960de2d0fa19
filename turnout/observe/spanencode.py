"""A kept request's record (``observe.flowrecord``) as encoded OTLP spans.

Runs in the worker's export task, between requests. A request gives one server span
and one client span per upstream attempt (and per request-mirror copy). Most of a
span's attributes are the same for every request of a route — method, scheme, host,
listener, route, backend, endpoint, routing key — so each distinct combination is
encoded once, with the span's name and kind, and kept (bounded); per request only
the ids, timestamps and the few values that vary (path, client address, status,
sizes, request id) are written, most of those from ``protowire``'s attribute cache.

Attribute names follow the OpenTelemetry HTTP semantic conventions
(``http.request.method``, ``url.path``, ``server.address``,
``http.response.status_code``, ``http.request.resend_count``, ``error.type``, ...);
what only the gateway knows goes under ``turnout.*``. The query string is never
recorded (it may hold credentials). A server span is an error from 500 up; a client
span from 400 up or when the attempt failed without an answer.
"""

from __future__ import annotations

from struct import Struct
from typing import Any, Final

from turnout.observe.flowrecord import (
    A_END,
    A_ENDPOINT,
    A_ERROR,
    A_HOST,
    A_MIRROR,
    A_PORT,
    A_RESEND,
    A_SPAN_ID,
    A_START,
    A_STATUS,
    ATTEMPTS,
    BACKEND,
    BYTES_IN,
    BYTES_OUT,
    CLIENT_IP,
    END,
    FILTERS,
    HOST,
    LISTENER,
    METHOD,
    OVERRIDDEN,
    PARENT_ID,
    PATH,
    PORT,
    RELEASE,
    REQUEST_ID,
    ROUTE,
    ROUTING_KEY,
    SCHEME,
    SPAN_ID,
    START,
    STATUS,
    TRACE_ID,
    USER_AGENT,
    VERSION,
    WALL_OFFSET,
)
from turnout.observe.protowire import (
    SPANS,
    AttributeValue,
    attribute,
    encode_attribute,
    field,
    name_kind,
    status,
)

SPAN_KIND_SERVER: Final = 2  # opentelemetry.proto.trace.v1.Span.SpanKind
SPAN_KIND_CLIENT: Final = 3
_BLOCKS: Final = 1024  # cached attribute blocks per kind; cleared when full

_server: dict[tuple[Any, ...], tuple[bytes, bytes]] = {}
_client: dict[tuple[Any, ...], tuple[bytes, bytes]] = {}


def _text(value: bytes) -> str:
    return value.decode("latin-1")


def _block(pairs: list[tuple[str, AttributeValue]]) -> bytes:
    return b"".join([attribute(k, v) for k, v in pairs])


def _common(backend: str, routing_key: bytes, overridden: bool, release: str) -> list[Any]:
    out: list[tuple[str, AttributeValue]] = []
    if backend:
        out.append(("turnout.backend", backend))
    if release:
        out.append(("turnout.release.version", release))
    if routing_key:
        out.append(("turnout.routing_key", routing_key.decode("ascii", "replace")))
        out.append(("turnout.sandbox.override", overridden))
    return out


def _server_block(rec: tuple[Any, ...]) -> tuple[bytes, bytes]:
    """(name and kind, the attributes every request of this kind shares)."""
    key = (
        rec[METHOD],
        rec[SCHEME],
        rec[HOST],
        rec[VERSION],
        rec[LISTENER],
        rec[PORT],
        rec[ROUTE],
        rec[BACKEND],
        rec[ROUTING_KEY],
        rec[OVERRIDDEN],
        rec[FILTERS],
        rec[RELEASE],
    )
    done = _server.get(key)
    if done is not None:
        return done
    method = _text(rec[METHOD])
    pairs: list[tuple[str, AttributeValue]] = [
        ("http.request.method", method),
        ("url.scheme", _text(rec[SCHEME])),
        ("server.address", rec[HOST]),
        ("network.protocol.version", _text(rec[VERSION])),
    ]
    if rec[LISTENER]:
        pairs.append(("server.port", rec[PORT]))
        pairs.append(("turnout.listener", rec[LISTENER]))
    route = rec[ROUTE]
    if route:
        pairs.append(("turnout.route", route))
    if rec[FILTERS]:
        pairs.append(("turnout.filters", ",".join(rec[FILTERS])))
    pairs += _common(rec[BACKEND], rec[ROUTING_KEY], rec[OVERRIDDEN], rec[RELEASE])
    name = f"{method} {route}" if route else method
    if len(_server) >= _BLOCKS:
        _server.clear()
    done = _server[key] = (name_kind(name, SPAN_KIND_SERVER), _block(pairs))
    return done


def _client_block(rec: tuple[Any, ...], a: tuple[Any, ...]) -> tuple[bytes, bytes]:
    mirror = a[A_MIRROR]
    key = (
        rec[METHOD],
        a[A_HOST],
        a[A_PORT],
        a[A_ENDPOINT],
        mirror or rec[BACKEND],
        rec[ROUTING_KEY],
        rec[OVERRIDDEN],
        rec[RELEASE],
        bool(mirror),
    )
    done = _client.get(key)
    if done is not None:
        return done
    method = _text(rec[METHOD])
    pairs: list[tuple[str, AttributeValue]] = [("http.request.method", method)]
    if a[A_HOST]:
        pairs.append(("server.address", a[A_HOST]))
        pairs.append(("server.port", a[A_PORT]))
    pairs.append(("turnout.endpoint", a[A_ENDPOINT]))
    if mirror:
        pairs.append(("turnout.mirror", True))
        pairs += _common(mirror, rec[ROUTING_KEY], rec[OVERRIDDEN], "")
    else:
        pairs += _common(rec[BACKEND], rec[ROUTING_KEY], rec[OVERRIDDEN], rec[RELEASE])
    if len(_client) >= _BLOCKS:
        _client.clear()
    done = _client[key] = (name_kind(method, SPAN_KIND_CLIENT), _block(pairs))
    return done


_TIMES: Final = Struct("<BQBQ")  # Span.start_time_unix_nano (7), end (8): fixed64
_IDS: Final = b"\x0a\x10"  # Span.trace_id (1), 16 bytes; then span_id (2), 8 bytes
_SPAN_ID: Final = b"\x12\x08"
_PARENT_ID: Final = b"\x22\x08"
_SMALL_CACHE: Final = 4096

# Per-value caches of the attributes that vary per request, keyed by the raw value
# (no decoding on a hit); each cleared when full.
_paths: dict[bytes, bytes] = {}
_clients: dict[bytes, bytes] = {}
_agents: dict[bytes, bytes] = {}
_ints: dict[tuple[str, int], bytes] = {}


def _cached_text(cache: dict[bytes, bytes], key: str, raw: bytes) -> bytes:
    done = cache.get(raw)
    if done is None:
        if len(cache) >= _SMALL_CACHE:
            cache.clear()
        done = cache[raw] = encode_attribute(key, raw.decode("latin-1"))
    return done


def _int(key: str, value: int) -> bytes:
    ck = (key, value)
    done = _ints.get(ck)
    if done is None:
        if len(_ints) >= _SMALL_CACHE:
            _ints.clear()
        done = _ints[ck] = encode_attribute(key, value)
    return done


_RID_KEY: Final = field(b"\x0a", b"turnout.request_id")


def _request_id(raw: bytes) -> bytes:
    """The ``turnout.request_id`` attribute: never repeats, so never cached."""
    n = len(raw)
    if n > 100 or not raw.isascii():  # the general way (lengths over one byte, UTF-8)
        return encode_attribute("turnout.request_id", raw.decode("latin-1"))
    value = b"\x12" + bytes((n + 2, 0x0A, n)) + raw  # KeyValue.value = AnyValue{string}
    return b"\x4a" + bytes((len(_RID_KEY) + n + 4,)) + _RID_KEY + value


def _ids(trace: bytes, span_id: int, parent_id: int) -> bytes:
    if parent_id:
        return b"".join(
            (trace, _SPAN_ID, span_id.to_bytes(8, "big"), _PARENT_ID, parent_id.to_bytes(8, "big"))
        )
    return b"".join((trace, _SPAN_ID, span_id.to_bytes(8, "big")))


def request_spans(rec: tuple[Any, ...]) -> list[bytes]:
    """The encoded spans (``ScopeSpans.spans`` fields) of one kept request."""
    offset = rec[WALL_OFFSET]
    end = rec[END]
    trace = _IDS + rec[TRACE_ID].to_bytes(16, "big")
    server_id = rec[SPAN_ID]
    pack_times = _TIMES.pack
    out: list[bytes] = []
    for a in rec[ATTEMPTS]:
        head, shared = _client_block(rec, a)
        parts = [_ids(trace, a[A_SPAN_ID], server_id), head]
        parts.append(
            pack_times(
                0x39,
                int((offset + a[A_START]) * 1e9),
                0x41,
                int((offset + (a[A_END] or end)) * 1e9),
            )
        )
        parts.append(shared)
        if a[A_RESEND]:
            parts.append(_int("http.request.resend_count", a[A_RESEND]))
        code = a[A_STATUS]
        if code:
            parts.append(_int("http.response.status_code", code))
            if code >= 400:
                parts.append(attribute("error.type", str(code)))
                parts.append(status(f"HTTP {code}"))
        elif a[A_ERROR]:
            parts.append(attribute("error.type", a[A_ERROR]))
            parts.append(status(a[A_ERROR]))
        out.append(field(SPANS, b"".join(parts)))
    head, shared = _server_block(rec)
    code = rec[STATUS]
    parts = [
        _ids(trace, server_id, rec[PARENT_ID]),
        head,
        pack_times(0x39, int((offset + rec[START]) * 1e9), 0x41, int((offset + end) * 1e9)),
        shared,
        _cached_text(_paths, "url.path", rec[PATH]),
        _cached_text(_clients, "client.address", rec[CLIENT_IP]),
        _int("http.response.status_code", code),
        _int("http.request.body.size", rec[BYTES_IN]),
        _int("http.response.body.size", rec[BYTES_OUT]),
        _request_id(rec[REQUEST_ID]),
    ]
    agent = rec[USER_AGENT]
    if agent is not None:
        parts.append(_cached_text(_agents, "user_agent.original", agent))
    if code >= 500:
        parts.append(attribute("error.type", str(code)))
        parts.append(status(f"HTTP {code}"))
    out.append(field(SPANS, b"".join(parts)))
    return out
