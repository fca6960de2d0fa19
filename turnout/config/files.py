"""The file source: ``-f FILE|DIR`` arguments → one validated ``ConfigSet``.

Directories are read non-recursively in name order (``*.yaml``, ``*.yml``, ``*.json``),
files in the order given, so creation order (a Gateway API precedence tie-breaker) is
the order a reader sees. ``-`` reads standard input once.
"""

from __future__ import annotations

import sys
from pathlib import Path

from turnout.config.configset import ConfigSet
from turnout.config.parse import Resource, parse_text
from turnout.config.problems import ConfigError, Problem
from turnout.config.validate import validate

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


def manifests_in(directory: Path) -> list[Path]:
    """The manifests a ``-f`` directory holds, in name order (not recursive)."""
    return sorted(p for p in directory.iterdir() if p.suffix in MANIFEST_SUFFIXES and p.is_file())


def expand_paths(paths: list[str]) -> tuple[list[Path], list[Problem]]:
    files: list[Path] = []
    problems: list[Problem] = []
    for raw in paths:
        if raw == "-":
            files.append(Path("-"))
            continue
        path = Path(raw)
        if path.is_dir():
            found = manifests_in(path)
            if not found:
                problems.append(
                    Problem(
                        raw,
                        None,
                        None,
                        "",
                        "directory holds no *.yaml/*.yml/*.json files",
                        severity="warning",
                    )
                )
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            problems.append(Problem(raw, None, None, "", "no such file or directory"))
    return files, problems


def load_files(paths: list[str]) -> tuple[ConfigSet, list[Problem]]:
    """Read, parse and validate; problems include warnings. Never raises on bad input."""
    files, problems = expand_paths(paths)
    resources: list[Resource] = []
    for file in files:
        try:
            text = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(str(file), None, None, "", f"cannot read: {exc}"))
            continue
        found, more = parse_text(text, "<stdin>" if str(file) == "-" else str(file), len(resources))
        resources.extend(found)
        problems.extend(more)
    config, more = validate(resources)
    return config, problems + more


def load_files_or_raise(paths: list[str]) -> tuple[ConfigSet, list[Problem]]:
    """Like ``load_files`` but raises ``ConfigError`` when any problem is an error."""
    config, problems = load_files(paths)
    if any(p.severity == "error" for p in problems):
        raise ConfigError(problems)
    return config, problems
