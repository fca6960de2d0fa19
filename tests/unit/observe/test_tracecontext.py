"""Reading trace context: W3C ``traceparent`` (valid, invalid, future versions) and B3."""

from __future__ import annotations

import pytest

from turnout.observe.tracecontext import (
    format_traceparent,
    parse_b3_multi,
    parse_b3_single,
    parse_traceparent,
)
from turnout.observe.tracing import incoming_context

TRACE = 0x4BF92F3577B34DA6A3CE929D0E0E4736
SPAN = 0x00F067AA0BA902B7
VALID = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_valid_traceparent_is_read() -> None:
    assert parse_traceparent(VALID) == (TRACE, SPAN, True)
    assert parse_traceparent(VALID[:-2] + b"00") == (TRACE, SPAN, False)
    assert parse_traceparent(VALID[:-2] + b"03") == (TRACE, SPAN, True)  # other flag bits


def test_a_later_version_is_read_by_its_first_fields() -> None:
    assert parse_traceparent(b"cc" + VALID[2:] + b"-what-the-future-adds") == (TRACE, SPAN, True)


@pytest.mark.parametrize(
    "value",
    [
        b"",
        VALID + b"-extra",  # version 00 has exactly four fields
        b"ff" + VALID[2:],  # forbidden version
        VALID.replace(b"4bf92f3577b34da6a3ce929d0e0e4736", b"0" * 32),  # all-zero trace
        VALID.replace(b"00f067aa0ba902b7", b"0" * 16),  # all-zero span
        VALID.upper(),  # hex must be lowercase
        VALID.replace(b"-", b"_"),
        VALID[:-1],
        b"00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
    ],
)
def test_an_invalid_traceparent_counts_as_absent(value: bytes) -> None:
    assert parse_traceparent(value) is None


def test_traceparent_is_written_with_zero_padding() -> None:
    assert format_traceparent(TRACE, SPAN, True) == VALID
    assert format_traceparent(1, 2, False) == b"00-" + b"0" * 31 + b"1-" + b"0" * 15 + b"2-00"


def test_b3_single_header() -> None:
    value = b"4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"
    assert parse_b3_single(value) == (TRACE, SPAN, True)
    assert parse_b3_single(value + b"-0") == (TRACE, SPAN, False)
    assert parse_b3_single(value + b"-d-0000000000000001") == (TRACE, SPAN, True)
    assert parse_b3_single(b"a3ce929d0e0e4736-00f067aa0ba902b7-1") == (
        0xA3CE929D0E0E4736,
        SPAN,
        True,
    )
    assert parse_b3_single(b"0") is None  # a decision without ids
    assert parse_b3_single(b"xyz-00f067aa0ba902b7") is None


def test_b3_multi_headers() -> None:
    trace = b"4bf92f3577b34da6a3ce929d0e0e4736"
    span = b"00f067aa0ba902b7"
    assert parse_b3_multi(trace, span, b"1", None) == (TRACE, SPAN, True)
    assert parse_b3_multi(trace, span, b"0", None) == (TRACE, SPAN, False)
    assert parse_b3_multi(trace, span, b"0", b"1") == (TRACE, SPAN, True)  # debug
    assert parse_b3_multi(trace, None, b"1", None) is None


def test_traceparent_wins_over_b3_and_a_bad_one_falls_back() -> None:
    b3 = b"a3ce929d0e0e4736-00f067aa0ba902b7-1"
    assert incoming_context({b"traceparent": VALID, b"b3": b3}) == (TRACE, SPAN, True)
    assert incoming_context({b"traceparent": b"junk", b"b3": b3}) == (
        0xA3CE929D0E0E4736,
        SPAN,
        True,
    )
    assert incoming_context({b"host": b"x"}) is None
