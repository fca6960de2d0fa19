"""Header-name sets live in turnout/core/headers.py and nowhere else.

The sets decide what is forwarded, dropped and protected, which is where request smuggling
hides; these tests pin what each one holds, check the codecs use the very same objects,
and fail when a literal list of hop-by-hop names appears in another module.
"""

from __future__ import annotations

import ast
from pathlib import Path

from turnout.config import security
from turnout.config.validate import routes as route_checks
from turnout.core import headers as h
from turnout.proxy.protocols import http1

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "turnout"
HEADERS_FILE = PACKAGE / "core" / "headers.py"
# Names that mark a list as "hop-by-hop headers" (RFC 9110 §7.6.1 and the proxy fields).
HOP_NAMES = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
        "http2-settings",
    }
)


def hop_listings(source: str) -> list[tuple[int, list[str]]]:
    """Set/tuple/list/dict literals holding three or more hop-by-hop names (str or bytes)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Set | ast.Tuple | ast.List | ast.Dict):
            continue
        held = set()
        for sub in ast.walk(node):
            if isinstance(sub, ast.Constant) and isinstance(sub.value, str | bytes):
                text = sub.value.decode("latin-1") if isinstance(sub.value, bytes) else sub.value
                if text.lower() in HOP_NAMES:
                    held.add(text.lower())
        if len(held) >= 3:
            found.append((node.lineno, sorted(held)))
    return found


def test_no_module_lists_hop_by_hop_headers_on_its_own() -> None:
    offenders = [
        f"{file.relative_to(ROOT)}:{line}: lists {', '.join(held)}"
        for file in sorted(PACKAGE.rglob("*.py"))
        if file != HEADERS_FILE
        for line, held in hop_listings(file.read_text())
    ]
    assert offenders == [], (
        "header sets live in turnout/core/headers.py (each citing its RFC); import one, or "
        "add a named set there:\n" + "\n".join(offenders)
    )


def test_the_scan_sees_a_listing() -> None:
    source = 'A = frozenset({b"Connection", b"te", b"upgrade"})\nB = ("te", "trailer")\n'
    assert hop_listings(source) == [(1, ["connection", "te", "upgrade"])]


def test_the_codecs_and_checks_use_these_sets() -> None:
    # (the upstream clients and the HTTP/2 codec, being rewritten elsewhere, are held to
    # this module by the literal scan above rather than by their constants' names)
    assert http1.HOP_BY_HOP is h.REQUEST_CONSUMED
    assert http1.GATEWAY_SET is h.GATEWAY_SET
    assert http1.SPECIAL is h.REQUEST_REPLACED
    assert http1.PROTECTED is h.PROTECTED_FROM_CONNECTION
    assert http1.FORBIDDEN_TRAILERS is h.FORBIDDEN_TRAILERS
    assert http1.FORBIDDEN_TRAILER_PREFIX is h.FORBIDDEN_TRAILER_PREFIX
    assert http1.CONNECTION_OPTIONS is h.CONNECTION_OPTIONS
    assert route_checks.FILTER_FORBIDDEN_STR is h.FILTER_FORBIDDEN_STR
    assert security.IDENTITY_RESERVED_STR is h.IDENTITY_RESERVED_STR


def test_every_set_is_a_frozenset_of_lower_case_names() -> None:
    for name in dir(h):
        value = getattr(h, name)
        if name.isupper() and isinstance(value, frozenset):
            assert all(n == n.lower() for n in value), name
    assert all(isinstance(n, bytes) for n in h.REQUEST_REPLACED)
    assert all(isinstance(n, str) for n in h.IDENTITY_RESERVED_STR)


def test_the_sets_hold_what_they_held() -> None:
    """Pinned: a change here changes what the gateway forwards (review it as such)."""
    hop = {b"connection", b"keep-alive", b"proxy-connection", b"te", b"transfer-encoding"}
    assert hop | {b"upgrade"} == h.HOP_BY_HOP
    assert h.H2_CONNECTION_SPECIFIC == h.HOP_BY_HOP
    assert h.HOP_BY_HOP - {b"te"} | {b"host"} == h.H2_REQUEST_DROPPED
    assert {
        b"trailer",
        b"content-length",
        b"host",
        b"expect",
        b"proxy-authorization",
        b"http2-settings",
    } == h.REQUEST_CONSUMED - h.HOP_BY_HOP
    assert {
        b"content-length",
        b"trailer",
        b"proxy-authenticate",
    } == h.RESPONSE_CONSUMED - h.HOP_BY_HOP
    assert h.REQUEST_REPLACED == h.REQUEST_CONSUMED | h.GATEWAY_SET
    assert {
        b"host",
        b"content-length",
        b"transfer-encoding",
        b"authorization",
        b"cookie",
        b"forwarded",
    } == h.PROTECTED_FROM_CONNECTION - h.GATEWAY_SET
    assert frozenset({b"close", b"keep-alive", b"upgrade"}) == h.CONNECTION_OPTIONS
    assert len(h.FORBIDDEN_TRAILERS) == 19
    assert {
        b"content-length",
        b"host",
        b"trailer",
        b"authorization",
        b"content-type",
        b"content-encoding",
        b"forwarded",
        b"cookie",
        b"expect",
        b"x-forwarded-client-cert",
    } | h.GATEWAY_SET == h.FORBIDDEN_TRAILERS - h.HOP_BY_HOP
    assert h.FORBIDDEN_TRAILER_PREFIX == b"x-forwarded-"
    owned = {"content-length", "transfer-encoding", "connection", "keep-alive", "upgrade"}
    assert owned | {"te", "proxy-connection", "trailer", "expect"} == h.FILTER_FORBIDDEN_STR
    assert {
        "host",
        "authorization",
        "cookie",
        "forwarded",
        "x-forwarded-client-cert",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-request-id",
    } == h.IDENTITY_RESERVED_STR - h.FILTER_FORBIDDEN_STR


def test_a_filter_may_not_set_a_framing_header() -> None:
    assert "transfer-encoding" in h.FILTER_FORBIDDEN_STR
    assert "content-length" in h.FILTER_FORBIDDEN_STR
    for name in ("proxy-connection", "trailer", "expect"):  # hop-by-hop / framing
        assert name in h.FILTER_FORBIDDEN_STR
