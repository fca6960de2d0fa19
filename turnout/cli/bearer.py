"""The ``Authorization: Bearer`` header the CLI sends, and what to say when a token is bad.

A bearer token is ASCII by definition (RFC 6750 ``b64token``: letters, digits and
``-._~+/`` with trailing ``=``). One with other characters (a typo, a pasted quote or
newline, a non-ASCII look-alike) is refused here as an invalid token, with the same advice
as the server's 401, instead of failing inside the HTTP library. It is never echoed.
"""

from __future__ import annotations

import re
from typing import Final

from turnout.cli.contexts import Target
from turnout.cli.errors import CliError

_B64TOKEN: Final = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def token_fix(target: Target) -> str:
    """What to do about a token the server rejects, by where the token came from."""
    if target.token_source.startswith("bootstrap token"):
        return (
            "it belongs to a different data dir or server; pass --token or set "
            "TURNOUT_TOKEN (or TURNOUT_DATA_DIR to the server's --data-dir)"
        )
    if target.token_source in ("--token", "TURNOUT_TOKEN"):
        return "check it, or create a new one with `turnout token create`"
    return "update the context, or override it with --token / TURNOUT_TOKEN"


def bearer_headers(target: Target) -> dict[str, str]:
    """``{"Authorization": "Bearer …"}`` (empty without a token); ``CliError`` for a token
    that cannot be one."""
    if not target.token:
        return {}
    if _B64TOKEN.fullmatch(target.token) is None:
        raise CliError(
            f"invalid token from {target.token_source}: a token holds only ASCII letters, "
            f"digits and -._~+/= and this one has other characters; {token_fix(target)}"
        )
    return {"Authorization": f"Bearer {target.token}"}
