"""Protobuf wire format, written by hand for the OTLP span messages.

Only what ``observe.spanencode`` needs: varints, length-delimited fields, the tags of
``opentelemetry.proto.trace.v1.Span`` and ``KeyValue`` attributes. Attributes whose
key and value repeat from request to request (almost all of them) are encoded once and
kept in a bounded cache. Checked byte for byte against opentelemetry-proto's own
serialisation in the tests.
"""

from __future__ import annotations

from struct import pack
from typing import Final

AttributeValue = str | int | float | bool


def varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64  # int64: two's complement, ten bytes
    if n < 0x80:
        return _SMALL[n]
    if n < 0x4000:  # two bytes: every span's and most messages' lengths
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL: Final = [bytes((i,)) for i in range(0x80)]


def field(tag: bytes, data: bytes) -> bytes:
    """A length-delimited field: ``tag`` (field number and wire type 2), length, data."""
    return tag + varint(len(data)) + data


# Span (opentelemetry/proto/trace/v1/trace.proto) field tags.
TRACE_ID: Final = b"\x0a\x10"  # 1, bytes, always 16 long
SPAN_ID: Final = b"\x12\x08"  # 2, bytes, 8
PARENT_ID: Final = b"\x22\x08"  # 4, bytes, 8
NAME: Final = b"\x2a"  # 5
KIND: Final = b"\x30"  # 6, varint
START: Final = b"\x39"  # 7, fixed64
END: Final = b"\x41"  # 8, fixed64
ATTRIBUTE: Final = b"\x4a"  # 9, KeyValue
STATUS: Final = b"\x7a"  # 15, Status {message = 2, code = 3}
STATUS_ERROR: Final = b"\x18\x02"
SPANS: Final = b"\x12"  # ScopeSpans.spans = 2

_keys: dict[str, bytes] = {}  # attribute key -> its encoded KeyValue.key field
_attributes: dict[tuple[str, AttributeValue, type], bytes] = {}  # most values repeat
_ATTRIBUTE_CACHE: Final = 4096


def attribute(key: str, value: AttributeValue) -> bytes:
    """One ``Span.attributes`` field, from the cache when the pair was seen recently."""
    # The type is part of the key: True == 1 would otherwise share an entry.
    ck = (key, value, value.__class__)
    done = _attributes.get(ck)
    if done is not None:
        return done
    if len(_attributes) >= _ATTRIBUTE_CACHE:
        _attributes.clear()  # paths and addresses churn it: start over, cheaply
    done = _attributes[ck] = encode_attribute(key, value)
    return done


def encode_attribute(key: str, value: AttributeValue) -> bytes:
    """One ``Span.attributes`` field, not cached (for values that never repeat)."""
    prefix = _keys.get(key)
    if prefix is None:
        prefix = _keys[key] = field(b"\x0a", key.encode())
    if isinstance(value, str):
        any_value = field(b"\x0a", value.encode())
    elif isinstance(value, bool):
        any_value = b"\x10\x01" if value else b"\x10\x00"
    elif isinstance(value, int):
        any_value = b"\x18" + varint(value)
    else:
        any_value = b"\x21" + pack("<d", value)
    return field(ATTRIBUTE, prefix + field(b"\x12", any_value))


def ids(trace_id: int, span_id: int, parent_id: int) -> bytes:
    out = TRACE_ID + trace_id.to_bytes(16, "big") + SPAN_ID + span_id.to_bytes(8, "big")
    if parent_id:
        out += PARENT_ID + parent_id.to_bytes(8, "big")
    return out


def times(start_ns: int, end_ns: int) -> bytes:
    return START + pack("<Q", start_ns) + END + pack("<Q", end_ns)


def name_kind(name: str, kind: int) -> bytes:
    return field(NAME, name.encode()) + KIND + varint(kind)


def status(error: str) -> bytes:
    """The ``Span.status`` field of an error span; b"" when ``error`` is empty (unset)."""
    return field(STATUS, field(b"\x12", error.encode()) + STATUS_ERROR) if error else b""


def span(head: bytes, attributes: bytes, error: str) -> bytes:
    """One ``ScopeSpans.spans`` field: ``head`` is ids + name/kind + times."""
    return field(SPANS, head + attributes + status(error))
