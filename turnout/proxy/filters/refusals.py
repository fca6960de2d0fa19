"""``BodyRefused`` (kept apart: compiled modules cannot subclass builtin exceptions)."""

from __future__ import annotations


class BodyRefused(Exception):
    """Raised by a request ``BodyTransform`` (decompression) to refuse the body: the
    exchange answers ``status`` with the JSON error ``code``/``message`` (or aborts)."""

    def __init__(self, status: int, code: bytes, message: bytes) -> None:
        super().__init__(message.decode("latin-1"))
        self.status = status
        self.code = code
        self.message = message
