"""``FileSource`` watches exactly the configuration: the ``-f`` files, the ``-f``
directories and the manifests in them; changes beside them are not relevant."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from turnout.config.sources import FileSource


def test_a_file_is_watched_by_itself_not_through_its_directory(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("")
    (tmp_path / "access.log").write_text("")
    source = FileSource([str(config)])
    assert source.watch_paths() == [config]
    assert source.is_relevant(config)
    assert not source.is_relevant(tmp_path / "access.log")
    assert not source.is_relevant(tmp_path / "other.yaml")
    assert not source.is_relevant(tmp_path)


def test_a_directory_is_watched_with_each_manifest_in_it(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    (conf / "data").mkdir(parents=True)
    for name in ("b.yaml", "a.yml", "c.json", "notes.txt", "data/x.yaml"):
        (conf / name).write_text("")
    source = FileSource([str(conf)])
    assert source.watch_paths() == [conf, conf / "a.yml", conf / "b.yaml", conf / "c.json"]
    assert source.is_relevant(conf / "new.yaml")  # created later: picked up
    assert source.is_relevant(conf)
    assert not source.is_relevant(conf / "notes.txt")
    assert not source.is_relevant(conf / "..data")  # a ConfigMap's swap link
    assert not source.is_relevant(conf / "data" / "x.yaml")  # not recursive


def test_a_symlinked_file_keeps_its_own_name(tmp_path: Path) -> None:
    # A ConfigMap volume: gateway.yaml -> ..data/gateway.yaml, ..data -> ..2024_01
    (tmp_path / "..2024_01").mkdir()
    (tmp_path / "..2024_01" / "gateway.yaml").write_text("")
    os.symlink("..2024_01", tmp_path / "..data")
    os.symlink("..data/gateway.yaml", tmp_path / "gateway.yaml")
    source = FileSource([str(tmp_path / "gateway.yaml")])
    assert source.watch_paths() == [tmp_path / "gateway.yaml"]
    assert source.is_relevant(tmp_path / "gateway.yaml")


def test_a_missing_file_is_awaited_through_its_directory(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    source = FileSource([str(config), "-"])
    assert source.watch_paths() == [tmp_path]
    assert source.is_relevant(config)
    assert not source.is_relevant(tmp_path / "gateway.yaml.swp")


def test_relative_paths_match_the_absolute_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("")
    monkeypatch.chdir(tmp_path)
    source = FileSource(["gateway.yaml"])
    assert source.watch_paths() == [config]
    assert source.is_relevant(config)
