"""``-f`` inputs → one multi-document YAML request body, with a map back to files.

``apply``, ``diff`` and ``delete -f`` send all their files in ONE request so the server
applies them atomically. Files are concatenated with ``---`` separators, and for every
line of the body we remember the file and line it came from; the server reports problems
as ``<request>:LINE:COL`` and ``Bundle.locate`` turns that back into ``routes.yaml:12:7``.

Each file is parsed here first (PyYAML, with marks): a syntax error is reported against
its own file without contacting the server, an input with no objects is refused, and a
``kind: List`` document (what ``turnout get -o yaml`` prints) is expanded into its items,
whose lines map to where each item starts in the file. Directories are read
non-recursively in name order with the suffixes of ``turnout.config.files``; ``-`` reads
standard input once.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from turnout.cli.errors import CliError, ServerProblem, ValidationFailed

# The same suffixes as turnout.config.files.MANIFEST_SUFFIXES (checked by a unit test;
# importing that module would load the whole validator, ~0.2 s).
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
REQUEST_SOURCE = "<request>"
STDIN = "<stdin>"

try:
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader


@dataclass(slots=True)
class Bundle:
    """The request body and, per body line (0-based), the ``(source, line)`` it came from."""

    body: str = ""
    origins: list[tuple[str, int]] = field(default_factory=list)
    documents: int = 0
    sources: list[str] = field(default_factory=list)
    # "Kind namespace/name" -> (file, the object's YAML node): locates problems the server
    # reports against the object rather than a request line (cross-object validation).
    objects: dict[str, tuple[str, yaml.Node]] = field(default_factory=dict)

    def add_lines(self, lines: list[str], origins: list[tuple[str, int]]) -> None:
        if self.body:
            self.body += "---\n"
            self.origins.append(origins[0] if origins else ("", 0))
        self.body += "".join(line if line.endswith("\n") else line + "\n" for line in lines)
        self.origins.extend(origins)

    def locate(self, line: int) -> tuple[str, int]:
        """Body line (1-based) → (file, line); unknown lines stay in the request."""
        if 1 <= line <= len(self.origins):
            return self.origins[line - 1]
        return REQUEST_SOURCE, line

    def map_problem(self, p: ServerProblem) -> ServerProblem:
        if p.source == REQUEST_SOURCE and p.line is not None:
            source, line = self.locate(p.line)
            if source == REQUEST_SOURCE:
                return p
            return ServerProblem(source, line, p.column, p.path, p.message, p.object, p.severity)
        if p.line is None and p.object in self.objects:
            source, node = self.objects[p.object]
            line, column = locate_path(node, p.path)
            return ServerProblem(source, line, column, p.path, p.message, p.object, p.severity)
        return p

    def map_error(self, exc: ValidationFailed) -> ValidationFailed:
        return ValidationFailed(exc.message, [self.map_problem(p) for p in exc.problems])


def expand(paths: list[str]) -> list[str]:
    """Files to read, in order: directories non-recursively by name; ``-`` as is."""
    if not paths:
        raise CliError("give at least one -f FILE|DIR (or -f - for standard input)", 2)
    files: list[str] = []
    for raw in paths:
        if raw == "-":
            if "-" in files:
                raise CliError("-f - (standard input) can be given only once", 2)
            files.append(raw)
            continue
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                p for p in path.iterdir() if p.suffix in MANIFEST_SUFFIXES and p.is_file()
            )
            if not found:
                raise CliError(f"{raw}: directory holds no *.yaml/*.yml/*.json files")
            files.extend(str(p) for p in found)
        elif path.is_file():
            files.append(raw)
        else:
            raise CliError(f"{raw}: no such file or directory")
    return files


def read_bundle(paths: list[str]) -> Bundle:
    bundle = Bundle()
    for name in expand(paths):
        source = STDIN if name == "-" else name
        try:
            text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise CliError(f"{source}: cannot read: {reason}") from None
        add_text(bundle, text, source)
    if bundle.documents == 0:
        where = ", ".join(bundle.sources) or "the input"
        raise CliError(f"no objects passed: {where} holds no manifests")
    return bundle


def add_text(bundle: Bundle, text: str, source: str) -> None:
    """Check ``text``'s syntax, count its objects, and append it (Lists expanded)."""
    text = text.removeprefix("\ufeff")
    bundle.sources.append(source)
    docs = _documents(text, source)
    count = 0
    lists = False
    for node, data in docs:
        if data is None:
            continue
        if _is_list(data):
            lists = True
            items = data.get("items") or []
            count += len(items)
            for item, item_node in zip(items, _items_nodes(node), strict=False):
                _remember(bundle, source, item, item_node)
        else:
            count += 1
            _remember(bundle, source, data, node)
    bundle.documents += count
    if count == 0:
        return
    lines = text.splitlines(keepends=True)
    if not lists:
        bundle.add_lines(lines, [(source, i + 1) for i in range(len(lines))])
        return
    # Re-emit every document: Lists as their items, others as dumped YAML; each emitted
    # line maps to the start line of the object it belongs to in the file.
    out: list[str] = []
    origins: list[tuple[str, int]] = []
    for node, data in docs:
        if data is None:
            continue
        if _is_list(data):
            item_nodes = _items_nodes(node)
            for i, item in enumerate(data.get("items") or []):
                start = item_nodes[i].start_mark.line + 1 if i < len(item_nodes) else 0
                _emit(out, origins, item, (source, start or node.start_mark.line + 1))
        else:
            _emit(out, origins, data, (source, node.start_mark.line + 1))
    bundle.add_lines(out, origins)


