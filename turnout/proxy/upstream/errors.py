"""Upstream error types (kept apart: compiled modules cannot subclass builtin exceptions)."""

from __future__ import annotations


class ResolutionError(OSError):
    """A name that did not resolve (NXDOMAIN, SERVFAIL or timeout)."""
