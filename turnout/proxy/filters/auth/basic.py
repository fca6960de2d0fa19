"""HTTP Basic authentication against an htpasswd list of bcrypt hashes.

bcrypt is slow on purpose (about 250 ms at cost 12), so:

- a successful check is remembered for ``CACHE_SECONDS`` as ``sha256(user, hash,
  password)`` (never the password itself) in a bounded per-process table, so steady
  traffic from a client pays it once per five minutes;
- the check itself runs in the loop's default thread pool (``run_in_executor``; bcrypt
  releases the GIL), never on the event loop, and identical checks in flight share one
  computation;
- at most ``MAX_PENDING`` checks may wait at once per worker; beyond that requests are
  refused with 503 instead of queueing without bound.

An unknown user is checked against another user's hash, so the answer takes as long as
for a known user with a wrong password (user names do not leak through timing).
"""

from __future__ import annotations

import asyncio
import binascii
import hashlib
import time
from typing import Final

import bcrypt

from turnout.config.model.security import BasicAuthSpec
from turnout.config.security import parse_htpasswd
from turnout.proxy.protocols.heads import RequestHead

CACHE_SECONDS: Final = 300.0
CACHE_LIMIT: Final = 10_000
MAX_PENDING: Final = 256
MAX_PASSWORD_BYTES: Final = 72  # bcrypt's limit; longer passwords are refused
MALFORMED: Final = (b"", b"")

_verified: dict[bytes, float] = {}  # cache key -> monotonic expiry, oldest first
_inflight: dict[bytes, asyncio.Future[bool]] = {}


def _cache_key(user: bytes, stored: bytes, password: bytes) -> bytes:
    h = hashlib.sha256(user)
    h.update(b"\0")
    h.update(stored)
    h.update(b"\0")
    h.update(password)
    return h.digest()


def _remember(key: bytes, now: float) -> None:
    _verified.pop(key, None)
    _verified[key] = now + CACHE_SECONDS
    while len(_verified) > CACHE_LIMIT:
        del _verified[next(iter(_verified))]


def _checkpw(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:  # malformed hash or password bcrypt refuses
        return False


class BasicAuth:
    __slots__ = ("_decoy", "users")

    def __init__(self, spec: BasicAuthSpec) -> None:
        users, _ = parse_htpasswd(spec.users.inline)  # refused lines failed validation
        self.users = {u.encode(): h.encode() for u, h in users.items()}
        self._decoy = next(iter(self.users.values()), b"")

    @staticmethod
    def extract(head: RequestHead) -> tuple[bytes, bytes] | None:
        """``(user, password)`` from ``Authorization: Basic``; ``MALFORMED`` for a broken
        one; None when the request has no Basic credentials."""
        value = head.received.get(b"authorization")
        if not value:
            return None
        scheme, _, param = value.strip().partition(b" ")
        if scheme.lower() != b"basic":
            return None
        try:
            decoded = binascii.a2b_base64(param.strip(), strict_mode=True)
        except (binascii.Error, ValueError):
            return MALFORMED
        user, sep, password = decoded.partition(b":")
        if not sep or not user:
            return MALFORMED
        return user, password

    def cached(self, user: bytes, password: bytes) -> bool:
        stored = self.users.get(user)
        if stored is None:
            return False
        expiry = _verified.get(_cache_key(user, stored, password))
        return expiry is not None and expiry > time.monotonic()

    def busy(self) -> bool:
        return len(_inflight) >= MAX_PENDING

    async def verify(self, user: bytes, password: bytes) -> bool:
        """Check the password in the thread pool; remember a success."""
        stored = self.users.get(user)
        target = stored if stored is not None else self._decoy
        if not target or len(password) > MAX_PASSWORD_BYTES:
            return False
        key = _cache_key(user, target, password)
        pending = _inflight.get(key)
        if pending is None:
            loop = asyncio.get_running_loop()
            pending = loop.run_in_executor(None, _checkpw, password, target)
            _inflight[key] = pending
            pending.add_done_callback(lambda _: _inflight.pop(key, None))
        ok = await asyncio.shield(pending)
        if ok and stored is not None:
            _remember(key, time.monotonic())
            return True
        return False
