"""gRPC helpers: deadlines, status mapping, trailer encoding."""

from __future__ import annotations

import pytest

from turnout.proxy.protocols.grpc import error_trailers, is_grpc, parse_timeout, status_for
from turnout.proxy.protocols.heads import RequestHead


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (b"1H", 3600.0),
        (b"2M", 120.0),
        (b"3S", 3.0),
        (b"250m", 0.25),
        (b"100u", 1e-4),
        (b"99999999n", 0.099999999),
        (b"", None),
        (b"S", None),
        (b"123456789S", None),  # at most 8 digits
        (b"-1S", None),
        (b"10x", None),
        (None, None),
    ],
)
def test_parse_timeout(value: bytes | None, seconds: float | None) -> None:
    got = parse_timeout(value)
    assert got == pytest.approx(seconds) if seconds is not None else got is None


def test_recognises_grpc_requests() -> None:
    assert is_grpc(RequestHead(b"POST", b"/a.B/C", b"", [(b"content-type", b"application/grpc")]))
    assert is_grpc(
        RequestHead(b"POST", b"/a.B/C", b"", [(b"content-type", b"application/grpc+proto")])
    )
    assert not is_grpc(RequestHead(b"GET", b"/", b"", [(b"content-type", b"application/json")]))


def test_status_mapping_and_message_encoding() -> None:
    assert status_for(404) == 12 and status_for(504) == 4 and status_for(503) == 14
    assert status_for(429) == 8 and status_for(401) == 16 and status_for(403) == 7
    assert status_for(418) == 2
    trailers = dict(error_trailers(503, b"no endpoint \xff 100%"))
    assert trailers[b"grpc-status"] == b"14"
    assert trailers[b"grpc-message"] == b"no endpoint %FF 100%25"
