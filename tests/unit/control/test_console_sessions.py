"""Console sessions on a fake clock: expiry, logout, CSRF comparison, the memory bound."""

from __future__ import annotations

import pytest

from turnout.control.auth import Principal, Role
from turnout.control.console import sessions
from turnout.control.console.sessions import SessionStore

VIEWER = Principal("id", "v", Role.VIEWER, ())


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_lives_until_its_ttl_and_not_a_moment_longer() -> None:
    clock = Clock()
    store = SessionStore(clock, ttl=60)
    s = store.open("tnt_x", VIEWER)
    clock.now += 59.9
    assert store.get(s.id) is s
    clock.now += 0.1
    assert store.get(s.id) is None
    assert len(store) == 0  # an expired session is forgotten, not kept


def test_logout_closes_and_unknown_ids_find_nothing() -> None:
    store = SessionStore(Clock())
    s = store.open("tnt_x", VIEWER)
    assert store.get(None) is None and store.get("") is None and store.get("nope") is None
    assert store.close(s.id) is s
    assert store.get(s.id) is None


def test_csrf_tokens_are_per_session_and_must_match_exactly() -> None:
    store = SessionStore(Clock())
    a, b = store.open("tnt_a", VIEWER), store.open("tnt_b", VIEWER)
    assert a.id != b.id and a.csrf != b.csrf and len(a.id) >= 40
    assert a.csrf_ok(a.csrf)
    assert not a.csrf_ok(b.csrf)
    assert not a.csrf_ok("")
    assert not a.csrf_ok(None)
    assert not a.csrf_ok(a.csrf[:-1])


def test_the_store_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sessions, "MAX_SESSIONS", 3)
    clock = Clock()
    store = SessionStore(clock, ttl=100)
    first = store.open("t", VIEWER)
    for _ in range(5):
        clock.now += 1
        store.open("t", VIEWER)
    assert len(store) == 3
    assert store.get(first.id) is None  # the oldest made room
