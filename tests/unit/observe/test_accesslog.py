"""JSON access log formatting: one valid JSON object per line, whatever the request held."""

from __future__ import annotations

import json
from typing import Any

import pytest

from turnout.observe.accesslog import DEFAULT_FIELDS, FIELDS, AccessLog, Record


class CollectingWriter:
    """Stands in for ``LogWriter`` (a thread writing to a file descriptor)."""

    def __init__(self) -> None:
        self.batches: list[tuple[bytes, int]] = []
        self.dropped = 0

    def write(self, data: bytes, lines: int) -> None:
        self.batches.append((data, lines))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def record(**overrides: Any) -> Record:
    fields: dict[str, Any] = {
        "wall": 1_700_000_000.25,
        "duration": 0.0123456,
        "method": b"GET",
        "target": b"/shop/items?page=2",
        "host": b"shop.example.com",
        "status": 200,
        "sent": 1234,
        "received": 56,
        "route": json.dumps("default/shop").encode(),
        "backend": json.dumps("default/orders").encode(),
        "endpoint": json.dumps("127.0.0.1:9000").encode(),
        "request_id": b"f81d4fae-7dec-41d0-a765-00a0c91e6bf6",
        "client": json.dumps("10.0.0.7").encode(),
        "user_agent": b"curl/8.5.0",
        "routing_key": b"",
        "consumer": None,
        "trace_id": 0x4BF92F3577B34DA6A3CE929D0E0E4736,
        "span_id": 0x00F067AA0BA902B7,
    }
    fields.update(overrides)
    return tuple(fields.values())


def log_lines(*records: Record, fields: tuple[str, ...] = DEFAULT_FIELDS) -> list[str]:
    writer = CollectingWriter()
    log = AccessLog(writer, fields)  # type: ignore[arg-type]
    for rec in records:
        log.record(rec)
    log.flush()
    assert len(writer.batches) == 1
    data, count = writer.batches[0]
    text = data.decode("ascii")
    assert text.endswith("\n")
    lines = text.splitlines()
    assert count == len(lines)
    return lines


def test_default_fields() -> None:
    (line,) = log_lines(record())

    assert json.loads(line) == {
        "time": "2023-11-14T22:13:20.250Z",
        "client": "10.0.0.7",
        "method": "GET",
        "host": "shop.example.com",
        "path": "/shop/items?page=2",
        "status": 200,
        "bytes_sent": 1234,
        "duration_ms": pytest.approx(12.346, abs=0.001),
        "route": "default/shop",
        "backend": "default/orders",
        "endpoint": "127.0.0.1:9000",
        "request_id": "f81d4fae-7dec-41d0-a765-00a0c91e6bf6",
        "routing_key": None,
        "consumer": None,
    }
    assert list(json.loads(line)) == list(DEFAULT_FIELDS)
    (keyed,) = log_lines(record(routing_key=b"feature-x", consumer="acme"))
    assert json.loads(keyed)["routing_key"] == "feature-x"
    assert json.loads(keyed)["consumer"] == "acme"


def test_every_field_can_be_chosen_in_any_order() -> None:
    fields = ("user_agent", "bytes_received", "status", "time")

    (line,) = log_lines(record(), fields=fields)

    doc = json.loads(line)
    assert list(doc) == list(fields)
    assert doc == {
        "user_agent": "curl/8.5.0",
        "bytes_received": 56,
        "status": 200,
        "time": "2023-11-14T22:13:20.250Z",
    }


def test_all_known_fields_render_valid_json() -> None:
    (line,) = log_lines(record(), fields=tuple(FIELDS))

    assert set(json.loads(line)) == set(FIELDS)


def test_unknown_fields_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown access log field\\(s\\): referer, ip"):
        AccessLog(CollectingWriter(), ("status", "referer", "ip"))  # type: ignore[arg-type]


def test_missing_values_are_null() -> None:
    (line,) = log_lines(
        record(route=b"null", backend=b"null", endpoint=b"null", user_agent=None),
        fields=("route", "backend", "endpoint", "user_agent", "status"),
    )

    assert json.loads(line) == {
        "route": None,
        "backend": None,
        "endpoint": None,
        "user_agent": None,
        "status": 200,
    }


@pytest.mark.parametrize(
    ("target", "decoded"),
    [
        (b'/say?q="hi"', '/say?q="hi"'),
        (b"/back\\slash", "/back\\slash"),
        (b"/ctl\x00\x01\x1f\x7f", "/ctl\x00\x01\x1f\x7f"),
        (b"/line\r\nbreak\tx", "/line\r\nbreak\tx"),
        (b"/caf\xc3\xa9/\xe2\x9c\x93", "/café/✓"),
        (b"/bad\xff\xfe", "/bad\\xff\\xfe"),  # non-UTF-8 bytes stay visible, escaped
        (b"/\xed\xa0\x80", "/\\xed\\xa0\\x80"),  # a UTF-8 encoded surrogate is not UTF-8
        (b"/\xe2\x80\xa8", "/\u2028"),  # LINE SEPARATOR
    ],
)
def test_paths_are_escaped_into_valid_json_lines(target: bytes, decoded: str) -> None:
    (line,) = log_lines(record(target=target, user_agent=target), fields=("path", "user_agent"))

    assert "\n" not in line and "\r" not in line
    assert line.isascii()
    assert json.loads(line) == {"path": decoded, "user_agent": decoded}


def test_one_line_per_record() -> None:
    lines = log_lines(record(status=200), record(status=404, target=b"/\n{}"), record(status=502))

    assert [json.loads(line)["status"] for line in lines] == [200, 404, 502]


def test_flush_without_records_writes_nothing() -> None:
    writer = CollectingWriter()
    log = AccessLog(writer)  # type: ignore[arg-type]

    log.flush()

    assert writer.batches == []


@pytest.mark.parametrize(
    ("wall", "expected"),
    [
        (0.0, "1970-01-01T00:00:00.000Z"),
        (86_399.5, "1970-01-01T23:59:59.500Z"),
        (1_700_000_000.999, "2023-11-14T22:13:20.999Z"),
    ],
)
def test_time_is_utc_with_milliseconds(wall: float, expected: str) -> None:
    lines = log_lines(record(wall=wall), record(wall=wall + 1), fields=("time",))

    assert json.loads(lines[0])["time"] == expected
    assert json.loads(lines[1])["time"][:19] != expected[:19]


def test_trace_ids_are_hex_and_null_when_not_traced() -> None:
    fields = ("trace_id", "span_id")
    traced, untraced = log_lines(record(), record(trace_id=0, span_id=0), fields=fields)
    assert json.loads(traced) == {
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "span_id": "00f067aa0ba902b7",
    }
    assert json.loads(untraced) == {"trace_id": None, "span_id": None}
