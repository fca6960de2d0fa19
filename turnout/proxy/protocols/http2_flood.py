"""Flood and abuse accounting for the HTTP/2 server codec (reliability.md b2).

``FloodGuard`` holds the few counters behind each rule in ``protocols/http2.py``'s
docstring and answers "is this connection past a limit?"; the codec then ends the
connection with GOAWAY(ENHANCE_YOUR_CALM). All the state is a few ints and a deque of
at most ``RESET_BURST_LIMIT + 1`` ints.
"""

from __future__ import annotations

from collections import deque
from typing import Final

# Rapid-reset rule: more than RESET_BURST_LIMIT counted resets among the last
# RESET_WINDOW streams opened (10 %; a browser or gRPC client cancels far fewer).
RESET_WINDOW: Final = 1000
RESET_BURST_LIMIT: Final = 100
# Control frames we queued while the client did not read (Envoy's default is 1000).
MAX_QUEUED_CONTROL_FRAMES: Final = 1000
# Consecutive DATA frames with neither payload nor END_STREAM: they carry nothing, so a
# client has no reason to send many (Envoy allows 1; 100 leaves room for odd clients).
MAX_EMPTY_DATA_FRAMES: Final = 100
# PRIORITY and unknown-type frames per stream opened (Envoy's priority-frame default;
# a browser sends one or two per stream, far below it).
JUNK_FRAMES_PER_STREAM: Final = 100


class FloodGuard:
    """The counters of one connection. Each ``*`` method returns True when the client
    just went past a limit (the connection must end)."""

    __slots__ = ("control_mark", "empty_data", "junk", "opened", "resets")

    def __init__(self) -> None:
        self.opened = 0  # streams opened by the client (accepted, rejected, refused)
        self.resets: deque[int] = deque()  # ordinals (in opened) of counted resets
        self.empty_data = 0
        self.junk = 0
        self.control_mark = 0  # control frames queued when the output last drained

    def reset_counted(self) -> bool:
        """A counted reset (see the codec's docstring): too many among the last streams?"""
        resets = self.resets
        opened = self.opened
        resets.append(opened)
        while resets[0] <= opened - RESET_WINDOW:
            resets.popleft()
        return len(resets) > RESET_BURST_LIMIT

    def empty_data_frame(self) -> bool:
        """A DATA frame with neither payload nor END_STREAM (one with payload sets
        ``empty_data`` back to 0)."""
        self.empty_data += 1
        return self.empty_data > MAX_EMPTY_DATA_FRAMES

    def junk_frame(self) -> bool:
        """A PRIORITY or unknown-type frame."""
        self.junk += 1
        return self.junk > JUNK_FRAMES_PER_STREAM * (self.opened + 1)

    def control_frames_exceeded(self, queued: int) -> bool:
        """``queued``: control frames queued since the connection began."""
        return queued - self.control_mark > MAX_QUEUED_CONTROL_FRAMES
