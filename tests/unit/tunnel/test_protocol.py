"""The tunnel's sans-IO protocol: codec, stream states, flow control, protocol errors.

Two ``TunnelConnection``s are wired back to back (``exchange`` moves queued frames from
one to the other); a hostile peer is simulated by feeding hand-built frames.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from turnout.tunnel.protocol import (
    HEADER_SIZE,
    INITIAL_WINDOW,
    MAX_DATA,
    MAX_META,
    MAX_REASON,
    DataReceived,
    Event,
    Frame,
    FrameType,
    SessionClosed,
    StreamAccepted,
    StreamEnded,
    StreamLimitError,
    StreamOpened,
    StreamReset,
    StreamStateError,
    TunnelConnection,
    TunnelProtocolError,
    WindowUpdated,
    decode_frame,
    encode_frame,
)


def exchange(sender: TunnelConnection, receiver: TunnelConnection) -> list[Event]:
    """Deliver every frame ``sender`` queued to ``receiver``; return the events."""
    events: list[Event] = []
    for frame in sender.data_to_send():
        events.extend(receiver.receive_frame(frame))
    return events


def open_pair(
    meta: dict[str, Any] | None = None, **kw: int
) -> tuple[TunnelConnection, TunnelConnection, int]:
    """A client and a server with one accepted stream opened by the client."""
    client = TunnelConnection(client=True, **kw)
    server = TunnelConnection(client=False, **kw)
    sid = client.open_stream(meta)
    assert exchange(client, server) == [StreamOpened(sid, meta or {})]
    server.accept(sid)
    assert exchange(server, client) == [StreamAccepted(sid)]
    return client, server, sid


def frames(conn: TunnelConnection) -> list[Frame]:
    return [decode_frame(f) for f in conn.data_to_send()]


def assert_goaway(conn: TunnelConnection, data: bytes, match: str) -> None:
    """Feeding ``data`` is a protocol error: it raises and leaves a GOAWAY to send."""
    with pytest.raises(TunnelProtocolError, match=match):
        conn.receive_frame(data)
    assert conn.closed
    sent = frames(conn)
    assert sent[-1].type is FrameType.GOAWAY
    assert sent[-1].stream_id == 0
    assert b"protocol error" in sent[-1].payload
    assert conn.receive_frame(data) == []  # later input is ignored


# ----------------------------------------------------------------------------- codec


@pytest.mark.parametrize(
    ("frame_type", "stream_id", "payload"),
    [
        (FrameType.OPEN, 1, b""),
        (FrameType.OPEN, 3, b'{"peer":"127.0.0.1:5000"}'),
        (FrameType.OPEN_OK, 2, b""),
        (FrameType.DATA, 2**32 - 1, b"x" * MAX_DATA),
        (FrameType.DATA, 5, b""),
        (FrameType.WINDOW, 7, struct.pack("!I", 12345)),
        (FrameType.FIN, 9, b""),
        (FrameType.RST, 11, "nope – refused".encode()),
        (FrameType.GOAWAY, 0, b"bye"),
    ],
)
def test_codec_round_trip(frame_type: FrameType, stream_id: int, payload: bytes) -> None:
    wire = encode_frame(frame_type, stream_id, payload)
    assert wire[0] == frame_type
    assert wire[1:HEADER_SIZE] == stream_id.to_bytes(4, "big")
    assert decode_frame(wire) == Frame(frame_type, stream_id, payload)
    assert decode_frame(bytearray(wire)) == decode_frame(memoryview(wire))


@pytest.mark.parametrize(
    ("wire", "match"),
    [
        (b"", "truncated"),
        (b"\x02\x00\x00\x01", "truncated"),
        (b"\x07\x00\x00\x00\x01", "unknown frame type 7"),
        (b"\xff\x00\x00\x00\x01", "unknown frame type 255"),
        (encode_frame(FrameType.DATA, 1, b"x" * (MAX_DATA + 1)), "DATA payload"),
        (encode_frame(FrameType.OPEN, 1, b" " * (MAX_META + 1)), "OPEN payload"),
        (encode_frame(FrameType.WINDOW, 1, b"\x00\x01"), "WINDOW payload"),
        (encode_frame(FrameType.FIN, 1, b"x"), "FIN payload"),
        (encode_frame(FrameType.OPEN_OK, 1, b"x"), "OPEN_OK payload"),
        (encode_frame(FrameType.RST, 1, b"x" * (MAX_REASON + 1)), "RST payload"),
        (encode_frame(FrameType.GOAWAY, 1, b""), "GOAWAY on stream 1"),
        (encode_frame(FrameType.DATA, 0, b"x"), "DATA on stream 0"),
    ],
)
def test_codec_rejects(wire: bytes, match: str) -> None:
    with pytest.raises(TunnelProtocolError, match=match):
        decode_frame(wire)


# ----------------------------------------------------------------------------- streams


def test_stream_ids_have_parity_and_increase() -> None:
    client = TunnelConnection(client=True)
    server = TunnelConnection(client=False)
    assert [client.open_stream() for _ in range(3)] == [1, 3, 5]
    assert [server.open_stream() for _ in range(3)] == [2, 4, 6]
    # Both sides open at once without colliding.
    assert exchange(client, server) == [StreamOpened(i, {}) for i in (1, 3, 5)]
    assert exchange(server, client) == [StreamOpened(i, {}) for i in (2, 4, 6)]
    assert client.open_streams == server.open_streams == 6


def test_full_stream_life_with_metadata_and_half_close() -> None:
    meta = {"peer": "127.0.0.1:41000", "backend": "orders"}
    client, server, sid = open_pair(meta)
    assert client.send_data(sid, b"hello") == 5
    assert exchange(client, server) == [DataReceived(sid, b"hello")]
    client.end_stream(sid)
    assert exchange(client, server) == [StreamEnded(sid)]
    with pytest.raises(StreamStateError):
        client.send_data(sid, b"more")  # half-closed in this direction
    # The other direction still flows after the client's FIN.
    assert server.send_data(sid, b"reply") == 5
    server.end_stream(sid)
    assert exchange(server, client) == [DataReceived(sid, b"reply"), StreamEnded(sid)]
    assert client.open_streams == server.open_streams == 0
    # A WINDOW crossing the final FIN is stale, not an error.
    assert client.receive_frame(encode_frame(FrameType.WINDOW, sid, struct.pack("!I", 9))) == []


def test_data_before_accept_is_refused_locally() -> None:
    client = TunnelConnection(client=True)
    sid = client.open_stream()
    with pytest.raises(StreamStateError):
        client.send_data(sid, b"x")
    with pytest.raises(StreamStateError):
        client.end_stream(sid)
    assert client.send_window(sid) == 0


def test_reset_both_ways_and_stale_frames_ignored() -> None:
    client, server, sid = open_pair()
    server.reset_stream(sid, "dial failed: ConnectionRefusedError")
    assert exchange(server, client) == [StreamReset(sid, "dial failed: ConnectionRefusedError")]
    assert not client.is_live(sid) and not server.is_live(sid)
    # Data the client sent before it saw the RST arrives for a closed stream: ignored.
    assert server.receive_frame(encode_frame(FrameType.DATA, sid, b"late")) == []
    server.reset_stream(sid, "again")  # a no-op on a gone stream
    assert server.data_to_send() == []
    with pytest.raises(StreamStateError):
        client.send_data(sid, b"x")


def test_refusing_a_stream_before_accepting() -> None:
    client = TunnelConnection(client=True)
    server = TunnelConnection(client=False)
    sid = client.open_stream()
    exchange(client, server)
    server.reset_stream(sid, "x" * 1000 + "é")  # truncated to the limit, on a char boundary
    [event] = exchange(server, client)
    assert isinstance(event, StreamReset)
    assert event.reason == "x" * MAX_REASON


def test_reason_truncation_keeps_utf8_valid() -> None:
    client = TunnelConnection(client=True)
    server = TunnelConnection(client=False)
    sid = client.open_stream()
    exchange(client, server)
    server.reset_stream(sid, "é" * 200)  # 400 bytes of 2-byte characters
    [event] = exchange(server, client)
    assert isinstance(event, StreamReset)
    assert event.reason == "é" * (MAX_REASON // 2)


def test_metadata_too_large_is_a_local_error() -> None:
    client = TunnelConnection(client=True)
    with pytest.raises(ValueError, match="metadata"):
        client.open_stream({"x": "y" * MAX_META})
    assert client.open_streams == 0
    assert client.open_stream() == 1  # the id was not burnt


def test_local_stream_limit() -> None:
    client = TunnelConnection(client=True, max_streams=2)
    client.open_stream()
    client.open_stream()
    with pytest.raises(StreamLimitError):
        client.open_stream()
    client.reset_stream(1)
    assert client.open_stream() == 5


def test_goaway_resets_every_stream() -> None:
    client, server, sid = open_pair()
    sid2 = client.open_stream()
    exchange(client, server)
    server.close("shutting down")
    events = exchange(server, client)
    assert events == [
        StreamReset(sid, "session closed: shutting down"),
        StreamReset(sid2, "session closed: shutting down"),
        SessionClosed("shutting down"),
    ]
    assert client.closed and server.closed
    assert client.close_reason == "peer sent GOAWAY: shutting down"
    with pytest.raises(StreamStateError):
        client.open_stream()
    server.close("twice")  # idempotent
    assert server.data_to_send() == []


def test_goaway_supersedes_queued_frames() -> None:
    client, _server, sid = open_pair()
    client.send_data(sid, b"never sent")
    client.close("bye")
    assert frames(client) == [Frame(FrameType.GOAWAY, 0, b"bye")]


# ----------------------------------------------------------------------------- flow control


def test_send_window_limits_what_is_taken() -> None:
    client, _server, sid = open_pair()
    assert client.send_window(sid) == INITIAL_WINDOW
    big = bytes(INITIAL_WINDOW + 1000)
    assert client.send_data(sid, big) == INITIAL_WINDOW
    assert client.send_window(sid) == 0
    assert client.send_data(sid, b"more") == 0
    sent = frames(client)
    assert all(f.type is FrameType.DATA and len(f.payload) <= MAX_DATA for f in sent)
    assert sum(len(f.payload) for f in sent) == INITIAL_WINDOW
    assert len(sent) == INITIAL_WINDOW // MAX_DATA


def test_credit_is_granted_only_on_acknowledge_and_batched() -> None:
    client, server, sid = open_pair(initial_window=1000)
    assert client.send_data(sid, bytes(1000)) == 1000
    events = exchange(client, server)
    assert sum(len(e.data) for e in events if isinstance(e, DataReceived)) == 1000
    assert server.unacknowledged(sid) == 1000
    assert server.receive_window(sid) == 0
    assert server.data_to_send() == []  # arrival alone grants nothing
    server.acknowledge(sid, 100)  # below the quarter-window threshold: held back
    assert server.data_to_send() == []
    server.acknowledge(sid, 150)  # 250 drained: one WINDOW for all of it
    [window] = frames(server)
    assert window == Frame(FrameType.WINDOW, sid, struct.pack("!I", 250))
    assert client.receive_frame(encode_frame(window.type, sid, window.payload)) == [
        WindowUpdated(sid)
    ]
    assert client.send_window(sid) == 250
    assert server.receive_window(sid) == 250
    assert server.unacknowledged(sid) == 750
    with pytest.raises(ValueError):
        server.acknowledge(sid, 751)  # more than was received


def test_blocked_sender_always_gets_credit_back() -> None:
    """Batching never strands a sender: draining what arrived always frees the window."""
    client, server, sid = open_pair(initial_window=1000)
    remaining = 20_000
    for _ in range(200):
        if not remaining:
            break
        remaining -= client.send_data(sid, bytes(min(remaining, 333)))
        for event in exchange(client, server):
            if isinstance(event, DataReceived):
                server.acknowledge(sid, len(event.data))
        exchange(server, client)
    assert remaining == 0
    assert client.send_window(sid) + server.unacknowledged(sid) <= 1000


def test_no_credit_after_peer_fin() -> None:
    client, server, sid = open_pair(initial_window=1000)
    client.send_data(sid, bytes(1000))
    client.end_stream(sid)
    exchange(client, server)
    server.acknowledge(sid, 1000)
    assert server.data_to_send() == []  # the client sends nothing more: no WINDOW


# ----------------------------------------------------------------------------- protocol errors


def test_oversized_data_is_a_protocol_error() -> None:
    _client, server, sid = open_pair()
    assert_goaway(server, encode_frame(FrameType.DATA, sid, bytes(MAX_DATA + 1)), "DATA payload")


def test_data_beyond_window_is_a_protocol_error() -> None:
    _client, server, sid = open_pair(initial_window=100)
    server.receive_frame(encode_frame(FrameType.DATA, sid, bytes(60)))
    assert_goaway(server, encode_frame(FrameType.DATA, sid, bytes(41)), "beyond its window")


def test_unknown_stream_is_a_protocol_error() -> None:
    _client, server, sid = open_pair()
    assert_goaway(server, encode_frame(FrameType.DATA, sid + 2, b"x"), "unknown stream")


def test_unknown_own_parity_stream_is_a_protocol_error() -> None:
    client, _server, _sid = open_pair()
    # The server never opened stream 2, so the client cannot talk about it.
    assert_goaway(client, encode_frame(FrameType.WINDOW, 2, b"\0\0\0\1"), "unknown stream")


def test_wrong_parity_open_is_a_protocol_error() -> None:
    server = TunnelConnection(client=False)
    assert_goaway(server, encode_frame(FrameType.OPEN, 2, b""), "parity")
    client = TunnelConnection(client=True)
    assert_goaway(client, encode_frame(FrameType.OPEN, 1, b""), "parity")


def test_reused_stream_id_is_a_protocol_error() -> None:
    server = TunnelConnection(client=False)
    server.receive_frame(encode_frame(FrameType.OPEN, 5, b""))
    assert_goaway(server, encode_frame(FrameType.OPEN, 3, b""), "reused")


def test_too_many_streams_is_a_protocol_error() -> None:
    server = TunnelConnection(client=False, max_streams=3)
    for sid in (1, 3, 5):
        server.receive_frame(encode_frame(FrameType.OPEN, sid, b""))
    server.reset_stream(3)  # closing one frees a slot
    server.receive_frame(encode_frame(FrameType.OPEN, 7, b""))
    assert_goaway(server, encode_frame(FrameType.OPEN, 9, b""), "concurrent streams")


def test_default_stream_limit_is_256() -> None:
    server = TunnelConnection(client=False)
    for i in range(256):
        server.receive_frame(encode_frame(FrameType.OPEN, 2 * i + 1, b""))
    assert_goaway(server, encode_frame(FrameType.OPEN, 513, b""), "256 concurrent")


def test_truncated_frame_is_a_protocol_error() -> None:
    assert_goaway(TunnelConnection(client=False), b"\x00\x00\x00", "truncated")


def test_unknown_type_is_a_protocol_error() -> None:
    assert_goaway(TunnelConnection(client=False), b"\x09\x00\x00\x00\x01", "unknown frame type")


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b"\xff\xfe", "not JSON"),
        (b"{nope", "not JSON"),
        (b"[1, 2]", "not an object"),
        (b"[" * 4000 + b"]" * 10, "not JSON"),  # nesting deep enough to hit recursion
    ],
)
def test_bad_open_metadata_is_a_protocol_error(payload: bytes, match: str) -> None:
    assert_goaway(TunnelConnection(client=False), encode_frame(FrameType.OPEN, 1, payload), match)


def test_data_before_open_ok_is_a_protocol_error() -> None:
    server = TunnelConnection(client=False)
    server.receive_frame(encode_frame(FrameType.OPEN, 1, b""))
    assert_goaway(server, encode_frame(FrameType.DATA, 1, b"x"), "cannot receive data")


def test_data_after_fin_is_a_protocol_error() -> None:
    _client, server, sid = open_pair()
    server.receive_frame(encode_frame(FrameType.FIN, sid))
    assert_goaway(server, encode_frame(FrameType.DATA, sid, b"x"), "cannot receive data")


def test_unexpected_open_ok_is_a_protocol_error() -> None:
    client, _server, sid = open_pair()
    assert_goaway(client, encode_frame(FrameType.OPEN_OK, sid), "not opening")


@pytest.mark.parametrize(
    ("increment", "match"), [(0, "WINDOW of 0"), (2**31 - INITIAL_WINDOW, "overflows")]
)
def test_bad_window_is_a_protocol_error(increment: int, match: str) -> None:
    client, _server, sid = open_pair()
    assert_goaway(client, encode_frame(FrameType.WINDOW, sid, struct.pack("!I", increment)), match)


def test_protocol_error_forgets_streams_and_names_the_cause() -> None:
    client, server, sid = open_pair()
    with pytest.raises(TunnelProtocolError):
        server.receive_frame(b"\x42")
    assert server.open_streams == 0
    goaway = frames(server)[-1]
    # The peer learns why, and reacts by resetting everything.
    events = client.receive_frame(encode_frame(goaway.type, 0, goaway.payload))
    assert isinstance(events[-1], SessionClosed)
    assert "truncated" in events[-1].reason
    assert events[0] == StreamReset(sid, f"session closed: {events[-1].reason}")


# ----------------------------------------------------------------------------- fuzzing


@settings(max_examples=500, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=20), st.booleans())
def test_fuzz_random_bytes(messages: list[bytes], client: bool) -> None:
    conn = TunnelConnection(client=client, max_streams=4, initial_window=64)
    for message in messages:
        try:
            events = conn.receive_frame(message)
        except TunnelProtocolError:
            assert conn.closed
            continue
        assert isinstance(events, list)


_frame_strategy = st.builds(
    lambda t, sid, payload: bytes([t]) + sid.to_bytes(4, "big") + payload,
    st.integers(0, 7),
    st.integers(0, 12),
    st.one_of(
        st.just(b""),
        st.binary(max_size=80),
        st.integers(0, 2**32 - 1).map(lambda n: n.to_bytes(4, "big")),
        st.dictionaries(st.text(max_size=5), st.integers()).map(lambda d: json.dumps(d).encode()),
    ),
)


@settings(max_examples=1000, deadline=None)
@given(st.lists(_frame_strategy, max_size=30), st.booleans())
def test_fuzz_plausible_frames_with_local_activity(messages: list[bytes], client: bool) -> None:
    """Well-formed headers with random payloads reach deep into the state machine; the
    local side reacts the way the session would (accept, send, acknowledge, end)."""
    conn = TunnelConnection(client=client, max_streams=4, initial_window=64)
    for _ in range(2):
        conn.open_stream({"n": 1})
    for message in messages:
        try:
            events = conn.receive_frame(message)
        except TunnelProtocolError:
            assert conn.closed
            assert decode_frame(conn.data_to_send()[-1]).type is FrameType.GOAWAY
            continue
        for event in events:
            if isinstance(event, StreamOpened):
                conn.accept(event.stream_id)
                conn.send_data(event.stream_id, b"hello")
            elif isinstance(event, DataReceived):
                conn.acknowledge(event.stream_id, len(event.data))
            elif isinstance(event, StreamEnded) and conn.send_window(event.stream_id):
                conn.end_stream(event.stream_id)
        for frame in conn.data_to_send():
            decode_frame(frame)  # everything this side emits is well-formed
