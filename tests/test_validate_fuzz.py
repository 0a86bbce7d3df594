"""Property-based fuzzing of the validator's loader (hypothesis): whatever bytes a contribution holds,
labtax answers with diagnostics that point inside the file, never with an exception, and a leaf it builds
always has a hash. Examples are bounded so the suite stays fast; the YAML-shaped strategy reaches past the
parser into the schema and the rules."""

from __future__ import annotations

import os
import re
import string

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labtax.config import load_config
from labtax.errors import Diagnostic
from labtax.output import Format, render
from labtax.taxonomy.load import load_yaml_text, whitespace_diagnostics
from labtax.validate import validate_leaf_file

# Deterministic in the suite (the same examples on every run, no example database written into the
# working tree); LABTAX_FUZZ_EXAMPLES=5000 explores further, with fresh random examples.
_EXAMPLES = int(os.environ.get("LABTAX_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=_EXAMPLES or 150,
    derandomize=not _EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

# Pieces that make YAML interesting: indicators, tags, anchors, aliases, quotes, block scalars, controls.
YAML_PIECES = st.sampled_from(
    [
        "version: 3\n",
        "created_by: x\n",
        "seed_examples:\n",
        "  - question: q\n",
        "    answer: a\n",
        "  - context: |\n      text\n",
        "task_description: t\n",
        "document:\n  repo: r\n  commit: c\n",
        ": ",
        "- ",
        "? ",
        "&a ",
        "*a",
        "!!python/object:os.system ",
        "!tag ",
        "!!binary ",
        "<<: *a\n",
        "'",
        '"',
        "|\n",
        ">\n",
        "[",
        "]",
        "{",
        "}",
        ",",
        "#",
        "\t",
        "\r\n",
        "\n",
        "  ",
        "---\n",
        "...\n",
        "\x00",
        "\x1b[31m",
        "\u202e",
        "\ufeff",
        "2024-13-45",
        "0x1F",
        ".inf",
        "~",
        "null",
        "yes",
    ]
)
YAML_TEXT = st.lists(st.one_of(YAML_PIECES, st.text(string.printable, max_size=8)), max_size=40).map("".join)


def _inside(diagnostic: Diagnostic, text: str) -> bool:
    # YAML (and editors) also break lines at a lone CR, NEL and the Unicode line separators.
    lines = len(re.split("\r\n|[\r\n\x85\u2028\u2029]", text))
    return 1 <= diagnostic.line <= lines + 1 and diagnostic.column >= 1


@FUZZ
@given(YAML_TEXT)
def test_loader_never_raises_and_points_inside_the_file(text: str) -> None:
    document, diagnostics = load_yaml_text(text, "qna.yaml")
    diagnostics += list(whitespace_diagnostics(text, "qna.yaml"))
    for diagnostic in diagnostics:
        assert _inside(diagnostic, text), (diagnostic, text)
        assert diagnostic.rule and diagnostic.message
    if document is not None and isinstance(document.value, dict):
        for path in document.positions:
            assert document.position(path).line >= 1


@FUZZ
@given(st.binary(max_size=300))
def test_any_bytes_as_a_leaf_give_diagnostics_not_exceptions(tmp_path_factory: object, data: bytes) -> None:
    root = tmp_path_factory.mktemp("fuzz")  # type: ignore[attr-defined]
    (root / "pyproject.toml").write_text('[tool.labtax]\ntaxonomy = "."\n')
    leaf = root / "compositional_skills" / "fuzz" / "qna.yaml"
    leaf.parent.mkdir(parents=True)
    leaf.write_bytes(data)
    config = load_config(start=root)
    built, diagnostics = validate_leaf_file(config, leaf)
    assert built is not None or diagnostics
    # Whatever the bytes, each finding renders as exactly one line of inert text.
    for line in render(diagnostics, Format.TEXT).splitlines():
        assert "\x1b" not in line and "\r" not in line


@FUZZ
@given(YAML_TEXT)
def test_yaml_shaped_leaves_through_schema_and_rules(tmp_path_factory: object, text: str) -> None:
    root = tmp_path_factory.mktemp("fuzz")  # type: ignore[attr-defined]
    (root / "pyproject.toml").write_text('[tool.labtax]\ntaxonomy = "."\n')
    leaf = root / "knowledge" / "fuzz" / "qna.yaml"
    leaf.parent.mkdir(parents=True)
    leaf.write_text(text, encoding="utf-8", errors="surrogatepass")
    built, diagnostics = validate_leaf_file(load_config(start=root), leaf)
    if built is not None:
        assert len(built.leaf_hash) == 64
    assert all(_inside(d, text) for d in diagnostics if d.file.endswith("qna.yaml")), diagnostics


@FUZZ
@given(
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20)),
        lambda children: st.one_of(
            st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4)
        ),
        max_leaves=30,
    )
)
def test_any_yaml_value_round_trips_to_the_same_content(value: object) -> None:
    """What PyYAML writes, labtax reads back as the same value (no tag, alias or position trick changes it)."""
    text = yaml.safe_dump({"value": value}, allow_unicode=True)
    document, diagnostics = load_yaml_text(text, "qna.yaml")
    assert document is not None, diagnostics
    assert [d for d in diagnostics if d.rule != "duplicate-key"] == []
    if not diagnostics:
        assert document.value == yaml.safe_load(text)
