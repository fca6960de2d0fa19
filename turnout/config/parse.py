"""Documents → typed resources, with every schema error located in its file.

``parse_documents`` never raises on bad input: it returns the resources it could build
and the problems it found, each naming source, line, column, object and field path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from turnout.config.model import FOREIGN_KINDS, KINDS, ConfigObject
from turnout.config.problems import Problem, format_path
from turnout.config.yamldocs import Document, PathKey, load_documents


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a resource came from: a file (with the line its document starts on) or the API."""

    source: str
    line: int
    order: int  # load order; stands in for creation time when no timestamp is given


@dataclass(slots=True, eq=False)
class Resource:
    obj: ConfigObject
    origin: Origin
    # Kept in the supervisor for locating cross-object problems; never sent to workers.
    doc: Document | None = field(default=None, repr=False)

    @property
    def kind(self) -> str:
        return self.obj.kind

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.obj.kind, self.obj.metadata.namespace, self.obj.metadata.name)

    @property
    def ref(self) -> str:
        return f"{self.obj.kind} {self.obj.metadata.namespace}/{self.obj.metadata.name}"

    def problem(self, path: PathKey, message: str, severity: str = "error") -> Problem:
        line, col = self.doc.locate(path) if self.doc else (self.origin.line, None)
        return Problem(
            self.origin.source,
            line,
            col,
            format_path(path),
            message,
            self.ref,
            "warning" if severity == "warning" else "error",
        )


def parse_text(
    text: str, source: str, first_order: int = 0
) -> tuple[list[Resource], list[Problem]]:
    docs, problems = load_documents(text, source)
    resources, more = parse_documents(docs, first_order)
    return resources, problems + more


def parse_documents(
    docs: list[Document], first_order: int = 0
) -> tuple[list[Resource], list[Problem]]:
    resources: list[Resource] = []
    problems: list[Problem] = []
    for doc in docs:
        res = _parse_one(doc, first_order + len(resources), problems)
        if res is not None:
            resources.append(res)
    return resources, problems


def _parse_one(doc: Document, order: int, problems: list[Problem]) -> Resource | None:
    data = doc.data
    if not isinstance(data, dict):
        problems.append(
            Problem(doc.source, doc.line, None, "", "each document must be a mapping (an object)")
        )
        return None
    kind = data.get("kind")
    if not isinstance(kind, str):
        line, col = doc.locate(("kind",))
        problems.append(Problem(doc.source, line, col, "kind", "missing or invalid 'kind'"))
        return None
    model = KINDS.get(kind)
    if model is None:
        line, col = doc.locate(("kind",))
        advice = FOREIGN_KINDS.get(kind, f"unknown kind {kind!r}; known: {', '.join(KINDS)}")
        problems.append(Problem(doc.source, line, col, "kind", advice))
        return None
    try:
        obj: Any = model.model_validate(data)
    except ValidationError as exc:
        name = _name_of(data)
        for err in exc.errors():
            path = tuple(err["loc"])
            line, col = doc.locate(path)
            problems.append(
                Problem(doc.source, line, col, format_path(path), _message(err), f"{kind} {name}")
            )
        return None
    return Resource(obj, Origin(doc.source, doc.line, order), doc)


def _name_of(data: dict[str, Any]) -> str:
    meta = data.get("metadata")
    if isinstance(meta, dict):
        return f"{meta.get('namespace', 'default')}/{meta.get('name', '?')}"
    return "?"


def _message(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    msg: str = err["msg"]
    return msg.removeprefix("Value error, ")
