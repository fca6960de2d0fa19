"""Configuration sources the supervisor reads revisions from.

``FileSource`` reads ``-f`` paths (and names what to watch for hot reload);
``TextSource`` holds fixed manifest text (the embedded defaults). Both return a
validated ``ConfigSet`` and every problem found, never raising on bad input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from turnout.config.configset import ConfigSet
from turnout.config.files import MANIFEST_SUFFIXES, load_files
from turnout.config.parse import parse_text
from turnout.config.problems import Problem
from turnout.config.validate import validate


class ConfigSource(Protocol):
    name: str

    def load(self) -> tuple[ConfigSet, list[Problem]]: ...
    def watch_paths(self) -> list[Path]: ...
    def is_relevant(self, changed: Path) -> bool: ...


class FileSource:
    def __init__(self, paths: list[str]) -> None:
        self.paths = paths
        self.name = ", ".join(paths)

    def load(self) -> tuple[ConfigSet, list[Problem]]:
        return load_files(self.paths)

    def watch_paths(self) -> list[Path]:
        # Watch directories, not files: editors often save by renaming a new file over
        # the old one, which a watch on the file itself would miss.
        out: list[Path] = []
        for raw in self.paths:
            if raw == "-":
                continue
            path = Path(raw).resolve()
            target = path if path.is_dir() else path.parent
            if target not in out:
                out.append(target)
        return out

    def is_relevant(self, changed: Path) -> bool:
        changed = changed.resolve()
        for raw in self.paths:
            path = Path(raw).resolve()
            if path.is_dir():
                if changed.parent == path and changed.suffix in MANIFEST_SUFFIXES:
                    return True
            elif changed == path:
                return True
        return False


class TextSource:
    def __init__(self, text: str, name: str) -> None:
        self.text = text
        self.name = name

    def load(self) -> tuple[ConfigSet, list[Problem]]:
        resources, problems = parse_text(self.text, self.name)
        config, more = validate(resources)
        return config, problems + more

    def watch_paths(self) -> list[Path]:
        return []

    def is_relevant(self, changed: Path) -> bool:
        return False
