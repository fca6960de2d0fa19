"""A multiplexed TCP tunnel over one WebSocket (``turnout connect``, ``turnout port-forward``).

``protocol`` is the sans-IO wire protocol (frames, stream states, flow control);
``session`` drives it with asyncio and bridges local TCP/unix sockets. Either end may
listen locally and open streams; the other end dials a target of its choosing.
"""

from turnout.tunnel.protocol import (
    DEFAULT_MAX_STREAMS,
    INITIAL_WINDOW,
    MAX_DATA,
    MAX_META,
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
    TunnelError,
    TunnelProtocolError,
    WindowUpdated,
    decode_frame,
    encode_frame,
)
from turnout.tunnel.session import BridgeResult, Dial, Recv, Send, StreamInfo, TunnelSession

__all__ = [
    "DEFAULT_MAX_STREAMS",
    "INITIAL_WINDOW",
    "MAX_DATA",
    "MAX_META",
    "BridgeResult",
    "DataReceived",
    "Dial",
    "Event",
    "Frame",
    "FrameType",
    "Recv",
    "Send",
    "SessionClosed",
    "StreamAccepted",
    "StreamEnded",
    "StreamInfo",
    "StreamLimitError",
    "StreamOpened",
    "StreamReset",
    "StreamStateError",
    "TunnelConnection",
    "TunnelError",
    "TunnelProtocolError",
    "TunnelSession",
    "WindowUpdated",
    "decode_frame",
    "encode_frame",
]
