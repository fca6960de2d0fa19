"""Errors raised by the store, one class per way a caller must react.

The admin API maps them to HTTP status codes: ``StoreUnavailable`` → 503 (the database is
unreachable, timed out or dropped the connection; retrying later may work), ``Conflict``
→ 409, ``NotFound`` → 404 and ``Invalid`` → 422 (the validate callback of a commit
returned problems; nothing was written). Messages are one line, meant for people, and
never contain a password.
"""

from __future__ import annotations

from typing import Any


class StoreError(Exception):
    """Base class of every error the store raises on purpose."""


class StoreUnavailable(StoreError):
    """The database cannot be reached, timed out, or the connection was lost."""


class Conflict(StoreError):
    """The object exists already, or its resourceVersion is not the expected one."""


class NotFound(StoreError):
    """The object, revision or token does not exist."""


class Invalid(StoreError):
    """The validate callback of a commit returned problems; nothing was written."""

    def __init__(self, problems: list[Any], message: str | None = None) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        default = f"{count} problem{'s' if count != 1 else ''} found; nothing was stored"
        super().__init__(message or default)


def _asyncpg_unavailable_types() -> tuple[type[BaseException], ...]:
    try:
        import asyncpg
    except ImportError:  # pragma: no cover - asyncpg is a dependency
        return ()
    exc = asyncpg.exceptions
    return (
        exc.PostgresConnectionError,  # connection refused / lost / does not exist
        exc.InterfaceError,  # e.g. "connection is closed"
        exc.OperatorInterventionError,  # admin shutdown, pg_terminate_backend, cancel
        exc.InsufficientResourcesError,  # too many connections, disk full
        exc.InvalidAuthorizationSpecificationError,  # bad user or password
        exc.InvalidCatalogNameError,  # the database does not exist
        exc.CannotConnectNowError,
    )


def driver_errors() -> tuple[type[BaseException], ...]:
    """The exception types that come from the database layer (and only those)."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        import asyncpg
    except ImportError:  # pragma: no cover - asyncpg is a dependency
        return (SQLAlchemyError, OSError, TimeoutError)
    return (
        SQLAlchemyError,
        OSError,
        TimeoutError,
        asyncpg.exceptions.PostgresError,
        asyncpg.exceptions.InterfaceError,
    )


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means "the database cannot be used right now" (→ 503)."""
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, OSError | TimeoutError | sa_exc.TimeoutError):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
            return True
        if exc.orig is not None and exc.orig is not exc:
            return is_unavailable(exc.orig)
        return False
    orig = getattr(exc, "__cause__", None)
    if isinstance(exc, _asyncpg_unavailable_types()):
        return True
    return bool(orig is not None and orig is not exc and is_unavailable(orig))


def reason(exc: BaseException, secret: str | None = None) -> str:
    """A one-line description of a driver error, without SQL text or the password."""
    from sqlalchemy import exc as sa_exc

    inner: BaseException = exc
    if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None:
        inner = exc.orig
        # SQLAlchemy's asyncpg adapter wraps the asyncpg error once more.
        if inner.__cause__ is not None:
            inner = inner.__cause__
    if isinstance(inner, TimeoutError | sa_exc.TimeoutError):
        text = str(inner) or "timed out"
        text = text if "time" in text.lower() else f"timed out ({text})"
    else:
        text = str(inner).strip() or type(inner).__name__
    text = " ".join(text.split())
    if secret:
        text = text.replace(secret, "***")
    return text if len(text) <= 300 else text[:297] + "..."


def translate(exc: BaseException, where: str, secret: str | None = None) -> StoreError:
    """Map a driver or SQLAlchemy error to the store error a caller can act on."""
    if isinstance(exc, StoreError):
        return exc
    if is_unavailable(exc):
        return StoreUnavailable(f"cannot reach the store at {where}: {reason(exc, secret)}")
    return StoreError(f"store error at {where}: {reason(exc, secret)}")
