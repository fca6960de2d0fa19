"""API keys: a key identifies a ``Consumer``.

Consumers store only the SHA-256 of each key. A request's key is hashed and looked up
by that hash, then compared with ``hmac.compare_digest``; a miss does the same work
against a dummy digest, so the failure path takes the same time whatever the key
shares with a real one (reliability.md b3: look up by a hash, compare in constant
time). Several keys per Consumer may be active at once (rotation); a key past its
``expiresAt`` is refused like an unknown one.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Final

from turnout.config.model.security import APIKeyAuthSpec, ConsumerObject
from turnout.proxy.filters.auth.extract import (
    cookie_credential,
    header_credential,
    take_query_credential,
)
from turnout.proxy.protocols.heads import RequestHead

MAX_KEY_BYTES: Final = 4096
_DUMMY: Final = hashlib.sha256(b"turnout: no such key").digest()
_NEVER: Final = float("inf")

HEADER: Final = 0
QUERY: Final = 1
COOKIE: Final = 2


def _epoch(stamp: str | None) -> float:
    if stamp is None:
        return _NEVER
    when = datetime.fromisoformat(stamp)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


class APIKeyTable:
    """``sha256(key) -> (digest, consumer, expiry)`` over the Consumers of a namespace."""

    __slots__ = ("_by_hash", "sources")

    def __init__(self, spec: APIKeyAuthSpec, consumers: Iterable[ConsumerObject]) -> None:
        by_hash: dict[bytes, tuple[bytes, str, float]] = {}
        for consumer in consumers:
            for key in consumer.spec.api_keys:
                digest = bytes.fromhex(key.sha256)
                by_hash.setdefault(digest, (digest, consumer.metadata.name, _epoch(key.expires_at)))
        self._by_hash = by_hash
        sources: list[tuple[int, bytes]] = []
        for src in spec.extract_from:
            if src.header is not None:
                sources.append((HEADER, src.header.lower().encode()))
            elif src.query is not None:
                sources.append((QUERY, src.query.encode()))
            elif src.cookie is not None:
                sources.append((COOKIE, src.cookie.encode()))
        self.sources = tuple(sources) or ((HEADER, b"x-api-key"),)

    def extract(self, head: RequestHead) -> bytes | None:
        """The first key the request carries (query keys are removed from the target)."""
        found: bytes | None = None
        for kind, name in self.sources:
            if kind == HEADER:
                value = header_credential(head, name)
            elif kind == QUERY:
                value = take_query_credential(head, name)
            else:
                value = cookie_credential(head, name)
            if value is not None and found is None:
                found = value
        return found

    def lookup(self, key: bytes, now: float) -> str | None:
        """The Consumer owning ``key`` (wall-clock ``now``), or None."""
        if len(key) > MAX_KEY_BYTES:
            key = b""
        digest = hashlib.sha256(key).digest()
        entry = self._by_hash.get(digest)
        if entry is None:
            hmac.compare_digest(digest, _DUMMY)  # the same work as a hit
            return None
        stored, consumer, expires = entry
        if not hmac.compare_digest(digest, stored) or now >= expires:
            return None
        return consumer