def object_ref(manifest: Any) -> str:
    """``HTTPRoute default/shop`` — how the server names an object in problems."""
    if not isinstance(manifest, dict):
        return ""
    raw = manifest.get("metadata")
    meta: dict[str, Any] = raw if isinstance(raw, dict) else {}
    ns = meta.get("namespace") or "default"
    return f"{manifest.get('kind')} {ns}/{meta.get('name')}"


def _remember(bundle: Bundle, source: str, data: Any, node: yaml.Node) -> None:
    ref = object_ref(data)
    if ref:
        bundle.objects.setdefault(ref, (source, node))


_PATH_PART = re.compile(r"\[(\d+)\]|\.?([^.\[]+)")


def locate_path(node: yaml.Node, path: str) -> tuple[int, int]:
    """Line and column (1-based) of ``spec.rules[0].backendRefs`` in a document node, or
    of the deepest part of it that exists."""
    best = (node.start_mark.line + 1, node.start_mark.column + 1)
    for m in _PATH_PART.finditer(path):
        index, key = m.group(1), m.group(2)
        child: yaml.Node | None = None
        mark_node: yaml.Node | None = None
        if index is not None and isinstance(node, yaml.SequenceNode):
            i = int(index)
            if i < len(node.value):
                child = mark_node = node.value[i]
        elif key is not None and isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == key:
                    child, mark_node = v, k
                    break
        if child is None or mark_node is None:
            break
        best = (mark_node.start_mark.line + 1, mark_node.start_mark.column + 1)
        node = child
    return best


def _emit(
    out: list[str], origins: list[tuple[str, int]], value: Any, origin: tuple[str, int]
) -> None:
    if out:
        out.append("---\n")
        origins.append(origin)
    dumped = yaml.safe_dump(value, sort_keys=False, default_flow_style=False).splitlines(True)
    out.extend(dumped)
    origins.extend([origin] * len(dumped))


def _is_list(data: Any) -> bool:
    return (
        isinstance(data, dict)
        and data.get("kind") == "List"
        and isinstance(data.get("items"), list)
    )


def _items_nodes(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == "items" and isinstance(value, yaml.SequenceNode):
                return list(value.value)
    return []


def _documents(text: str, source: str) -> list[tuple[yaml.Node, Any]]:
    loader = _Loader(text)
    docs: list[tuple[yaml.Node, Any]] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:  # pragma: no cover - check_node guarantees a node
                break
            docs.append((node, loader.construct_document(node)))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise CliError(f"{where}: invalid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise CliError(f"{source}: invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    for node, data in docs:
        if data is not None and not isinstance(data, dict):
            line = node.start_mark.line + 1
            raise CliError(
                f"{source}:{line}: expected a manifest (a mapping with apiVersion, kind, "
                f"metadata), got {type(data).__name__}"
            )
    return docs
