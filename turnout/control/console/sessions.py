"""Console sessions: a login exchanges an admin token for an opaque session id.

The browser holds only a random id in an HttpOnly, SameSite=Strict cookie; the token
stays in this process's memory, so a script in the page can never read it and another
site can never send it. Each session has a CSRF token that every write must echo (a
form field or the ``X-CSRF-Token`` header), compared in constant time. Sessions expire
``ttl`` seconds after login (and on logout); they live in one replica's memory, so a
restart or another replica asks for the token again.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from turnout.control.auth import Principal

DEFAULT_TTL = 8 * 3600.0
MAX_SESSIONS = 10_000  # bounds memory if someone logs in in a loop


@dataclass(slots=True)
class Session:
    id: str
    token: str
    csrf: str
    principal: Principal
    expires: float

    def csrf_ok(self, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(self.csrf.encode(), (given or "").encode())


class SessionStore:
    def __init__(
        self, clock: Callable[[], float] = time.monotonic, ttl: float = DEFAULT_TTL
    ) -> None:
        self.clock = clock
        self.ttl = ttl
        self._sessions: dict[str, Session] = {}

    def open(self, token: str, principal: Principal) -> Session:
        now = self.clock()
        if len(self._sessions) >= MAX_SESSIONS:
            self._sweep(now)
            if len(self._sessions) >= MAX_SESSIONS:  # all alive: drop the oldest
                del self._sessions[min(self._sessions.values(), key=lambda s: s.expires).id]
        session = Session(
            secrets.token_urlsafe(32), token, secrets.token_urlsafe(32), principal, now + self.ttl
        )
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is not None and session.expires <= self.clock():
            del self._sessions[session_id]
            return None
        return session

    def close(self, session_id: str | None) -> Session | None:
        return self._sessions.pop(session_id or "", None)

    def _sweep(self, now: float) -> None:
        for sid in [s.id for s in self._sessions.values() if s.expires <= now]:
            del self._sessions[sid]

    def __len__(self) -> int:
        return len(self._sessions)
