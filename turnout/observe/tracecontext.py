"""Trace context on the wire: W3C ``traceparent`` read and written, B3 read.

Ids are ints (a 128-bit trace id, 64-bit span ids) so that drawing one is a single
``getrandbits`` call and nothing is formatted unless a header or a record needs it.
``parse_traceparent`` follows W3C Trace Context level 1: version ``00`` is exactly
55 characters; a later version is read by its first four fields (the spec's forward
compatibility rule); version ``ff``, all-zero ids and non-hex digits are invalid, and an
invalid header counts as absent (the gateway then starts a new trace). B3 is accepted
in its single-header form (``b3: trace-span[-sampled[-parent]]``) and as ``X-B3-*``
headers; a 64-bit B3 trace id is widened to 128 bits with zeros on the left, as the
OpenTelemetry B3 propagator does.

The services' kit (``turnout.propagation``) passes ``traceparent`` through as a string;
it sits beside the data plane in the layering and works on ``str``, so the gateway has
this bytes-level reader of its own.
"""

from __future__ import annotations

from typing import Final

# (trace id, parent span id, sampled) of an incoming context; None when absent/invalid
Incoming = tuple[int, int, bool] | None

_HEX: Final = frozenset(b"0123456789abcdef")
_B3_TRUE: Final = frozenset({b"1", b"true", b"d"})


def _hex(value: bytes) -> int:
    """The value of lowercase hex digits, or -1 when ``value`` is not that."""
    if not value or not _HEX.issuperset(value):
        return -1
    return int(value, 16)


def parse_traceparent(value: bytes) -> Incoming:
    if len(value) < 55 or value[2:3] != b"-":
        return None
    version = _hex(value[0:2])
    if version < 0 or version == 0xFF:
        return None
    if version == 0 and len(value) != 55:
        return None
    if len(value) > 55 and value[55:56] != b"-":
        return None
    if value[35:36] != b"-" or value[52:53] != b"-":
        return None
    trace_id = _hex(value[3:35])
    span_id = _hex(value[36:52])
    flags = _hex(value[53:55])
    if trace_id <= 0 or span_id <= 0 or flags < 0:
        return None
    return trace_id, span_id, bool(flags & 1)


def format_traceparent(trace_id: int, span_id: int, sampled: bool) -> bytes:
    return b"00-%032x-%016x-%s" % (trace_id, span_id, b"01" if sampled else b"00")


def parse_b3_single(value: bytes) -> Incoming:
    """``b3: {trace}-{span}[-{sampled}[-{parent}]]``; a bare ``0``/``1``/``d`` carries a
    decision but no ids, which is read as absent (a new trace is started)."""
    parts = value.strip().lower().split(b"-")
    if len(parts) < 2:
        return None
    trace_id = _b3_trace(parts[0])
    span_id = _hex(parts[1]) if len(parts[1]) == 16 else -1
    if trace_id <= 0 or span_id <= 0:
        return None
    sampled = len(parts) < 3 or parts[2] in _B3_TRUE
    return trace_id, span_id, sampled


def parse_b3_multi(
    trace: bytes, span: bytes | None, sampled: bytes | None, flags: bytes | None
) -> Incoming:
    """``X-B3-TraceId`` / ``X-B3-SpanId`` / ``X-B3-Sampled`` / ``X-B3-Flags``."""
    trace_id = _b3_trace(trace.strip().lower())
    span_value = span.strip().lower() if span is not None else b""
    span_id = _hex(span_value) if len(span_value) == 16 else -1
    if trace_id <= 0 or span_id <= 0:
        return None
    if flags is not None and flags.strip() == b"1":
        return trace_id, span_id, True  # debug implies sampled
    keep = sampled is None or sampled.strip().lower() in _B3_TRUE
    return trace_id, span_id, keep


def _b3_trace(value: bytes) -> int:
    if len(value) not in (16, 32):
        return -1
    return _hex(value)
