"""A token with characters no token has (non-ASCII, spaces): the CLI says "invalid token"
with its usual advice, and the server answers a raw one with 401, never an error."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import Cli
from turnout.testing import TurnoutProcess
from turnout.testing.rawhttp import exchange, parse_responses

BAD = ["tnt_éabcdefghijk_" + "a" * 32, "tnt_abc\u00a0def", "jeton-privé", "tnt_ab cd"]


@pytest.mark.parametrize("token", BAD)
def test_the_cli_calls_it_an_invalid_token(cli: Cli, token: str) -> None:
    for run in (
        cli("get", "gateways", env={"TURNOUT_TOKEN": token}),
        cli("get", "gateways", "--token", token),
    ):
        assert run.code == 1, run
        assert run.err.startswith("error: invalid token from "), run.err
        assert "internal error" not in run.err
        assert token not in run.err


@pytest.mark.parametrize(
    "raw",
    [
        "tnt_é".encode(),  # UTF-8
        "tnt_é".encode("latin-1"),
        b"tnt_abcdefghijkl_" + "é".encode() * 16,  # the right length in characters
        b"\xff\xfe",
    ],
)
def test_the_server_answers_a_raw_non_ascii_token_with_401(
    server: TurnoutProcess, raw: bytes
) -> None:
    for path in ("/api/v1/whoami", "/api/v1/backends"):
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n".encode()
            + b"Authorization: Bearer "
            + raw
            + b"\r\n\r\n"
        )
        data, _ = exchange(server.admin_port, request)
        [response] = parse_responses(data)
        assert response.status == 401, data
        assert json.loads(response.body)["message"] == "invalid token"
