"""InstructLab compatibility: on InstructLab-style files, labtax reaches the same verdict as the
`instructlab-schema` package's TaxonomyParser (with its yamllint step), apart from the stricter
checks that docs/rules.md lists, each of which is shown here to be the only difference."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml

from test_validate_support import ATTRIBUTION, make_project

SHA = "951999afdc59c46d325493568193b40bd5439c9e"
REPO = "https://github.com/instructlab/taxonomy-knowledge-docs"


def skill(version: int | None = 3, seeds: int = 5, context: bool = False, **extra: object) -> dict[str, object]:
    content: dict[str, object] = {} if version is None else {"version": version}
    content.update(created_by="contributor", task_description="Write a short poem about the topic.")
    examples = []
    for index in range(seeds):
        example = {"question": f"Write a poem about topic {index}.", "answer": f"A poem about topic {index}."}
        if context:
            example = {"context": f"Some text number {index}.", **example}
        examples.append(example)
    content["seed_examples"] = examples
    content.update(extra)
    return content


def knowledge(
    version: int = 3, seeds: int = 5, pairs: int = 3, commit: str = SHA, **extra: object
) -> dict[str, object]:
    content: dict[str, object] = {"version": version, "created_by": "contributor", "domain": "astronomy"}
    if version >= 3:
        content["document_outline"] = "Facts about the planets."
        content["seed_examples"] = [
            {
                "context": f"Paragraph {index} about the planets.",
                "questions_and_answers": [
                    {"question": f"Question {pair} on paragraph {index}?", "answer": f"Answer {pair}."}
                    for pair in range(pairs)
                ],
            }
            for index in range(seeds)
        ]
    else:
        content["task_description"] = "Teach facts about the planets."
        content["seed_examples"] = [{"question": f"Q{i}?", "answer": f"A{i}."} for i in range(seeds)]
    content["document"] = {"repo": REPO, "commit": commit, "patterns": ["planets/*.md"]}
    content.update(extra)
    return content


def dump(content: object) -> str:
    return yaml.safe_dump(content, sort_keys=False, allow_unicode=True, width=1000)


# (name, branch, file text): same verdict expected from both tools.
SAME_VERDICT: list[tuple[str, str, str]] = [
    ("skill_v3", "compositional_skills", dump(skill())),
    ("skill_v2", "compositional_skills", dump(skill(version=2))),
    ("skill_v1_no_version", "compositional_skills", dump(skill(version=None, seeds=1))),
    ("skill_v1_empty_description", "compositional_skills", dump(skill(version=1, seeds=2, task_description=""))),
    ("grounded_skill", "compositional_skills", dump(skill(context=True))),
    ("foundational_skill", "foundational_skills", dump(skill())),
    ("knowledge_v3", "knowledge", dump(knowledge())),
    ("skill_v3_four_seeds", "compositional_skills", dump(skill(seeds=4))),
    ("skill_v2_four_seeds", "compositional_skills", dump(skill(version=2, seeds=4))),
    ("skill_missing_created_by", "compositional_skills", dump({k: v for k, v in skill().items() if k != "created_by"})),
    ("skill_unknown_key", "compositional_skills", dump(skill(tags=["x"]))),
    ("skill_v3_empty_description", "compositional_skills", dump(skill(task_description=""))),
    ("skill_wrong_type", "compositional_skills", dump(skill(seed_examples="none"))),
    ("skill_seed_missing_answer", "compositional_skills", dump(skill(seed_examples=[{"question": "q"}] * 5))),
    (
        "skill_duplicate_seeds",
        "compositional_skills",
        dump(skill(seed_examples=[{"question": "q", "answer": "a"}] * 5)),
    ),
    ("skill_version_4", "compositional_skills", dump(skill(version=4))),
    ("skill_version_text", "compositional_skills", dump(skill(version="three"))),  # type: ignore[arg-type]
    ("knowledge_v2", "knowledge", dump(knowledge(version=2))),
    ("knowledge_v1", "knowledge", dump(knowledge(version=1))),
    ("knowledge_two_pairs", "knowledge", dump(knowledge(pairs=2))),
    ("knowledge_four_seeds", "knowledge", dump(knowledge(seeds=4))),
    ("knowledge_no_outline", "knowledge", dump({k: v for k, v in knowledge().items() if k != "document_outline"})),
    ("knowledge_no_document", "knowledge", dump({k: v for k, v in knowledge().items() if k != "document"})),
    ("top_level_list", "compositional_skills", "- a\n- b\n"),
    ("trailing_space", "compositional_skills", dump(skill()).replace("contributor", "contributor  ")),
    ("no_final_newline", "compositional_skills", dump(skill()).rstrip("\n")),
    ("crlf", "compositional_skills", dump(skill()).replace("\n", "\r\n")),  # a warning in labtax
    ("duplicate_key_v3", "compositional_skills", dump(skill()) + "created_by: someone\n"),
]

# (name, branch, file text, the labtax rule that makes the difference): InstructLab accepts, labtax refuses.
STRICTER: list[tuple[str, str, str, str]] = [
    (
        "duplicate_key_v1",
        "compositional_skills",
        dump(skill(version=1, seeds=2)) + "created_by: someone\n",
        "duplicate-key",
    ),
    ("empty_file", "compositional_skills", "", "empty-file"),
    ("short_commit", "knowledge", dump(knowledge(commit="951999a")), "document-commit"),
    ("branch_commit", "knowledge", dump(knowledge(commit="main")), "document-commit"),
    (
        "qna_too_long",
        "knowledge",
        dump(knowledge()).replace("answer: Answer 1.", "answer: " + " ".join(["word"] * 260), 1),
        "qna-too-long",
    ),
    (
        "duplicate_question",
        "compositional_skills",
        dump(skill()).replace("Write a poem about topic 1.", "Write a poem about topic 0."),
        "duplicate-question",
    ),
    (
        "extra_key_in_pair",
        "knowledge",
        dump(knowledge()).replace("    answer: Answer 0.\n", "    answer: Answer 0.\n    source: page 3\n", 1),
        "unknown-key",
    ),
    ("tab_in_value", "compositional_skills", dump(skill()).replace("contributor", '"contri\tbutor"'), "tab"),
]


@pytest.fixture
def reference(monkeypatch: pytest.MonkeyPatch) -> object:
    """InstructLab's parser, as its CI runs it (version read from each file, yamllint on PATH)."""
    from instructlab.schema.taxonomy import TaxonomyParser

    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return TaxonomyParser(schema_version=0, message_format="logging")


