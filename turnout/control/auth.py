"""Admin tokens and roles.

A token is ``tnt_<id>_<secret>``: the 12-character id finds the stored record, the
32-character secret (190 bits from ``secrets``) is checked against its SHA-256 with
``hmac.compare_digest``. A fast hash is right here: the secret is random and long, so
there is nothing for a slow password hash to protect against, and every API call pays
for the check. Only the hash is stored; the secret is shown once, at creation.

Roles are cumulative: ``viewer`` reads, ``editor`` also writes objects and rolls back,
``admin`` also manages tokens and reads the audit log. A token may be scoped to
namespaces: it then sees and changes only objects in them, and may not touch
cluster-scoped objects or whole-config operations (revisions, rollback).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from typing import Final

TOKEN_PREFIX: Final = "tnt_"
_ALPHABET: Final = string.ascii_letters + string.digits
_TOKEN_RE: Final = re.compile(r"tnt_([A-Za-z0-9]{12})_([A-Za-z0-9]{32})")
ROLE_NAMES: Final = ("viewer", "editor", "admin")


class Role(IntEnum):
    VIEWER = 1
    EDITOR = 2
    ADMIN = 3

    @classmethod
    def parse(cls, name: str) -> Role:
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(f"unknown role {name!r}; roles: {', '.join(ROLE_NAMES)}") from None

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class NewToken:
    id: str
    secret: str
    secret_hash: str

    @property
    def token(self) -> str:
        return f"{TOKEN_PREFIX}{self.id}_{self.secret}"


def _random(n: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def new_token() -> NewToken:
    secret = _random(32)
    return NewToken(_random(12), secret, hash_secret(secret))


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_token(token: str) -> tuple[str, str] | None:
    """``(id, secret)`` of a well-formed token, else None."""
    m = _TOKEN_RE.fullmatch(token)
    return (m.group(1), m.group(2)) if m else None


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret).encode(), stored_hash.encode())


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a verified token's identity."""

    id: str
    name: str
    role: Role
    namespaces: tuple[str, ...]  # empty: every namespace
    via: str = "token"  # "system" for the control plane's own changes (TTL expiry)

    @property
    def actor(self) -> str:
        return f"{self.via}:{self.name}"

    @property
    def scoped(self) -> bool:
        return bool(self.namespaces)

    def may(self, role: Role) -> bool:
        return self.role >= role

    def sees_namespace(self, namespace: str) -> bool:
        # Cluster-scoped objects (namespace "") are readable by everyone with a role.
        return not self.namespaces or namespace == "" or namespace in self.namespaces

    def writes_namespace(self, namespace: str) -> bool:
        return not self.namespaces or (namespace != "" and namespace in self.namespaces)


def is_expired(expires_at: datetime | None, now: datetime) -> bool:
    if expires_at is None:
        return False
    if expires_at.tzinfo is None:  # SQLite returns naive datetimes for aware columns
        expires_at = expires_at.replace(tzinfo=UTC)
    return expires_at <= now
