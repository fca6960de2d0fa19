"""Intrusion response: ban a client address after repeated failed authentications.

A ``SecurityPolicy`` with ``bruteForce: {maxFailures, window, banFor}`` (fail2ban's
``maxretry`` / ``findtime`` / ``bantime``) gets a ``BruteForceGuard`` beside its
``AuthFilter``. The ``SecurityFilter`` asks it first whether the client address is
banned (answered ``403 {"error": "banned"}`` with ``Retry-After``, before any credential
is checked, so a banned client cannot keep guessing), and tells it about every ``401``.

State lives in the host-wide rate-limit table (``ratelimit.local.LocalStore``, one slot
per policy and address, every worker mapping the same memory), so a ban holds in all
workers of the host at once and N workers do not multiply the allowed failures. The
slot's three words hold ``BanCounter``'s state: the start of the current failure window,
the failures counted in it and the end of the ban. A ban is logged once (policy, client
address, failures, duration; never a credential) and counted in
``turnout_auth_bans_total{policy}``. Like rate-limit counters, a slot can be evicted
when its group fills with newer keys (the oldest first), which lifts that ban early.

With ``byConsumer`` (Basic authentication only: the one method whose failed attempt
names an account) a second counter per user name runs beside the address's, in its own
slots: a user of the policy whose password is refused ``maxFailures`` times within the
window, from any addresses, is locked for ``banFor`` — every request presenting that
user's Basic credentials is refused before the password is checked. Only user names
the policy knows are counted (guessed names cannot fill the table). A lockout is logged
once (policy, user, failures, duration) and counted in
``turnout_auth_consumer_bans_total{policy}``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Final

from turnout.core.durations import parse_duration
from turnout.observe.stats import WorkerStats
from turnout.proxy.filters.auth.basic import BasicAuth
from turnout.proxy.filters.auth.chain import AuthFilter
from turnout.proxy.filters.auth.ipranges import ClientAddress
from turnout.proxy.filters.base import FilterContext, LocalReply
from turnout.proxy.ratelimit.algorithms import Decision, State
from turnout.proxy.ratelimit.local import LocalStore

log = logging.getLogger("turnout.security")

BANNED: Final = b"banned"


class BanCounter:
    """Failures per window and the ban they lead to, as a three-word state machine.

    ``cost`` 0 asks (allowed unless banned), ``cost`` 1 counts a failure; the failure
    that reaches ``max_failures`` starts a ban (``allowed`` False, ``retry_after`` the
    ban). State ``(window start, failures, banned until)``; all zero is "never seen".
    """

    def __init__(self, max_failures: int, window: float, ban_for: float) -> None:
        self.max_failures = max_failures
        self.window = window
        self.ban_for = ban_for

    def step(self, s: State, j: int, now: float, cost: int) -> Decision:
        limit = self.max_failures
        until = s[j + 2]
        if now < until:
            return Decision(False, limit, 0, until - now, until - now)
        if not cost:
            return Decision(True, limit, limit - int(s[j + 1]), 0.0, 0.0)
        if not s[j] or now - s[j] >= self.window:
            s[j] = now
            s[j + 1] = 0.0
        failures = s[j + 1] + 1.0
        if failures >= limit:
            s[j] = s[j + 1] = 0.0
            s[j + 2] = now + self.ban_for
            return Decision(False, limit, 0, self.ban_for, self.ban_for)
        s[j + 1] = failures
        return Decision(True, limit, limit - int(failures), 0.0, 0.0)


class BruteForceGuard:
    """One SecurityPolicy's bans, in the host-wide table."""

    def __init__(
        self,
        policy: str,
        max_failures: int,
        window: str,
        ban_for: str,
        store: LocalStore,
        stats: WorkerStats | None,
        clock: Callable[[], float] = time.monotonic,  # the table's clock, one per host
    ) -> None:
        self.policy = policy  # "namespace/name", for the log and the metric
        self.counter = BanCounter(max_failures, parse_duration(window), parse_duration(ban_for))
        self.store = store
        self.stats = stats
        self.clock = clock
        self.hasher = store.key_hasher("bruteForce:" + policy)
        self.users: frozenset[bytes] = frozenset()  # byConsumer: the users to lock
        self.address = ClientAddress()  # the policy's clientIPDetection (``detect_with``)
        self.user_hasher = store.key_hasher("bruteForceConsumer:" + policy)

    def follow(self, auth: AuthFilter, by_consumer: bool) -> BruteForceGuard:
        """Take the policy's client-address detection, and with ``by_consumer`` its
        Basic users to lock; returns the guard."""
        self.detect_with(auth.address)
        if by_consumer and auth.basic is not None:
            self.lock_users(frozenset(auth.basic.users))
        return self

    def detect_with(self, address: ClientAddress) -> None:
        """Count by the address ``clientIPDetection`` finds (X-Forwarded-For), as the
        policy's IP rules do, rather than by the socket's peer."""
        self.address = address

    def _client(self, ctx: FilterContext) -> bytes:
        if not self.address.hops:
            return ctx.client_ip
        ip = self.address.resolve(ctx.head, ctx.client_ip)
        return str(ip).encode() if ip is not None else ctx.client_ip

    def lock_users(self, users: frozenset[bytes]) -> None:
        """Count failures per user too (``byConsumer``), for these Basic user names."""
        self.users = users

    def _claimed(self, ctx: FilterContext) -> bytes | None:
        """The known Basic user a request presents, when users are locked."""
        if not self.users:
            return None
        creds = BasicAuth.extract(ctx.head)
        if creds is None or creds[0] not in self.users:
            return None
        return creds[0]

    def _user_key(self, user: bytes) -> int:
        h = self.user_hasher.copy()
        h.update(user)
        return int.from_bytes(h.digest(), "little") or 1

    def _key(self, client_ip: bytes) -> int:
        h = self.hasher.copy()
        h.update(client_ip)
        return int.from_bytes(h.digest(), "little") or 1

    def check(self, ctx: FilterContext) -> LocalReply | None:
        """A refusal while ``ctx``'s client address is banned."""
        now = self.clock()
        decision = self.store.decide(self._key(self._client(ctx)), self.counter, now, 0)
        if not decision.allowed:
            return _refusal(decision.retry_after)
        user = self._claimed(ctx)
        if user is None:
            return None
        decision = self.store.decide(self._user_key(user), self.counter, now, 0)
        if decision.allowed:
            return None
        return _refusal(decision.retry_after, USER_LOCKED)

    def failed(self, ctx: FilterContext) -> None:
        """Count one failed authentication; the one that reaches the limit bans."""
        now = self.clock()
        user = self._claimed(ctx)
        if user is not None:
            self._count_user(user, now)
        client = self._client(ctx)
        decision = self.store.decide(self._key(client), self.counter, now, 1)
        if decision.allowed:
            return
        if self.stats is not None:
            self.stats.event(self.policy, "ban")
        log.warning(
            "banned client %s for %gs after %d failed authentications (SecurityPolicy %s)",
            client.decode("ascii", "replace"),
            self.counter.ban_for,
            self.counter.max_failures,
            self.policy,
        )

    def _count_user(self, user: bytes, now: float) -> None:
        decision = self.store.decide(self._user_key(user), self.counter, now, 1)
        if decision.allowed:
            return
        if self.stats is not None:
            self.stats.event(self.policy, "consumer_ban")
        log.warning(
            "locked user %s for %gs after %d failed authentications (SecurityPolicy %s)",
            user.decode("utf-8", "replace"),
            self.counter.ban_for,
            self.counter.max_failures,
            self.policy,
        )


ADDRESS_BANNED: Final = b"too many failed authentications from this address; try again later"
USER_LOCKED: Final = b"too many failed authentications for this user; try again later"


def _refusal(retry_after: float, message: bytes = ADDRESS_BANNED) -> LocalReply:
    seconds = max(1, math.ceil(retry_after))
    return LocalReply(403, BANNED, message, [(b"retry-after", str(seconds).encode())])
