"""Multi-document YAML with a line/column for every field.

PyYAML builds a node tree that carries marks; we build the plain Python value from the
node with the safe constructor and, in the same pass, record where each path sits, so
that a later schema error at ``spec.rules[0].matches`` can name its line. Duplicate
mapping keys, which PyYAML silently collapses, are reported here as problems.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from turnout.config.problems import Problem, format_path

try:  # libyaml is several times faster on large manifests when present
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader

PathKey = tuple[str | int, ...]


@dataclass(slots=True)
class Document:
    """One YAML document: its value, where it starts, and where each path is."""

    source: str
    index: int
    data: Any
    line: int
    locations: dict[PathKey, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: PathKey) -> tuple[int | None, int | None]:
        """Line and column of ``path``, or of its nearest located ancestor."""
        while True:
            loc = self.locations.get(path)
            if loc is not None:
                return loc
            if not path:
                return self.line, None
            path = path[:-1]


def load_documents(text: str, source: str) -> tuple[list[Document], list[Problem]]:
    """Parse every document in ``text``; syntax errors become problems, not exceptions."""
    docs: list[Document] = []
    problems: list[Problem] = []
    loader = _Loader(text)
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            if node is None:  # pragma: no cover - check_node guarantees a node
                break
            doc = Document(source, index, None, node.start_mark.line + 1)
            # Walk before constructing: construction flattens '<<' merges into the node,
            # which would look like duplicate keys.
            _record(node, (), doc, problems)
            data = doc.data = loader.construct_document(node)
            if data is not None:
                docs.append(doc)
            index += 1
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problems.append(
            Problem(
                source,
                mark.line + 1 if mark else None,
                mark.column + 1 if mark else None,
                "",
                f"invalid YAML: {exc.problem or exc.context}",
            )
        )
    except yaml.YAMLError as exc:
        problems.append(Problem(source, None, None, "", f"invalid YAML: {exc}"))
    finally:
        loader.dispose()
    return docs, problems


def _record(node: yaml.Node, path: PathKey, doc: Document, problems: list[Problem]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # '<<: *anchor' brings keys in; an explicit key overrides them
            if not isinstance(key_node, yaml.ScalarNode):
                # A complex key ('? [a, b]'): not hashable here; constructing the document
                # refuses it as a located problem ("found unhashable key").
                continue
            key = key_node.value
            mark = key_node.start_mark
            child = (*path, key)
            if key in seen:
                problems.append(
                    Problem(
                        doc.source,
                        mark.line + 1,
                        mark.column + 1,
                        format_path(child),
                        f"duplicate key {key!r}",
                    )
                )
            seen.add(key)
            doc.locations[child] = (mark.line + 1, mark.column + 1)
            _record(value_node, child, doc, problems)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            child = (*path, i)
            doc.locations[child] = (item.start_mark.line + 1, item.start_mark.column + 1)
            _record(item, child, doc, problems)
