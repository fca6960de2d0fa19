"""Located configuration problems.

Every error a user can make in a manifest is reported as a ``Problem`` that names the
source (file or API), the line and column, the object and the field path, e.g.::

    routes.yaml:14:9: HTTPRoute default/shop: spec.rules[0].matches[0].path.type:
        Input should be 'Exact', 'PathPrefix' or 'RegularExpression'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Problem:
    source: str
    line: int | None
    column: int | None
    path: str
    message: str
    obj: str = ""
    severity: Severity = "error"

    def __str__(self) -> str:
        where = self.source
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        parts = [where]
        if self.obj:
            parts.append(self.obj)
        if self.path:
            parts.append(self.path)
        prefix = ": ".join(parts)
        tag = "" if self.severity == "error" else f"{self.severity}: "
        return f"{prefix}: {tag}{self.message}"


class ConfigError(Exception):
    """Raised when a configuration has at least one error-severity problem."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        errors = [p for p in problems if p.severity == "error"]
        super().__init__(f"{len(errors)} configuration error(s)")

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems if p.severity == "error")


def format_path(path: tuple[str | int, ...]) -> str:
    """Render ``("spec", "rules", 0, "matches")`` as ``spec.rules[0].matches``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out
