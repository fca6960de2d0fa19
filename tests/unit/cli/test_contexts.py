"""Server and token resolution: flags, env vars, the contexts file, local defaults.

Real temporary files and environment variables; nothing is mocked.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from turnout.cli.contexts import DEFAULT_SERVER, is_loopback, normalise_server, resolve
from turnout.cli.errors import CliError
from turnout.cli.options import Connection

ENV = ("TURNOUT_SERVER", "TURNOUT_TOKEN", "TURNOUT_CONTEXT", "TURNOUT_CONFIG", "TURNOUT_DATA_DIR")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    # Point every default at empty temp dirs so the developer's own files never leak in.
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "xdg-config" / "turnout" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def bootstrap(tmp_path: Path, token: str = "tnt_boot") -> Path:
    path = tmp_path / "xdg-data" / "turnout" / "admin-token"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(token + "\n")
    return path


CONFIG = """
current-context: prod
contexts:
- name: local
  server: http://127.0.0.1:9902
  token: tnt_local
- name: prod
  server: https://turnout.example.com
  tokenFile: prod-token
  namespace: shop
"""


def test_defaults_use_local_server_and_bootstrap_token(tmp_path: Path) -> None:
    path = bootstrap(tmp_path)
    t = resolve(Connection())
    assert t.server == DEFAULT_SERVER == "http://127.0.0.1:9901"
    assert t.token == "tnt_boot"
    assert t.token_source == f"bootstrap token {path}"


def test_turnout_data_dir_wins_for_the_bootstrap_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bootstrap(tmp_path)
    data = tmp_path / "explicit"
    data.mkdir()
    (data / "admin-token").write_text("tnt_explicit\n")
    monkeypatch.setenv("TURNOUT_DATA_DIR", str(data))
    assert resolve(Connection()).token == "tnt_explicit"


def test_no_token_anywhere(tmp_path: Path) -> None:
    t = resolve(Connection())
    assert t.token is None and t.token_source == ""
    assert any("admin-token" in place for place in t.looked_for_token)


def test_flags_beat_env_beat_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(tmp_path, CONFIG.replace("tokenFile: prod-token", "token: tnt_prod"))
    monkeypatch.setenv("TURNOUT_SERVER", "http://10.0.0.1:9901")
    monkeypatch.setenv("TURNOUT_TOKEN", "tnt_env")
    t = resolve(Connection(server="http://10.0.0.2:9901/", token="tnt_flag"))
    assert (t.server, t.server_source) == ("http://10.0.0.2:9901", "--server")
    assert (t.token, t.token_source) == ("tnt_flag", "--token")
    t = resolve(Connection())
    assert (t.server, t.server_source) == ("http://10.0.0.1:9901", "TURNOUT_SERVER")
    assert (t.token, t.token_source) == ("tnt_env", "TURNOUT_TOKEN")
    monkeypatch.delenv("TURNOUT_SERVER")
    t = resolve(Connection())
    assert t.server == "https://turnout.example.com"
    assert "context 'prod'" in t.server_source
    assert t.token == "tnt_env"  # each value resolves on its own
    assert t.namespace == "shop"


def test_current_context_with_token_file_relative_to_config(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, CONFIG)
    (cfg.parent / "prod-token").write_text("  tnt_from_file\n")
    t = resolve(Connection())
    assert t.token == "tnt_from_file"
    assert str(cfg.parent / "prod-token") in t.token_source


def test_context_flag_and_env_select_a_context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(tmp_path, CONFIG)
    t = resolve(Connection(context="local"))
    assert (t.server, t.token) == ("http://127.0.0.1:9902", "tnt_local")
    monkeypatch.setenv("TURNOUT_CONTEXT", "local")
    assert resolve(Connection()).token == "tnt_local"


def test_kubeconfig_nested_shape_is_accepted(tmp_path: Path) -> None:
    write_config(
        tmp_path,
        "current-context: a\ncontexts:\n- name: a\n  context: {server: 'h:1', token: tnt_a}\n",
    )
    t = resolve(Connection())
    assert (t.server, t.token) == ("http://h:1", "tnt_a")


def test_turnout_config_env_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "elsewhere.yaml"
    other.write_text("current-context: x\ncontexts: [{name: x, server: 'http://h:2', token: t}]\n")
    monkeypatch.setenv("TURNOUT_CONFIG", str(other))
    assert resolve(Connection()).server == "http://h:2"


def test_unknown_context_is_a_clear_error(tmp_path: Path) -> None:
    write_config(tmp_path, CONFIG)
    with pytest.raises(
        CliError, match=r"context 'nope' \(--context\) is not in .*known: local, prod"
    ):
        resolve(Connection(context="nope"))


def test_context_without_a_file(tmp_path: Path) -> None:
    with pytest.raises(CliError, match="there is no contexts file"):
        resolve(Connection(context="prod"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("contexts: [\n", "invalid YAML"),
        ("- a\n- b\n", "expected a mapping"),
        ("contexts: {a: 1}\n", "contexts must be a list"),
        ("contexts: [{server: x}]\n", r"contexts\[0\] needs a 'name'"),
        ("contexts: [{name: a, server: 5}]\n", r"contexts\[0\].server must be a string"),
    ],
)
def test_broken_contexts_files(tmp_path: Path, text: str, message: str) -> None:
    write_config(tmp_path, text)
    with pytest.raises(CliError, match=message):
        resolve(Connection(context="a"))


def test_missing_token_file_is_reported(tmp_path: Path) -> None:
    write_config(tmp_path, CONFIG)
    with pytest.raises(CliError, match=r"cannot read the token file .*prod-token"):
        resolve(Connection())


def test_bootstrap_token_is_never_sent_to_a_remote_server(tmp_path: Path) -> None:
    bootstrap(tmp_path)
    remote = resolve(Connection(server="https://turnout.example.com"))
    assert remote.token is None
    local = resolve(Connection(server="localhost:9999"))
    assert (local.server, local.token) == ("http://localhost:9999", "tnt_boot")


@pytest.mark.parametrize(
    ("raw", "url"),
    [
        ("127.0.0.1:9901", "http://127.0.0.1:9901"),
        ("https://h.example/", "https://h.example"),
        ("http://[::1]:9901", "http://[::1]:9901"),
    ],
)
def test_normalise_server(raw: str, url: str) -> None:
    assert normalise_server(raw, "test") == url


@pytest.mark.parametrize("raw", ["ftp://h", "http://", "http://h:99999", " "])
def test_bad_server_urls(raw: str) -> None:
    with pytest.raises(CliError, match="server URL"):
        normalise_server(raw, "--server")


def test_loopback_detection() -> None:
    assert is_loopback("http://127.0.0.2:1")
    assert is_loopback("http://[::1]:1")
    assert is_loopback("http://localhost:1")
    assert not is_loopback("http://10.1.1.1:1")
    assert not is_loopback("https://example.com")
