"""Safe YAML loading that keeps positions and refuses what PyYAML would silently accept.

`load_yaml_text` turns text into plain Python values plus a map from each YAML path to the line and
column where its node starts, so every later check can point at the exact spot. It also reports,
as diagnostics rather than exceptions: syntax errors, duplicate keys (PyYAML keeps the last one),
anchors/aliases that expand past a node budget (alias bombs), and recursive aliases.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from labtax.errors import Diagnostic, Severity

# libyaml's parser is an order of magnitude faster than the pure-Python one; marks are the same.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # type: ignore[assignment]

YamlPath = tuple[str | int, ...]

_STR_TAG = "tag:yaml.org,2002:str"
# The tags plain YAML resolves by itself. Any other tag was written on purpose (`!!python/object:...`,
# `!!binary`, `!!set`, a custom `!include`): a qna.yaml has no use for one, and a tool that honours it
# differently from labtax would read different content, so it is an error (`yaml-tag`).
_PLAIN_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "timestamp", "seq", "map")
)
# A qna.yaml holds a few hundred nodes. The budget stops "billion laughs" alias expansion early.
MAX_NODES = 200_000
# A qna.yaml nests 5 levels deep. Deeper input is rejected before libyaml's recursive composer sees it:
# tens of thousands of levels overflow the C stack (a segfault, not an exception).
MAX_DEPTH = 64
# An upper bound on nesting depth is the number of characters that can open a level; only when it
# exceeds this (never, for a real leaf) do we pay for an event scan that measures the true depth.
_DEPTH_SCAN_THRESHOLD = 5_000


@dataclass(frozen=True)
class Position:
    line: int  # 1-based
    column: int  # 1-based


@dataclass
class YamlDocument:
    """A loaded YAML document: its value and where each node (and each mapping key) starts."""

    value: Any
    positions: dict[YamlPath, Position] = field(default_factory=dict)
    key_positions: dict[YamlPath, Position] = field(default_factory=dict)

    def position(self, path: YamlPath) -> Position:
        """The position of `path`, or of its nearest ancestor that has one."""
        while path:
            if path in self.positions:
                return self.positions[path]
            path = path[:-1]
        return self.positions.get((), Position(1, 1))

    def key_position(self, path: YamlPath) -> Position:
        """Where the key of a mapping entry starts (falls back to the value's position)."""
        return self.key_positions.get(path) or self.position(path)


def format_yaml_path(path: YamlPath) -> str:
    """`("seed_examples", 2, "answer")` -> `.seed_examples[2].answer` (yq's notation, as InstructLab prints)."""
    if not path:
        return "."
    out = []
    for part in path:
        out.append(f"[{part}]" if isinstance(part, int) else f".{part}")
    return "".join(out)


class _BudgetExceeded(Exception):
    pass


class _TooDeep(Exception):
    pass


class _Builder:
    """Builds Python values from a composed node graph, recording positions and duplicate keys."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.doc = YamlDocument(value=None)
        self.diagnostics: list[Diagnostic] = []
        self.nodes_seen = 0
        self._constructor = yaml.SafeLoader("")
        self._active: set[int] = set()
        self.last_mark: yaml.Mark | None = None

    def build(self, node: yaml.Node, path: YamlPath) -> Any:
        self.nodes_seen += 1
        if self.nodes_seen > MAX_NODES:
            raise _BudgetExceeded
        if len(path) > MAX_DEPTH:
            raise _TooDeep
        # An alias shares the node object of its anchor, so the first visit wins the position.
        self.doc.positions.setdefault(path, _pos(node.start_mark))
        if node.tag not in _PLAIN_TAGS and node.tag != "tag:yaml.org,2002:merge":
            self._report_tag(node, path)
            if isinstance(node, yaml.ScalarNode):
                return node.value  # read as the text it is; the diagnostic makes the leaf invalid
        if isinstance(node, yaml.ScalarNode):
            if node.tag == _STR_TAG:  # most of a leaf; what SafeConstructor would return, without its overhead
                return node.value
            self.last_mark = node.start_mark
            return self._constructor.construct_object(node, deep=True)
        if id(node) in self._active:
            self.diagnostics.append(
                Diagnostic(
                    self.file,
                    *_pos_tuple(node.start_mark),
                    rule="yaml-syntax",
                    message="this node refers to itself through an alias; write the content out instead",
                    yaml_path=format_yaml_path(path),
                )
            )
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.build(child, (*path, index)) for index, child in enumerate(node.value)]
            if isinstance(node, yaml.MappingNode):
                return self._build_mapping(node, path)
        finally:
            self._active.discard(id(node))
        return None  # pragma: no cover - the three node kinds above are all there is

    def _report_tag(self, node: yaml.Node, path: YamlPath) -> None:
        from labtax.output import untrusted

        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        self.diagnostics.append(
            Diagnostic(
                self.file,
                *_pos_tuple(node.start_mark),
                rule="yaml-tag",
                message=f"YAML tag '{untrusted(tag, 60)}' is not allowed in a qna.yaml; remove it and write the "
                "value as plain text, a list or a mapping",
                yaml_path=format_yaml_path(path),
            )
        )

    def _build_mapping(self, node: yaml.MappingNode, path: YamlPath) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                self.diagnostics.append(
                    Diagnostic(
                        self.file,
                        *_pos_tuple(key_node.start_mark),
                        rule="yaml-syntax",
                        message="merge keys (<<) are not supported in qna.yaml; write the keys out",
                        yaml_path=format_yaml_path(path),
                    )
                )
                continue
            key = self.build(key_node, (*path, "<key>"))
            if not isinstance(key, str | int | float | bool) and key is not None:
                self.diagnostics.append(
                    Diagnostic(
                        self.file,
                        *_pos_tuple(key_node.start_mark),
                        rule="wrong-type",
                        message="a mapping key must be plain text",
                        yaml_path=format_yaml_path(path),
                    )
                )
                continue
            child_path = (*path, str(key))
            if key in result:
                first = self.doc.key_positions.get(child_path)
                where = f" (first defined on line {first.line})" if first else ""
                self.diagnostics.append(
                    Diagnostic(
                        self.file,
                        *_pos_tuple(key_node.start_mark),
                        rule="duplicate-key",
                        message=f"key '{key}' appears twice in the same mapping{where}; "
                        "YAML would silently keep only the last one, so remove or rename one",
                        yaml_path=format_yaml_path(child_path),
                    )
                )
                continue
            self.doc.key_positions[child_path] = _pos(key_node.start_mark)
            result[key] = self.build(value_node, child_path)
        self.doc.positions.pop((*path, "<key>"), None)
        return result


def load_yaml_text(text: str, file: str) -> tuple[YamlDocument | None, list[Diagnostic]]:
    """Parse one YAML document. Returns (None, diagnostics) when nothing usable could be read."""
    too_deep = [
        Diagnostic(
            file,
            1,
            1,
            rule="yaml-too-complex",
            message=f"the YAML nests more than {MAX_DEPTH} levels deep; a qna.yaml needs about 5",
        )
    ]
    try:
        if _nesting_exceeds(text, MAX_DEPTH):
            return None, too_deep
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        if _is_nesting_limit(exc):
            return None, too_deep
        return None, [_marked_error(exc, text, file)]
    except RecursionError:  # the pure-Python composer recurses once per level
        return None, too_deep
    except yaml.reader.ReaderError as exc:
        return None, [_reader_error(exc, text, file)]
    except yaml.YAMLError as exc:  # pragma: no cover - every libyaml error is one of the two above
        return None, [Diagnostic(file, 1, 1, rule="yaml-syntax", message=f"YAML error: {exc}")]
    if node is None:
        return YamlDocument(value=None, positions={(): Position(1, 1)}), []
    builder = _Builder(file)
    try:
        value = builder.build(node, ())
    except _BudgetExceeded:
        return None, [
            Diagnostic(
                file,
                1,
                1,
                rule="yaml-too-complex",
                message=f"the YAML expands to more than {MAX_NODES:,} nodes (anchors and aliases that "
                "multiply content); write the content out plainly",
            )
        ]
    except (_TooDeep, RecursionError):
        return None, too_deep
    except yaml.MarkedYAMLError as exc:  # a value that cannot be constructed: unknown tag, bad date
        return None, [_marked_error(exc, text, file)]
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
        where = _pos_tuple(builder.last_mark) if builder.last_mark else (1, 1)
        return None, [
            Diagnostic(
                file,
                *where,
                rule="yaml-syntax",
                message=f"this value cannot be read ({exc}); put it in quotes if it is text",
            )
        ]
    builder.doc.value = value
    return builder.doc, builder.diagnostics


def _nesting_exceeds(text: str, limit: int) -> bool:
    """Whether collections nest deeper than `limit`, measured on the event stream (iterative in libyaml)."""
    if sum(text.count(c) for c in "[{-?:") <= _DEPTH_SCAN_THRESHOLD:
        return False
    depth = 0
    try:
        for event in yaml.parse(text, Loader=_Loader):
            if isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
                depth += 1
                if depth > limit:
                    return True
            elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
                depth -= 1
    except yaml.MarkedYAMLError as exc:
        if _is_nesting_limit(exc):
            return True
        raise
    return False


def _is_nesting_limit(exc: yaml.MarkedYAMLError) -> bool:
    """libyaml 0.2.5 as bundled by PyYAML 6.0.3+ stops at 1,000 levels with its own error; older builds
    and the pure-Python loader do not. Either way it is the same finding as our own depth check."""
    return "maximum nesting depth" in (exc.problem or "")


def _marked_error(exc: yaml.MarkedYAMLError, text: str, file: str) -> Diagnostic:
    mark = exc.problem_mark or exc.context_mark
    line, column = _pos_tuple(mark) if mark else (1, 1)
    problem = exc.problem or "invalid YAML"
    if problem == "but found another document":
        problem = "the file holds a second YAML document (a second '---' line); a qna.yaml is one document"
    elif exc.context and exc.problem:
        problem = f"{exc.context}, {exc.problem}"
        if exc.context_mark and exc.problem_mark and exc.context_mark.line != exc.problem_mark.line:
            problem += f" (the construct starts on line {exc.context_mark.line + 1})"
    hint = _syntax_hint(text, line) or _problem_hint(exc.problem or "")
    return Diagnostic(file, line, column, rule="yaml-syntax", message=f"YAML syntax error: {problem}{hint}")


def _reader_error(exc: yaml.reader.ReaderError, text: str, file: str) -> Diagnostic:
    character = exc.character if isinstance(exc.character, str) else chr(exc.character)
    # libyaml reports a byte offset; the reader stops at the first such character, so find it instead.
    offset = max(text.find(character), 0)
    before = text[:offset]
    line = before.count("\n") + 1
    column = offset - (before.rfind("\n") + 1) + 1
    return Diagnostic(
        file,
        line,
        column,
        rule="yaml-syntax",
        message=f"control character U+{ord(character):04X} is not allowed in YAML; remove it",
    )


def _syntax_hint(text: str, line: int) -> str:
    lines = text.splitlines()
    if 0 < line <= len(lines) and "\t" in lines[line - 1]:
        return " (this line contains a tab: YAML indentation must use spaces)"
    return ""


# What to do about the YAML errors contributors meet most (PyYAML's problem text -> a hint).
_PROBLEM_HINTS = (
    (
        "mapping values are not allowed",
        "; a value holding ': ' must be quoted (answer: \"Three: fringing, barrier and atoll\") or written as a "
        "block (answer: | on its own line, the text indented below it)",
    ),
    (
        "expected '-' indicator",
        "; every item of this list starts with '- ' at the same indentation as the others: check the indentation "
        "of this line and the one above",
    ),
    (
        "could not find expected ':'",
        "; a key must be followed by ': ', and text that runs over several lines belongs in a block (key: |)",
    ),
    *(
        (problem, "; check the indentation of this line: it must line up with the keys or list items it belongs with")
        for problem in ("expected <block end>", "did not find expected key")
    ),
)


def _problem_hint(problem: str) -> str:
    return next((hint for text, hint in _PROBLEM_HINTS if text in problem), "")


def _pos(mark: yaml.Mark) -> Position:
    return Position(mark.line + 1, mark.column + 1)


def _pos_tuple(mark: yaml.Mark) -> tuple[int, int]:
    return mark.line + 1, mark.column + 1


_TRAILING_SPACE = re.compile(r"[ \t]+(?=\r?\n|\Z)")


def whitespace_diagnostics(text: str, file: str) -> Iterator[Diagnostic]:
    """Tabs, trailing spaces, line endings and the final newline: the checks InstructLab runs yamllint
    for (its errors under the `relaxed` configuration), done in-process. Only offending lines are visited,
    and positions come from one index of line starts, so a file full of findings stays linear."""
    lines = _LineIndex(text)
    if "\t" in text:
        # Lines as the other checks count them (split at LF only: str.splitlines would also split at a
        # form feed or U+2028 and put the finding on a line that does not exist; found by fuzzing).
        for number, text_line in enumerate(text.split("\n"), start=1):
            tab = text_line.find("\t")
            if tab >= 0:
                yield Diagnostic(
                    file,
                    number,
                    tab + 1,
                    rule="tab",
                    message="tab character; use spaces (YAML forbids tabs in indentation)",
                )
    # The regex tries every run of spaces in the text; a substring test first keeps clean files cheap.
    has_trailing = any(marker in text for marker in (" \n", "\t\n", " \r", "\t\r")) or text.endswith((" ", "\t"))
    for match in _TRAILING_SPACE.finditer(text) if has_trailing else ():
        line, column = lines.position(match.start())
        yield Diagnostic(
            file, line, column, rule="trailing-space", message="trailing whitespace at the end of the line; remove it"
        )
    carriage_return = text.find("\r")
    if carriage_return >= 0:
        line, column = lines.position(carriage_return)
        yield Diagnostic(
            file,
            line,
            column,
            rule="line-endings",
            message="Windows line endings (CRLF); save the file with Unix line endings (LF)",
            # A warning: InstructLab reads the file with universal newlines and accepts it.
            severity=Severity.WARNING,
        )
    if text and not text.endswith("\n"):
        line, column = lines.position(len(text))
        yield Diagnostic(
            file, line, column, rule="final-newline", message="the file does not end with a newline; add one"
        )


class _LineIndex:
    """1-based line and column of character offsets; the line starts are found once, when first needed."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.starts: list[int] | None = None

    def position(self, offset: int) -> tuple[int, int]:
        import bisect

        if self.starts is None:
            self.starts = [0, *(match.end() for match in re.finditer("\n", self.text))]
        line = bisect.bisect_right(self.starts, offset)
        return line, offset - self.starts[line - 1] + 1
