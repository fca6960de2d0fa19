"""The CLI's bearer header: a token that cannot be one is an invalid token, said plainly,
never an encoding failure inside the HTTP library, and never echoed."""

from __future__ import annotations

import pytest

from turnout.cli.bearer import bearer_headers, token_fix
from turnout.cli.contexts import Target
from turnout.cli.errors import CliError

GOOD = "tnt_abcdefghijkl_" + "a" * 32


def _target(token: str | None, source: str = "--token") -> Target:
    return Target("http://127.0.0.1:9901", "default", token, source if token else "")


def test_a_token_becomes_the_authorization_header() -> None:
    assert bearer_headers(_target(GOOD)) == {"Authorization": f"Bearer {GOOD}"}
    assert bearer_headers(_target("b64+/token==")) == {"Authorization": "Bearer b64+/token=="}
    assert bearer_headers(_target(None)) == {}


@pytest.mark.parametrize(
    "token", ["tnt_é" + GOOD[5:], GOOD + "\u00a0", "tnt_ab cd", GOOD + "\n", "«" + GOOD + "»"]
)
def test_a_token_with_characters_no_token_has_is_invalid(token: str) -> None:
    with pytest.raises(CliError) as err:
        bearer_headers(_target(token, "TURNOUT_TOKEN"))
    message = err.value.message
    assert message.startswith("invalid token from TURNOUT_TOKEN: ")
    assert "turnout token create" in message
    assert token.strip() not in message and "\n" not in message


def test_the_advice_depends_on_where_the_token_came_from() -> None:
    assert "turnout token create" in token_fix(_target(GOOD, "--token"))
    assert "--data-dir" in token_fix(_target(GOOD, "bootstrap token /x/admin-token"))
    assert "update the context" in token_fix(_target(GOOD, "context 'prod' (/x/config.yaml)"))
