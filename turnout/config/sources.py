"""Configuration sources the supervisor reads revisions from.

``FileSource`` reads ``-f`` paths and names exactly what to watch for hot reload:
each ``-f`` file (a watch on a file follows a symlink and sees it replaced by a rename,
as editors and Kubernetes ConfigMap updates do), each ``-f`` directory (non-recursively,
for manifests created in it) and each manifest in it. A ``-f`` file that is missing
right now is watched through its directory until it comes back. ``is_relevant`` keeps
the changes to those paths and drops everything else written beside them (logs, data
directories). ``TextSource`` holds fixed manifest text (the embedded defaults). Both
return a validated ``ConfigSet`` and every problem found, never raising on bad input.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from turnout.config.configset import ConfigSet
from turnout.config.files import MANIFEST_SUFFIXES, load_files, manifests_in
from turnout.config.parse import parse_text
from turnout.config.problems import Problem
from turnout.config.validate import validate


class ConfigSource(Protocol):
    name: str

    def load(self) -> tuple[ConfigSet, list[Problem]]: ...
    def watch_paths(self) -> list[Path]: ...
    def is_relevant(self, changed: Path) -> bool: ...


def _absolute(raw: str) -> Path:
    # Absolute but not resolved: a symlinked file is watched (and reported) by its own name.
    return Path(os.path.abspath(raw))


class FileSource:
    def __init__(self, paths: list[str]) -> None:
        self.paths = paths
        self.name = ", ".join(paths)
        given = [_absolute(raw) for raw in paths if raw != "-"]
        self._given = set(given)
        self._ordered = given

    def load(self) -> tuple[ConfigSet, list[Problem]]:
        return load_files(self.paths)

    def watch_paths(self) -> list[Path]:
        """What makes up the configuration now; recomputed after every relevant change."""
        out: list[Path] = []
        for path in self._ordered:
            if path.is_dir():
                found = [path, *manifests_in(path)]
            elif path.exists():
                found = [path]
            elif path.parent.is_dir():
                found = [path.parent]  # is_relevant keeps only this name's events from it
            else:
                found = []
            out.extend(p for p in found if p not in out)
        return out

    def is_relevant(self, changed: Path) -> bool:
        changed = Path(os.path.abspath(changed))
        if changed in self._given:
            return True
        return changed.parent in self._given and changed.suffix in MANIFEST_SUFFIXES


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
