"""The file watcher: only the configuration's own files count. Files written beside it
(an access log, the server's own log, a data directory) neither reload nor log; an edit
reloads, also when saved by a rename or by a ConfigMap volume's symlink swap; a manifest
added to a ``-f`` directory is picked up; a change made while the server starts is
served."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from tests.conftest import EchoFactory, ServeFactory
from turnout.testing import TurnoutProcess, free_port
from turnout.testing.manifests import backend, dump, gateway, route, to
from turnout.testing.polling import wait_until
from turnout.testing.requests import get


def _tagged(port: int, echo_port: int, tag: str) -> str:
    rule = to("echo", "/")
    rule["filters"] = [
        {
            "type": "ResponseHeaderModifier",
            "responseHeaderModifier": {"set": [{"name": "x-tag", "value": tag}]},
        }
    ]
    return dump(gateway("gw", port), backend("echo", echo_port), route("r", [rule]))


def _replace(path: Path, text: str) -> None:
    """Save as editors and ConfigMap updates do: a new file renamed over the old one."""
    scratch = path.parent / f".{path.name}.tmp"
    scratch.write_text(text)
    os.replace(scratch, path)


def _scribble(directory: Path, seconds: float) -> None:
    """Write beside the configuration for a while, as an access log would."""
    (directory / "data").mkdir(exist_ok=True)
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        n += 1
        with open(directory / "access.log", "a") as log:
            log.write(f"line {n}\n")
        (directory / "data" / f"{n % 5}.yaml").write_text(f"n: {n}\n")
        (directory / "notes.txt").write_text(str(n))
        time.sleep(0.02)


def _lines_since(gw: TurnoutProcess, before: str) -> list[str]:
    """New log lines, but for the leader election's, which may come late in start-up."""
    new = gw.stderr()[len(before) :].splitlines()
    return [line for line in new if "leader lock" not in line]


def _reload_lines(gw: TurnoutProcess) -> list[str]:
    return [line for line in gw.stderr().splitlines() if "reload (" in line]


def test_writes_beside_a_config_file_neither_reload_nor_log(
    echo: EchoFactory, tmp_path: Path
) -> None:
    # -f names the file; the server's own log and its data dir are in the same directory.
    port, up = free_port(), echo()
    config = tmp_path / "gateway.yaml"
    config.write_text(_tagged(port, up.port, "one"))
    with TurnoutProcess(config) as gw:
        assert gw.stderr_path.parent == gw.data_dir.parent == tmp_path
        before = gw.stderr()
        _scribble(tmp_path, 1.5)
        assert _lines_since(gw, before) == []  # not a line about any of it
        assert get(port).headers["x-tag"] == "one"
        _replace(config, _tagged(port, up.port, "two"))
        wait_until(lambda: get(port).headers.get("x-tag") == "two", 10, "the edited revision")
        _scribble(tmp_path, 1.0)
        assert gw.status()["revision"] == 2
        assert len(_reload_lines(gw)) == 1, _reload_lines(gw)
        assert "changes detected" not in gw.stderr()


def test_a_config_directory_picks_up_new_manifests_and_ignores_the_rest(
    echo: EchoFactory, serve: ServeFactory
) -> None:
    port, up = free_port(), echo()
    gw = serve(dump(gateway("gw", port), backend("echo", up.port), route("r", [to("echo", "/")])))
    before = gw.stderr()
    _scribble(gw.config, 1.5)
    assert _lines_since(gw, before) == []
    assert get(port, "/extra").status == 200
    assert gw.status()["revision"] == 1
    rule = to("echo", "/extra")
    rule["filters"] = [
        {
            "type": "ResponseHeaderModifier",
            "responseHeaderModifier": {"set": [{"name": "x-tag", "value": "extra"}]},
        }
    ]
    _replace(gw.config / "extra.yaml", dump(route("extra", [rule])))
    wait_until(lambda: get(port, "/extra").headers.get("x-tag") == "extra", 10, "the new file")
    # ...and the new file is watched itself from now on.
    rule["filters"][0]["responseHeaderModifier"]["set"][0]["value"] = "edited"
    (gw.config / "extra.yaml").write_text(dump(route("extra", [rule])))
    wait_until(lambda: get(port, "/extra").headers.get("x-tag") == "edited", 10, "the edit")
    assert "changes detected" not in gw.stderr()
    assert not [line for line in _reload_lines(gw) if "unchanged" in line], gw.stderr()


def test_a_change_made_during_start_up_is_served(echo: EchoFactory, tmp_path: Path) -> None:
    port, up = free_port(), echo()
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "gateway.yaml").write_text(_tagged(port, up.port, "one"))
    gw = TurnoutProcess(conf).start(expect_ready=False)
    try:
        # The store line comes after the first read of the files and before the server
        # is ready: the change lands in the middle of start-up.
        wait_until(lambda: "store:" in gw.stderr(), 20, "the store to open")
        _replace(conf / "gateway.yaml", _tagged(port, up.port, "two"))
        gw.wait_ready()
        wait_until(lambda: get(port).headers.get("x-tag") == "two", 10, "the change to be served")
    finally:
        gw.stop()


def _configmap_volume(directory: Path, text: str, version: int) -> None:
    """Write ``gateway.yaml`` the way the kubelet updates a ConfigMap volume: a new
    timestamped directory, ``..data`` swapped to it by a rename, the old one removed;
    ``gateway.yaml`` itself is a symlink through ``..data`` that never changes."""
    new = directory / f"..v{version}"
    new.mkdir()
    (new / "gateway.yaml").write_text(text)
    old = (directory / "..data").resolve() if (directory / "..data").exists() else None
    os.symlink(new.name, directory / "..data_tmp")
    os.replace(directory / "..data_tmp", directory / "..data")
    if old is not None:
        shutil.rmtree(old)
    if not (directory / "gateway.yaml").is_symlink():
        os.symlink("..data/gateway.yaml", directory / "gateway.yaml")


@pytest.mark.parametrize("given", ["file", "directory"])
def test_a_configmap_volume_update_is_seen(echo: EchoFactory, tmp_path: Path, given: str) -> None:
    port, up = free_port(), echo()
    volume = tmp_path / "config"
    volume.mkdir()
    _configmap_volume(volume, _tagged(port, up.port, "one"), 1)
    config = volume / "gateway.yaml" if given == "file" else volume
    gw = TurnoutProcess(config, data_dir=tmp_path / "data").start()
    try:
        assert get(port).headers["x-tag"] == "one"
        _configmap_volume(volume, _tagged(port, up.port, "two"), 2)
        wait_until(lambda: get(port).headers.get("x-tag") == "two", 10, "the new ConfigMap data")
        _configmap_volume(volume, _tagged(port, up.port, "three"), 3)
        wait_until(lambda: get(port).headers.get("x-tag") == "three", 10, "the second update")
    finally:
        gw.stop()
