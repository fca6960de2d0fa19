"""Recording event handlers for the sans-IO codecs: every callback becomes a list entry."""

from __future__ import annotations

from typing import Any

from turnout.proxy.protocols.heads import Headers, RequestHead, ResponseHead


class ServerRecorder:
    """Implements ``ServerEvents``; ``events`` holds ``(kind, payload...)`` tuples."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def request_received(self, head: RequestHead) -> None:
        self.events.append(("head", head))

    def request_body(self, data: bytes) -> None:
        self.events.append(("body", data))

    def request_complete(self, trailers: Headers | None) -> None:
        self.events.append(("end", trailers))

    def tunnel_data(self, data: bytes) -> None:
        self.events.append(("tunnel", data))

    def protocol_error(self, status: int, message: str) -> None:
        self.events.append(("error", status, message))

    # -- views ------------------------------------------------------------------------------

    @property
    def kinds(self) -> list[str]:
        return [e[0] for e in self.events]

    @property
    def heads(self) -> list[RequestHead]:
        return [e[1] for e in self.events if e[0] == "head"]

    @property
    def body(self) -> bytes:
        return b"".join(e[1] for e in self.events if e[0] == "body")

    @property
    def tunnel(self) -> bytes:
        return b"".join(e[1] for e in self.events if e[0] == "tunnel")

    @property
    def errors(self) -> list[tuple[int, str]]:
        return [(e[1], e[2]) for e in self.events if e[0] == "error"]

    def trailers(self) -> Headers | None:
        ends: list[Headers | None] = [e[1] for e in self.events if e[0] == "end"]
        assert len(ends) == 1, self.events
        return ends[0]


class ClientRecorder:
    """Implements ``ClientEvents``."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def response_informational(self, head: ResponseHead) -> None:
        self.events.append(("info", head))

    def response_head(self, head: ResponseHead) -> None:
        self.events.append(("head", head))

    def response_body(self, data: bytes) -> None:
        self.events.append(("body", data))

    def response_complete(self, trailers: Headers | None) -> None:
        self.events.append(("end", trailers))

    def tunnel_data(self, data: bytes) -> None:
        self.events.append(("tunnel", data))

    def protocol_error(self, message: str) -> None:
        self.events.append(("error", message))

    @property
    def kinds(self) -> list[str]:
        return [e[0] for e in self.events]

    @property
    def heads(self) -> list[ResponseHead]:
        return [e[1] for e in self.events if e[0] == "head"]

    @property
    def body(self) -> bytes:
        return b"".join(e[1] for e in self.events if e[0] == "body")

    @property
    def tunnel(self) -> bytes:
        return b"".join(e[1] for e in self.events if e[0] == "tunnel")
