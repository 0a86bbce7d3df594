"""Every rule id of `labtax validate`, each on a minimal leaf, with its exact file:line:column."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from labtax.errors import Severity
from labtax.taxonomy import load
from labtax.taxonomy.load import YamlDocument, load_yaml_text
from labtax.validate.rules import RULE_IDS
from labtax.validate.schema import _translate
from test_validate_support import ATTRIBUTION, Project, knowledge_yaml, make_project, run_cli, skill_yaml


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_project(tmp_path / "project")


def test_valid_leaves_have_no_findings(project: Project) -> None:
    tree = project.documents()
    project.leaf("knowledge/testing/notes", knowledge_yaml(tree))
    project.leaf("compositional_skills/answers", skill_yaml())
    project.leaf("foundational_skills/reasoning", skill_yaml())
    result = project.validate(check_documents=True)
    assert result.diagnostics == []
    assert result.files_checked == 3
    assert sorted(leaf.path for leaf in result.leaves) == [
        "compositional_skills/answers/qna.yaml",
        "foundational_skills/reasoning/qna.yaml",
        "knowledge/testing/notes/qna.yaml",
    ]


# --- YAML syntax and lint -------------------------------------------------------------------------


def test_yaml_syntax_points_at_the_problem(project: Project) -> None:
    file = project.leaf("compositional_skills/a", "version: 3\nseed_examples: [\n  - question: x\n")
    [diagnostic] = project.validate().diagnostics
    assert (diagnostic.file, diagnostic.line, diagnostic.rule) == (file, 3, "yaml-syntax")
    assert diagnostic.message.startswith("YAML syntax error:")


def test_common_yaml_mistakes_say_what_to_do(project: Project) -> None:
    """An unquoted ': ' in an answer and a mis-indented seed, as contributors write them: the message says
    how to write it (the fix lived only in docs/rules.md)."""
    seed = "  - question: What are the three kinds of reef?\n    answer: {answer}\n"
    colon = project.leaf(
        "compositional_skills/colon", "version: 3\nseed_examples:\n" + seed.format(answer="Three: fringing and atoll")
    )
    indent = project.leaf(
        "compositional_skills/indent",
        "version: 3\nseed_examples:\n" + seed.format(answer="Three.") + " - question: Why?\n   answer: Warmth.\n",
    )
    messages = {d.file: (d.line, d.message) for d in project.only(rule="yaml-syntax")}
    line, message = messages[colon]
    assert line == 4 and "must be quoted" in message and "answer: |" in message
    line, message = messages[indent]
    assert line == 5 and "check the indentation of this line" in message


def test_tab_indentation_is_a_syntax_error_with_a_hint(project: Project) -> None:
    file = project.leaf("compositional_skills/a", "version: 3\nseed_examples:\n\t- question: x\n")
    findings = project.findings()
    assert (file, 3, 1, "tab") in findings
    [syntax] = project.only(rule="yaml-syntax")
    assert syntax.line == 3 and "tab" in syntax.message and "spaces" in syntax.message


def test_tab_inside_a_value(project: Project) -> None:
    file = project.leaf("compositional_skills/a", skill_yaml().replace("Answer short questions.", '"Answer\\tshort"'))
    assert project.findings() == []  # an escaped tab is fine
    project.leaf("compositional_skills/a", skill_yaml().replace("Answer short questions.", '"Answer\tshort"'))
    [tab] = project.only(rule="tab")
    assert (tab.file, tab.line, tab.column, tab.severity) == (file, 3, 26, Severity.ERROR)


def test_trailing_space_is_an_error_as_in_instructlab(project: Project) -> None:
    file = project.leaf("compositional_skills/a", skill_yaml().replace("created_by: tester", "created_by: tester   "))
    result = project.validate()
    assert [(d.file, d.line, d.column, d.rule, d.severity) for d in result.diagnostics] == [
        (file, 2, 19, "trailing-space", Severity.ERROR)
    ]
    assert result.diagnostics[0].message == "trailing whitespace at the end of the line; remove it"


def test_line_endings_and_final_newline(project: Project) -> None:
    crlf = project.leaf("compositional_skills/crlf", skill_yaml().replace("\n", "\r\n"))
    no_newline = project.leaf("compositional_skills/no_newline", skill_yaml().rstrip("\n"))
    assert project.findings() == [(crlf, 1, 11, "line-endings"), (no_newline, 14, 29, "final-newline")]
    diagnostics = project.validate().diagnostics
    assert [d.severity for d in diagnostics] == [Severity.WARNING, Severity.ERROR]
    messages = [d.message for d in diagnostics]
    assert messages == [
        "Windows line endings (CRLF); save the file with Unix line endings (LF)",
        "the file does not end with a newline; add one",
    ]


def test_duplicate_key_is_an_error_naming_the_first(project: Project) -> None:
    text = skill_yaml().replace("created_by: tester\n", "created_by: tester\ncreated_by: someone\n")
    file = project.leaf("compositional_skills/a", text)
    [duplicate] = project.validate().diagnostics
    assert (duplicate.file, duplicate.line, duplicate.column, duplicate.rule) == (file, 3, 1, "duplicate-key")
    assert duplicate.yaml_path == ".created_by"
    assert "'created_by' appears twice" in duplicate.message and "line 2" in duplicate.message


def test_duplicate_key_in_a_seed(project: Project) -> None:
    text = skill_yaml().replace("    answer: Answer number 2.\n", "    answer: Answer number 2.\n    answer: Other.\n")
    project.leaf("compositional_skills/a", text)
    [duplicate] = project.validate().diagnostics
    assert (duplicate.line, duplicate.column, duplicate.rule) == (9, 5, "duplicate-key")
    assert duplicate.yaml_path == ".seed_examples[1].answer"


def test_alias_bomb_is_too_complex(project: Project) -> None:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for index in range(1, 10):
        lines.append(f"{chr(97 + index)}: &{chr(97 + index)} [{', '.join(['*' + chr(96 + index)] * 9)}]")
    file = project.leaf("compositional_skills/a", "\n".join(lines) + "\n")
    assert project.findings() == [(file, 1, 1, "yaml-too-complex")]
    assert "anchors and aliases" in project.validate().diagnostics[0].message


@pytest.mark.parametrize("loader", ["libyaml", "pure-python"])
def test_deep_nesting_is_too_complex_not_a_crash(
    project: Project, loader: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # libyaml as bundled by PyYAML >= 6.0.3 stops at 1,000 levels with an error of its own; older builds
    # and the pure-Python loader do not. Every depth past ours is the same finding whichever one runs.
    if loader == "pure-python":
        monkeypatch.setattr(load, "_Loader", yaml.SafeLoader)
    files = {
        "deep": "a: " + "[" * 60_000 + "]" * 60_000 + "\n",  # past libyaml's limit and past our event scan
        "medium": "a: " + "[" * 1_500 + "]" * 1_500 + "\n",  # past libyaml's limit, below the event-scan threshold
        "nested": "a: " + "[" * 70 + "]" * 70 + "\n",  # past ours only
        "blocks": "a:\n  " + "- " * 1_200 + "x\n",  # block sequences, nested on one line
    }
    for name, text in files.items():
        project.leaf(f"compositional_skills/{name}", text)
    assert sorted(project.findings()) == sorted(
        (f"taxonomy/compositional_skills/{name}/qna.yaml", 1, 1, "yaml-too-complex") for name in files
    )


def test_recursive_alias_and_merge_keys(project: Project) -> None:
    project.leaf("compositional_skills/a", "version: 3\nx: &x\n  y: *x\n<<: {z: 1}\n")
    syntax = project.only(rule="yaml-syntax")
    assert [(d.line, d.column) for d in syntax] == [(2, 4), (4, 1)]  # the anchored node, then the merge key
    assert "refers to itself" in syntax[0].message and "merge keys" in syntax[1].message


def test_python_tags_and_control_characters_are_refused(project: Project) -> None:
    project.leaf("compositional_skills/a", "version: 3\ncreated_by: !!python/object:os.system x\n")
    project.leaf("compositional_skills/b", "version: 3\ncreated_by: é€a\x00b\n")
    project.leaf("compositional_skills/c", "version: 3\ncreated_by: 2024-13-45\n")
    findings = [(d.file.split("/")[2], d.line, d.column, d.rule) for d in project.only(rule="yaml-syntax")]
    assert findings == [("b", 2, 16, "yaml-syntax"), ("c", 2, 13, "yaml-syntax")]
    messages = [d.message for d in project.only(rule="yaml-syntax")]
    assert "U+0000" in messages[0] and "quotes" in messages[1]
    [tag] = project.only(rule="yaml-tag")
    assert (tag.file.split("/")[2], tag.line, tag.column) == ("a", 2, 13)
    assert "'!!python/object:os.system' is not allowed" in tag.message


@pytest.mark.parametrize(
    "value",
    [
        "!!python/object/apply:os.system [echo hi]",  # a mapping or sequence tag was silently dropped before
        "!!python/object:builtins.dict {a: 1}",
        "!include other.yaml",
        "!!binary aGVsbG8=",
        "!!set {a, b}",
        "!custom {question: x}",
    ],
)
def test_yaml_tags_are_errors(project: Project, value: str) -> None:
    project.leaf("compositional_skills/a", skill_yaml().replace("created_by: tester", f"created_by: {value}"))
    result = project.validate()
    assert [(d.line, d.column, d.rule, d.severity) for d in result.diagnostics if d.rule == "yaml-tag"] == [
        (2, 13, "yaml-tag", Severity.ERROR)
    ]
    assert result.errors >= 1


def test_two_documents_in_one_file(project: Project) -> None:
    project.leaf("compositional_skills/a", "version: 3\n---\nversion: 3\n")
    [diagnostic] = project.validate().diagnostics
    assert (diagnostic.line, diagnostic.rule) == (2, "yaml-syntax") and "second YAML document" in diagnostic.message


# --- schema ---------------------------------------------------------------------------------------


def test_unknown_key_suggests_the_closest(project: Project) -> None:
    file = project.leaf("compositional_skills/a", skill_yaml().replace("task_description:", "task_descripton:"))
    assert project.findings() == [(file, 1, 1, "missing-key"), (file, 3, 1, "unknown-key")]
    [unknown] = project.only(rule="unknown-key")
    assert unknown.message == "unknown key 'task_descripton'; did you mean 'task_description'?"
    assert unknown.yaml_path == ".task_descripton"


def test_unknown_key_without_a_close_match_lists_the_allowed(project: Project) -> None:
    project.leaf("compositional_skills/a", skill_yaml() + "zzz: 1\n")
    [unknown] = project.only(rule="unknown-key")
    assert (
        unknown.line == 15
        and "allowed keys here: version, created_by, task_description, seed_examples" in unknown.message
    )


def test_missing_key_in_a_seed_points_at_the_seed(project: Project) -> None:
    file = project.leaf("compositional_skills/a", skill_yaml().replace("    answer: Answer number 3.\n", ""))
    [missing] = project.validate().diagnostics
    assert (missing.file, missing.line, missing.column, missing.rule) == (file, 9, 5, "missing-key")
    assert missing.message == "'answer' is missing from seed example 3; add it"
    assert missing.yaml_path == ".seed_examples[2]"


def test_wrong_types_everywhere(project: Project) -> None:
    text = "version: 3\ncreated_by: [1]\ntask_description: {a: 1}\nseed_examples: 5\n"
    file = project.leaf("compositional_skills/a", text)
    assert project.findings() == [(file, 2, 13, "wrong-type"), (file, 3, 19, "wrong-type"), (file, 4, 16, "wrong-type")]
    messages = [d.message for d in project.validate().diagnostics]
    assert (
        messages[0]
        == "'created_by' must be text, but it is a list (put text on the same line, or use '|' for several lines)"
    )
    assert messages[2] == "'seed_examples' must be a list, but it is a number"


def test_wrong_type_of_a_nested_answer_and_a_date(project: Project) -> None:
    text = (
        skill_yaml()
        .replace("answer: Answer number 2.", "answer: 42")
        .replace("created_by: tester", "created_by: 2024-01-01")
    )
    project.leaf("compositional_skills/a", text)
    wrong = project.only(rule="wrong-type")
    assert [(d.line, d.column, d.yaml_path) for d in wrong] == [
        (2, 13, ".created_by"),
        (8, 13, ".seed_examples[1].answer"),
    ]
    assert "a date (put it in quotes" in wrong[0].message
    assert wrong[1].message.startswith("'answer' of seed example 2 must be text, but it is a number")


def test_non_text_mapping_key(project: Project) -> None:
    project.leaf("compositional_skills/a", skill_yaml() + "? [a, b]\n: c\n")
    [wrong] = project.only(rule="wrong-type")
    assert (wrong.line, wrong.column) == (15, 3) and "plain text" in wrong.message


def test_too_few_seed_examples_says_how_many(project: Project) -> None:
    file = project.leaf("compositional_skills/a", skill_yaml(count=3))
    [few] = project.validate().diagnostics
    assert (few.file, few.line, few.column, few.rule) == (file, 5, 3, "too-few-items")
    assert few.message == "'seed_examples' has 3 seed examples; at least 5 are needed"


def test_too_few_question_answer_pairs(project: Project) -> None:
    tree = project.documents()
    text = knowledge_yaml(tree)
    text = text.replace("      - question: Question 3 about paragraph 2?\n        answer: Answer 3.\n", "", 1)
    project.leaf("knowledge/k", text)
    [few] = project.validate().diagnostics
    assert (few.line, few.column, few.rule) == (21, 7, "too-few-items")
    assert few.message == "'questions_and_answers' of seed example 2 has 2 question/answer pairs; at least 3 are needed"


def test_empty_value(project: Project) -> None:
    file = project.leaf("compositional_skills/a", skill_yaml().replace("created_by: tester", 'created_by: ""'))
    assert project.findings() == [(file, 2, 13, "empty-value")]
    assert project.validate().diagnostics[0].message == "'created_by' is empty; write something here"


def test_duplicate_seed_example(project: Project) -> None:
    text = skill_yaml().replace("number 2?", "number 1?").replace("Answer number 2.", "Answer number 1.")
    file = project.leaf("compositional_skills/a", text)
    assert project.findings() == [(file, 7, 5, "duplicate-item"), (file, 7, 15, "duplicate-question")]
    [duplicate] = project.only(rule="duplicate-item")
    assert duplicate.message == "seed example 2 is the same as seed example 1; remove the copy or change it"


def test_bad_version(project: Project) -> None:
    file = project.leaf("compositional_skills/a", skill_yaml().replace("version: 3", "version: 7"))
    project.leaf("compositional_skills/b", skill_yaml().replace("version: 3", 'version: "3"'))
    project.leaf("compositional_skills/c", skill_yaml().replace("version: 3", "version: true"))
    versions = project.only(rule="bad-version")
    assert [(d.file, d.line, d.column) for d in versions] == [
        (file, 1, 10),
        ("taxonomy/compositional_skills/b/qna.yaml", 1, 10),
        ("taxonomy/compositional_skills/c/qna.yaml", 1, 10),
    ]
    assert versions[0].message == "version 7 is not a known qna.yaml version; use 3 (supported: 1, 2, 3)"
    assert versions[1].message == "version must be a number, not text: write 'version: 3' without quotes"
    assert versions[2].message == "version true is not a known qna.yaml version; use 3 (supported: 1, 2, 3)"


def test_deprecated_knowledge_version_explains_the_upgrade(project: Project) -> None:
    file = project.leaf("knowledge/k", "version: 2\ncreated_by: tester\ndomain: x\n")
    [deprecated] = project.validate().diagnostics
    assert (deprecated.file, deprecated.line, deprecated.column, deprecated.rule) == (file, 1, 10, "deprecated-version")
    assert deprecated.severity is Severity.ERROR
    assert "set `version: 3`" in deprecated.message and "document_outline" in deprecated.message


def test_old_skill_version_is_a_warning(project: Project) -> None:
    file = project.leaf("compositional_skills/a", skill_yaml(version=2))
    result = project.validate()
    assert [(d.file, d.line, d.rule, d.severity) for d in result.diagnostics] == [
        (file, 1, "deprecated-version", Severity.WARNING)
    ]
    assert "set 'version: 3'" in result.diagnostics[0].message


def test_schema_fallback_rule_for_unexpected_keywords() -> None:
    # The shipped schemas use only keywords that have their own rule; any other keyword (a future schema
    # edit) still becomes a readable diagnostic under the generic 'schema' rule.
    from jsonschema import Draft202012Validator

    doc, _ = load_yaml_text("created_by: tester\n", "qna.yaml")
    assert isinstance(doc, YamlDocument)
    [error] = Draft202012Validator({"properties": {"created_by": {"maxLength": 2}}}).iter_errors(doc.value)
    [diagnostic] = _translate(error, doc, "qna.yaml")
    assert (diagnostic.line, diagnostic.column, diagnostic.rule) == (1, 13, "schema")
    assert diagnostic.message.startswith("'created_by': ")


# --- file name and place --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["qna.yml", "QNA.yaml", "Qna.yaml", "qna.yaml.txt", "qna_v2.yaml", "qna.json"])
def test_look_alike_names_are_errors(project: Project, name: str) -> None:
    project.write(f"taxonomy/compositional_skills/a/{name}", skill_yaml())
    [diagnostic] = project.validate().diagnostics
    assert (diagnostic.file, diagnostic.rule) == (f"taxonomy/compositional_skills/a/{name}", "file-name")
    assert "rename it to 'qna.yaml'" in diagnostic.message


def test_directory_named_qna_yaml(project: Project) -> None:
    (project.root / "taxonomy/compositional_skills/a/qna.yaml").mkdir(parents=True)
    project.leaf("compositional_skills/b", skill_yaml())
    assert project.findings() == [("taxonomy/compositional_skills/a/qna.yaml", 1, 1, "file-name")]
    # Passed explicitly (as a shell glob would), the same.
    assert project.findings("taxonomy/compositional_skills/a/qna.yaml") == [
        ("taxonomy/compositional_skills/a/qna.yaml", 1, 1, "file-name")
    ]


def test_leaf_outside_a_branch(project: Project) -> None:
    file = project.leaf("skills/a", skill_yaml())
    [place] = project.validate().diagnostics
    assert (place.file, place.rule) == (file, "leaf-place")
    assert "knowledge/, foundational_skills/ or compositional_skills/" in place.message


def test_leaf_outside_the_taxonomy_root(project: Project) -> None:
    project.write("docs/compositional_skills/a/qna.yaml", skill_yaml())
    project.write("docs/compositional_skills/a/attribution.txt", ATTRIBUTION)
    assert project.findings("docs") == [("docs/compositional_skills/a/qna.yaml", 1, 1, "leaf-place")]


# --- contribution limits and duplicates -----------------------------------------------------------


def test_context_too_long(project: Project) -> None:
    tree = project.documents()
    long_context = " ".join(["word"] * 501)
    text = knowledge_yaml(tree).replace("Context paragraph number 2 about testing.", long_context)
    file = project.leaf("knowledge/k", text)
    [too_long] = project.validate().diagnostics
    assert (too_long.file, too_long.line, too_long.column, too_long.rule) == (file, 19, 14, "context-too-long")
    assert too_long.message == "this context has 501 words; the limit for knowledge leaves is 500: shorten it"
    assert too_long.yaml_path == ".seed_examples[1].context"


def test_qna_too_long(project: Project) -> None:
    tree = project.documents()
    long_answer = " ".join(["word"] * 246)  # + 5 words of question = 251
    file = project.leaf("knowledge/k", knowledge_yaml(tree).replace("answer: Answer 2.", f"answer: {long_answer}", 1))
    [too_long] = project.validate().diagnostics
    assert (too_long.file, too_long.line, too_long.column, too_long.rule) == (file, 15, 9, "qna-too-long")
    assert too_long.message == (
        "this question and answer have 251 words together; the limit for knowledge leaves is 250: shorten them"
    )


def test_seed_too_long(project: Project) -> None:
    tree = project.documents()
    text = knowledge_yaml(tree).replace("Context paragraph number 1 about testing.", " ".join(["c"] * 400))
    for pair in range(1, 4):
        text = text.replace(f"answer: Answer {pair}.", "answer: " + " ".join(["a"] * 120), 1)
    file = project.leaf("knowledge/k", text)
    [too_long] = project.validate().diagnostics
    assert (too_long.file, too_long.line, too_long.column, too_long.rule) == (file, 11, 5, "seed-too-long")
    assert too_long.message.startswith("seed example 1 has 775 words in all")
    assert "the limit for knowledge leaves is 750" in too_long.message


def test_limits_are_configurable(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", extra_toml="[tool.labtax.limits]\nqna_words = 6\n")
    project.leaf("compositional_skills/a", skill_yaml().replace("Answer number 4.", "one two three four"))
    assert [d.line for d in project.only(rule="qna-too-long")] == [11]


def test_limits_per_kind_and_branch(tmp_path: Path) -> None:
    toml = (
        "[tool.labtax.limits]\n"
        "freeform_skill = { qna_words = 6 }\n"
        "foundational_skills = { qna_words = 8 }\n"
        "knowledge = { context_words = 0, seed_words = 0 }\n"
    )
    project = make_project(tmp_path / "p", extra_toml=toml)
    seven = skill_yaml().replace("Answer number 4.", "one two three four")  # 3 + 4 words
    project.leaf("compositional_skills/a", seven)
    project.leaf("foundational_skills/a", seven)
    found = [(d.file.split("/")[1], d.line) for d in project.only(rule="qna-too-long")]
    assert found == [("compositional_skills", 11)]
    tree = project.documents()
    long_context = " ".join(["word"] * 900)
    project.leaf("knowledge/k", knowledge_yaml(tree).replace("Context paragraph number 2 about testing.", long_context))
    assert project.only(rule="context-too-long") == [] and project.only(rule="seed-too-long") == []


def test_limit_settings_are_checked(tmp_path: Path) -> None:
    for toml, words in [
        ("[tool.labtax.limits]\nqna_word = 6\n", "no setting 'qna_word'"),
        ("[tool.labtax.limits]\nskills = { qna_words = 6 }\n", "neither a kind"),
        ("[tool.labtax.limits]\nqna_words = -1\n", "whole number"),
    ]:
        project = make_project(tmp_path / str(abs(hash(toml))), extra_toml=toml)
        result = run_cli(project.root, "validate")
        assert result.returncode == 2 and words in result.stderr, result.stderr


def test_duplicate_question_ignores_case_and_spacing(project: Project) -> None:
    tree = project.documents()
    text = knowledge_yaml(tree).replace("Question 2 about paragraph 3?", "question 1   ABOUT paragraph 3?")
    file = project.leaf("knowledge/k", text)
    [duplicate] = project.validate().diagnostics
    assert (duplicate.file, duplicate.line, duplicate.column, duplicate.rule) == (file, 31, 19, "duplicate-question")
    assert duplicate.message == (
        "this question repeats the one on line 29 over the same context; ask something different"
    )


# --- document references --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("repo", "line", "column"),
    [("/abs/documents", 6, 9), ("../outside", 6, 9), ("~/documents", 6, 9)],
)
def test_document_repo_must_be_a_url_or_a_relative_path(project: Project, repo: str, line: int, column: int) -> None:
    file = project.leaf("knowledge/k", knowledge_yaml("a" * 40, repo=repo))
    [bad] = project.validate().diagnostics
    assert (bad.file, bad.line, bad.column, bad.rule) == (file, line, column, "document-repo")
    assert "neither a git URL" in bad.message


def test_document_repo_missing(project: Project) -> None:
    text = knowledge_yaml("a" * 40).replace("  repo: documents/notes\n", "  folder: /data/docs\n")
    file = project.leaf("knowledge/k", text)
    [missing] = project.validate().diagnostics
    assert (missing.file, missing.line, missing.column, missing.rule) == (file, 6, 3, "document-repo")
    assert "not reproducible" in missing.message


@pytest.mark.parametrize("commit", ["main", "abc1234", "g" * 40])
def test_document_commit_must_be_a_full_sha(project: Project, commit: str) -> None:
    file = project.leaf("knowledge/k", knowledge_yaml(commit, repo="https://example.com/docs.git"))
    [bad] = project.validate().diagnostics
    assert (bad.file, bad.line, bad.column, bad.rule) == (file, 7, 11, "document-commit")
    assert "full 40-character commit SHA" in bad.message


def test_document_commit_missing_for_a_local_directory(project: Project) -> None:
    file = project.leaf("knowledge/k", knowledge_yaml("x").replace("  commit: x\n", ""))
    [missing] = project.validate().diagnostics
    assert (missing.file, missing.line, missing.rule) == (file, 6, "document-commit")


def test_short_local_pin_names_the_git_tree_id(project: Project) -> None:
    project.documents()
    project.leaf("knowledge/k", knowledge_yaml("abcdef1"))
    [bad] = project.only(rule="document-commit")
    assert "git tree id of the directory" in bad.message


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("/etc/*", "is absolute"),
        ("~/notes/*.md", "is absolute"),
        ("../*.md", "climbs out of the documents with '..'"),
        ("**/../../*", "climbs out of the documents with '..'"),
    ],
)
def test_document_patterns_stay_inside_the_documents(project: Project, pattern: str, problem: str) -> None:
    tree = project.documents()
    file = project.leaf("knowledge/k", knowledge_yaml(tree).replace("'*.md'", f'"{pattern}"'))
    [bad] = project.validate(check_documents=True).diagnostics  # and never resolved: no crash, no document-check
    assert (bad.file, bad.line, bad.column, bad.rule) == (file, 9, 7, "document-pattern")
    assert bad.message.startswith(f"pattern '{pattern}' {problem}")


def test_unsafe_document_repo_is_never_resolved(project: Project) -> None:
    # '/' with '**/*' would read the whole disk into the leaf hash if it were resolved.
    project.leaf("knowledge/k", knowledge_yaml("a" * 40, repo="/").replace("'*.md'", '"**/*"'))
    result = project.validate(check_documents=True)
    assert [d.rule for d in result.diagnostics] == ["document-repo"]


# --- attribution ----------------------------------------------------------------------------------


def test_attribution_missing(project: Project) -> None:
    project.leaf("compositional_skills/a", skill_yaml(), attribution=None)
    assert project.findings() == [("taxonomy/compositional_skills/a/attribution.txt", 1, 1, "attribution-missing")]
    assert (
        "Title of work, Link to work, Revision, License of the work, Creator names"
        in project.validate().diagnostics[0].message
    )


def test_attribution_unreadable(project: Project) -> None:
    project.leaf("compositional_skills/a", skill_yaml(), attribution=None)
    project.write("taxonomy/compositional_skills/a/attribution.txt", b"Title of work: caf\xe9\n")
    project.leaf("compositional_skills/b", skill_yaml(), attribution=None)
    with (project.root / "taxonomy/compositional_skills/b/attribution.txt").open("wb") as handle:
        handle.truncate(10 * 1024 * 1024)
    findings = project.validate().diagnostics
    assert [(d.file.split("/")[2], d.rule) for d in findings] == [
        ("a", "attribution-missing"),
        ("b", "attribution-missing"),
    ]
    assert "is not UTF-8 text" in findings[0].message
    assert "is larger than 64 KiB" in findings[1].message


def test_attribution_fifo_is_refused_at_once(tmp_path: Path) -> None:
    """A FIFO named attribution.txt used to block validation forever (open() waits for a writer)."""
    project = make_project(tmp_path / "p")
    project.leaf("compositional_skills/a", skill_yaml(), attribution=None)
    os.mkfifo(project.root / "taxonomy/compositional_skills/a/attribution.txt")
    # In a fresh process with a timeout: a hang fails the test instead of stalling the suite.
    result = run_cli(project.root, "validate", fresh_process=True, timeout=60)
    assert result.returncode == 1
    assert (
        "taxonomy/compositional_skills/a/attribution.txt:1:1: error [unreadable] attribution.txt was not read: "
        "this is a FIFO (named pipe), not a regular file" in result.stdout
    )


def test_attribution_symlink_is_never_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("License of the work: HF_TOKEN=hf_secret\n")
    project = make_project(tmp_path / "p")
    project.leaf("compositional_skills/a", skill_yaml(), attribution=None)
    (project.root / "taxonomy/compositional_skills/a/attribution.txt").symlink_to(secret)
    result = project.validate()
    [finding] = result.diagnostics
    assert (finding.rule, finding.file) == ("unreadable", "taxonomy/compositional_skills/a/attribution.txt")
    assert "symbolic link" in finding.message
    assert result.leaves[0].attribution is None  # nothing of the target was read into the leaf
    assert "hf_secret" not in repr(result.leaves[0])


def test_qna_yaml_symlink_inside_the_repository_is_not_followed(project: Project) -> None:
    project.leaf("compositional_skills/real", skill_yaml())
    (project.root / "taxonomy/compositional_skills/link").mkdir()
    (project.root / "taxonomy/compositional_skills/link/qna.yaml").symlink_to(
        project.root / "taxonomy/compositional_skills/real/qna.yaml"
    )
    project.write("taxonomy/compositional_skills/link/attribution.txt", ATTRIBUTION)
    assert project.findings() == [("taxonomy/compositional_skills/link/qna.yaml", 1, 1, "symlink")]


def test_attribution_fields(project: Project) -> None:
    attribution = ATTRIBUTION.replace("Revision: n/a\n", "").replace("Creator names: Test Author", "Creator names:")
    project.leaf("compositional_skills/a", skill_yaml(), attribution=attribution)
    fields = project.only(rule="attribution-field")
    assert [(d.file, d.line) for d in fields] == [
        ("taxonomy/compositional_skills/a/attribution.txt", 1),
        ("taxonomy/compositional_skills/a/attribution.txt", 4),
    ]
    assert [d.message for d in fields] == [
        "'Revision:' line is missing; add it with a value (where possible: a date, version or commit of the work)",
        "'Creator names' is empty; fill it in",
    ]
    # InstructLab asks for the revision "where possible": a missing one is a warning.
    assert [d.severity for d in fields] == [Severity.WARNING, Severity.ERROR]


@pytest.mark.parametrize(
    ("licence", "hint"),
    [
        ("GPL-3.0", "not a licence labtax recognises; write its SPDX id (allowed here: CC0-1.0, CDLA-Permissive-2.0"),
        ("CC BY-NC 4.0", "(CC-BY-NC-4.0) is not allowed: it forbids commercial use (NC)"),
        ("CC-BY-ND-4.0", "it forbids derivative works (ND)"),
        ("Creative Commons Attribution-NonCommercial-ShareAlike 4.0 International", "(CC-BY-NC-SA-4.0)"),
        ("BSD-3-Clause", "(BSD-3-Clause) is not on this repository's allow-list"),
    ],
)
def test_attribution_licence_allow_list(project: Project, licence: str, hint: str) -> None:
    project.leaf("compositional_skills/a", skill_yaml(), attribution=ATTRIBUTION.replace("CC-BY-4.0", licence))
    [bad] = project.validate().diagnostics
    assert (bad.file, bad.line, bad.rule) == (
        "taxonomy/compositional_skills/a/attribution.txt",
        4,
        "attribution-license",
    )
    assert hint in bad.message


@pytest.mark.parametrize(
    "licence",
    [
        *("CC0-1.0", "CDLA-Permissive-2.0", "CC-BY-4.0", "CC-BY-SA-4.0", "Apache-2.0", "MIT"),
        # common spellings of the same licences, as merged InstructLab leaves write them
        *("cc-by-4.0", "CC BY-SA 4.0", "CC BY 4.0", "Creative Commons Attribution-ShareAlike 4.0 International"),
        *("CC BY-SA 3.0", "Apache License 2.0", "MIT License", "CC0 1.0 Universal"),
        # public domain, as a US federal work's attribution says it
        *("Public Domain", "public domain (US government work)", "CC-PDDC"),
    ],
)
def test_allowed_licences(project: Project, licence: str) -> None:
    project.leaf("compositional_skills/a", skill_yaml(), attribution=ATTRIBUTION.replace("CC-BY-4.0", licence))
    assert project.findings() == []


def test_licence_allow_list_is_configurable(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", extra_toml='licenses = ["CC-BY-4.0", "BSD-3-Clause"]\n')
    project.leaf("compositional_skills/a", skill_yaml(), attribution=ATTRIBUTION.replace("CC-BY-4.0", "BSD-3-Clause"))
    project.leaf("compositional_skills/b", skill_yaml(), attribution=ATTRIBUTION.replace("CC-BY-4.0", "MIT"))
    assert [d.file.split("/")[2] for d in project.only(rule="attribution-license")] == ["b"]


def test_fast_schema_check_agrees_with_jsonschema() -> None:
    # Valid leaves take the compiled fastjsonschema path only; it must never accept what jsonschema rejects.
    from labtax.validate.schema import _validator, is_valid_fast, schema_name_for
    from test_validate_instructlab import SAME_VERDICT, STRICTER

    documents = [yaml.safe_load(text) for _, _, text, *_ in [*SAME_VERDICT, *STRICTER] if text.strip()]
    documents += [yaml.safe_load(skill_yaml(count)) for count in range(7)]
    documents += [{"version": 3, "created_by": True, "task_description": 1.5, "seed_examples": [None, [], {}]}]
    checked = 0
    for content in documents:
        if not isinstance(content, dict) or content.get("version", 1) not in (1, 2, 3):
            continue
        for branch in ("knowledge", "compositional_skills"):
            name = schema_name_for(branch, content)
            version = content.get("version", 1)
            expected = not list(_validator(version, name).iter_errors(content))
            assert is_valid_fast(content, version, name) == expected, (content, name)
            checked += 1
    assert checked > 60


def test_every_rule_is_documented_and_every_documented_rule_exists() -> None:
    root = Path(__file__).resolve().parents[1]
    docs = (root / "docs" / "rules.md").read_text(encoding="utf-8")
    sources = "".join(
        path.read_text(encoding="utf-8")
        for path in [
            *sorted((root / "tools/labtax/validate").glob("*.py")),
            root / "tools/labtax/taxonomy/load.py",
            root / "tools/labtax/taxonomy/discover.py",
        ]
    )
    documented = set(re.findall(r"^\| `([a-z0-9-]+)` \|", docs, flags=re.MULTILINE))
    assert documented == set(RULE_IDS)
    for rule in RULE_IDS:
        assert f'"{rule}"' in sources, rule  # emitted somewhere, not only listed


def test_unknown_rule_in_the_severity_table(tmp_path: Path) -> None:
    toml = '[tool.labtax.severity]\ntraling-space = "off"\nnot-a-rule-at-all = "error"\ntab = "warning"\n'
    project = make_project(tmp_path / "p", extra_toml=toml)
    project.leaf("compositional_skills/a", skill_yaml())
    result = project.validate()
    assert [(d.file, d.line, d.column, d.rule, d.severity) for d in result.diagnostics] == [
        ("pyproject.toml", 4, 1, "unknown-rule", Severity.WARNING),
        ("pyproject.toml", 5, 1, "unknown-rule", Severity.WARNING),
    ]
    assert result.diagnostics[0].message == (
        "[tool.labtax.severity] names rule 'traling-space', which does not exist; did you mean 'trailing-space'?"
    )
    assert result.diagnostics[1].message.endswith("the rules are listed in docs/rules.md")