def instructlab_accepts(parser: object, path: Path) -> bool:
    from instructlab.schema.taxonomy import TaxonomyReadingException

    try:
        result = parser.parse(path)  # type: ignore[attr-defined]
    except TaxonomyReadingException:  # what it raises on malformed YAML
        return False
    return result.errors == 0


def labtax_findings(tmp_path: Path, name: str, branch: str, text: str) -> tuple[bool, set[str], Path]:
    project = make_project(tmp_path / name, taxonomy=".")
    relative = project.leaf(f"{branch}/test/{name}", text.encode("utf-8"), attribution=ATTRIBUTION)
    result = project.validate()
    return result.errors == 0, {d.rule for d in result.diagnostics if d.severity == "error"}, project.root / relative


@pytest.mark.parametrize(("name", "branch", "text"), SAME_VERDICT, ids=[case[0] for case in SAME_VERDICT])
def test_same_verdict_as_instructlab(tmp_path: Path, reference: object, name: str, branch: str, text: str) -> None:
    ours, rules, path = labtax_findings(tmp_path, name, branch, text)
    assert ours == instructlab_accepts(reference, path), f"labtax {'accepts' if ours else 'refuses'} ({rules})"


@pytest.mark.parametrize(("name", "branch", "text", "rule"), STRICTER, ids=[case[0] for case in STRICTER])
def test_documented_stricter_checks(
    tmp_path: Path, reference: object, name: str, branch: str, text: str, rule: str
) -> None:
    ours, rules, path = labtax_findings(tmp_path, name, branch, text)
    assert instructlab_accepts(reference, path)
    assert not ours and rules == {rule}


def test_malformed_yaml_instructlab_raises_labtax_reports(tmp_path: Path, reference: object) -> None:
    ours, rules, path = labtax_findings(tmp_path, "malformed", "compositional_skills", "version: 3\nseed_examples: [\n")
    assert not instructlab_accepts(reference, path)
    assert not ours and rules == {"yaml-syntax"}


def test_every_stricter_rule_is_documented() -> None:
    rules_doc = (Path(__file__).resolve().parents[1] / "docs" / "rules.md").read_text(encoding="utf-8")
    section = rules_doc.split("## Stricter than InstructLab", 1)[1]
    for _, _, _, rule in STRICTER:
        assert f"`{rule}`" in section
