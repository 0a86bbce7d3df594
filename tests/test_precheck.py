"""`labtax precheck` end to end from a real git repository with changed leaves: against a real
OpenAI-compatible server (`transformers serve` with SmolLM2-135M-Instruct), against a local model
directory (the tiny model), from a question list written without a model (the pull-request job) and
read by the trusted side; keys only from the environment, never in any output; ROUGE-L by hand."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from markdown_it import MarkdownIt
from tests.conftest import REPO_ROOT, git
from tests.openai_server import running_server

from labtax.cli import main
from labtax.precheck.ask import redact_url
from labtax.precheck.rouge import rouge_l
from real_model import ServedModel

HAIKU = "compositional_skills/writing/freeform/haiku"
TIDES = "knowledge/science/oceanography/ocean_tides"
CAPITALS = "compositional_skills/general/capitals"
FRANCE = {"question": "What is the capital of France?", "answer": "The capital of France is Paris."}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """The haiku and ocean-tides leaves on main; a contribution branch checked out."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    for relative in (HAIKU, TIDES):
        shutil.copytree(REPO_ROOT / "taxonomy" / relative, root / "taxonomy" / relative)
    shutil.copytree(REPO_ROOT / "documents" / "ocean_tides", root / "documents" / "ocean_tides")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "base")
    git(root, "checkout", "-q", "-b", "contribution")
    return root


def contribute(repo: Path) -> None:
    """A new one-seed leaf the model knows, and an edited haiku leaf: one seed added, one edited, one moved."""
    path = repo / "taxonomy" / HAIKU / "qna.yaml"
    content = yaml.safe_load(path.read_text())
    seeds = content["seed_examples"]
    seeds[1]["question"] = "Write a haiku about a harbour at night."
    seeds.append(seeds.pop(2))  # moved, unchanged: not asked again
    seeds.insert(0, {"question": "Write a haiku about a lighthouse.", "answer": "A beam sweeps the sea"})
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    capitals = repo / "taxonomy" / CAPITALS
    capitals.mkdir(parents=True)
    (capitals / "qna.yaml").write_text(
        yaml.safe_dump({"version": 3, "task_description": "Capitals.", "created_by": "x", "seed_examples": [FRANCE]})
    )
    (capitals / "attribution.txt").write_text("Title of work: Capitals\nLicense of the work: CC0-1.0\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "contribution")


def rendered(markdown: str) -> str:
    return MarkdownIt("commonmark").enable("table").render(markdown)


def items_by_question(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["question"]: {**item, "leaf": leaf["path"]} for leaf in result["leaves"] for item in leaf["items"]}


def test_precheck_against_a_real_served_instruct_model(
    repo: Path, served_smollm2: ServedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    contribute(repo)
    monkeypatch.chdir(repo)
    out = repo.parent
    # transformers serve names the model by its path, which exists here: --model-url decides, not the path.
    assert Path(served_smollm2.model).is_dir()
    args = ["precheck", "--base", "main", "--model-url", served_smollm2.url, "--model", served_smollm2.model]
    code = main([*args, "--max-tokens", "16", "--json", str(out / "p.json"), "-o", str(out / "p.md")])
    assert code == 0
    result = json.loads((out / "p.json").read_text())
    assert result["format"] == "labtax-precheck/1"
    assert result["model"] == {"name": served_smollm2.model, "served": True, "url": served_smollm2.url}
    asked = items_by_question(result)
    # The added and the edited haiku seeds and the new leaf's seed; the moved and untouched ones are not asked.
    assert set(asked) == {
        "Write a haiku about a lighthouse.",
        "Write a haiku about a harbour at night.",
        FRANCE["question"],
    }
    assert (asked["Write a haiku about a lighthouse."]["seed"], asked[FRANCE["question"]]["seed"]) == (1, 1)
    france = asked[FRANCE["question"]]
    assert "Paris" in france["answer"] and france["rouge_l"] >= 0.5
    assert all(0 <= item["rouge_l"] <= 1 and item["answer"] for item in asked.values())
    known = {leaf["path"]: leaf["known"] for leaf in result["leaves"]}
    assert known == {f"{CAPITALS}/qna.yaml": True, f"{HAIKU}/qna.yaml": False}

    html = rendered((out / "p.md").read_text())
    assert "Model already knows this:</strong> <code>compositional_skills/general/capitals/qna.yaml</code>" in html
    assert "Not blocking" in html or "not blocking" in html
    assert html.count("<table>") == 3  # the leaf table and one answer table per leaf
    assert "Paris" in html and "The capital of France is Paris." in html


def test_precheck_with_a_local_model_directory(
    repo: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    contribute(repo)
    monkeypatch.chdir(repo)
    out = repo.parent / "p.json"
    code = main(["precheck", "--base", "main", "--model", str(tiny_model_dir), "--max-tokens", "6", "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["model"] == {"name": tiny_model_dir.name, "served": False, "url": None}
    items = [item for leaf in result["leaves"] for item in leaf["items"]]
    assert len(items) == 3 and all(isinstance(item["answer"], str) for item in items)
    assert all(item["finish_reason"] in ("stop", "length") for item in items)
    assert result["max_tokens"] == 6


def test_question_list_without_a_model_then_asked_from_the_file(
    repo: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    contribute(repo)
    monkeypatch.chdir(repo)
    listed, section = repo.parent / "questions.json", repo.parent / "precheck.md"
    # The pull-request job: no model, no key; the question list and a "not configured" section.
    assert main(["precheck", "--base", "main", "--json", str(listed), "-o", str(section)]) == 0
    questions = json.loads(listed.read_text())
    assert questions["model"] is None and len(items_by_question(questions)) == 3
    html = rendered(section.read_text())
    assert "Precheck not configured:</strong> no model was asked. It would ask 3 questions" in html
    assert "LABTAX_PRECHECK_URL" in html and "LABTAX_PRECHECK_API_KEY" in html
    assert "Write a haiku about a harbour at night." in html

    # The trusted side reads the file (not git) and asks the model.
    answered = repo.parent / "answered.json"
    elsewhere = repo.parent / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code = main(
        [
            "precheck",
            "--questions",
            str(listed),
            "--model",
            str(tiny_model_dir),
            "--max-tokens",
            "4",
            "--max-questions",
            "2",
            "--json",
            str(answered),
        ]
    )
    assert code == 0
    result = json.loads(answered.read_text())
    assert len(items_by_question(result)) == 2 and result["omitted"] == 1
    assert "1 more question not asked" in capsys.readouterr().out

    assert main(["precheck", "--questions", str(listed), "--base", "main"]) == 2
    hostile = repo.parent / "hostile.json"
    for broken in (
        {"format": "something-else"},
        {**questions, "leaves": [{"path": "x", "kind": "k", "status": "added", "items": [{"seed": "1"}]}]},
        {
            **questions,
            "leaves": [
                {
                    "path": "x",
                    "kind": "k",
                    "status": "added",
                    "items": [{"seed": 1, "pair": 1, "question": "q" * 60_000, "reference": "a"}],
                }
            ],
        },
    ):
        hostile.write_text(json.dumps(broken))
        capsys.readouterr()
        assert main(["precheck", "--questions", str(hostile), "--model", str(tiny_model_dir)]) == 2
        assert f"--questions {hostile}:" in capsys.readouterr().err
    hostile.write_text("{not json")
    assert main(["precheck", "--questions", str(hostile)]) == 2


def test_keys_come_from_the_environment_and_never_show(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The model's server takes only $LABTAX_PRECHECK_API_KEY, the judge's only $LABTAX_TEACHER_API_KEY;
    neither key, nor a URL's password, appears in the markdown, the JSON or the messages."""
    contribute(repo)
    monkeypatch.chdir(repo)
    monkeypatch.setenv("LABTAX_PRECHECK_API_KEY", "precheck-secret-1")
    monkeypatch.setenv("LABTAX_TEACHER_API_KEY", "teacher-secret-2")
    hostile = "<script>alert(1)</script> | @octocat"

    def judge(stage: str, body: dict[str, Any]) -> dict[str, Any]:
        return {"score": 3, "explanation": f"same facts {hostile}"}

    out, section = repo.parent / "p.json", repo.parent / "p.md"
    with (
        running_server(model="release-model", api_key="precheck-secret-1") as model,
        running_server(model="teacher", api_key="teacher-secret-2", answers={"precheck_judge": judge}) as teacher,
    ):
        code = main(
            [
                "precheck",
                "--base",
                "main",
                "--model-url",
                model.url,
                "--model",
                "release-model",
                "--judge-url",
                teacher.url,
                "--judge-model",
                "teacher",
                "--json",
                str(out),
                "-o",
                str(section),
            ]
        )
        assert code == 0
        assert all("response_format" not in body for body in model.state.bodies)  # answers are free text
        asked = [body["messages"] for body in model.state.bodies]
        assert [{"role": "user", "content": "Write a haiku about a lighthouse."}] in asked
        assert all(body["response_format"]["json_schema"]["name"] == "precheck_judge" for body in teacher.state.bodies)
    result = json.loads(out.read_text())
    assert result["judge"] == {"name": "teacher", "served": True, "url": teacher.url}
    assert all(leaf["known"] for leaf in result["leaves"])  # every answer judged 3: known, and still exit 0
    everything = out.read_text() + section.read_text() + "".join(capsys.readouterr())
    assert "secret" not in everything
    html = rendered(section.read_text())
    assert "<script" not in html and "@octocat" not in html and "&lt;script&gt;" in html

    # A URL carrying credentials is refused, and the message names the server without them.
    capsys.readouterr()
    bad_url = "http://user:hunter2@127.0.0.1:9/v1?key=abc"
    assert main(["precheck", "--base", "main", "--model-url", bad_url, "--model", "m", "-o", str(section)]) == 2
    messages = "".join(capsys.readouterr())
    assert "http://127.0.0.1:9/v1" in messages and "LABTAX_PRECHECK_API_KEY" in messages
    assert "hunter2" not in messages and "key=abc" not in messages

    # A server that is not there: the section says the precheck failed, and why.
    assert (
        main(["precheck", "--base", "main", "--model-url", "http://127.0.0.1:9/v1", "--model", "m", "-o", str(section)])
        == 2
    )
    assert "Precheck failed" in section.read_text() and "cannot reach" in section.read_text()
    assert "LABTAX_PRECHECK_API_KEY" in capsys.readouterr().err


def test_usage_errors_name_the_option(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(repo)
    assert main(["precheck", "--model-url", "http://127.0.0.1:9/v1"]) == 2
    assert "--model-url needs --model" in capsys.readouterr().err
    section = repo.parent / "p.md"
    assert main(["precheck", "--base", "main", "--model", str(repo / "no-such-model"), "-o", str(section)]) == 2
    assert "not a local transformers model directory" in capsys.readouterr().err
    assert "Precheck failed" in section.read_text()  # the comment says why there are no answers
    assert main(["precheck", "--base", "main", "--model", "m", "--judge-url", "http://127.0.0.1:9/v1"]) == 2
    assert "--judge-url needs --judge-model" in capsys.readouterr().err
    assert main(["precheck", "--base", "main"]) == 0
    assert "No added or edited seed" in capsys.readouterr().out


def test_rouge_l() -> None:
    assert rouge_l("the cat sat on the mat", "the cat is on the mat") == pytest.approx(5 / 6)
    assert rouge_l("La capitale est Paris", "Paris est la capitale.") == pytest.approx(0.5)
    assert rouge_l("Ça coûte dix euros", "ça coûte dix euros") == 1.0  # words beyond ASCII count
    assert rouge_l("", "anything") == rouge_l("x", "") == 0.0
    assert rouge_l("a b c d", "e f") == 0.0


def test_redact_url() -> None:
    assert redact_url("https://user:pw@host.example:8443/v1?key=k#f") == "https://host.example:8443/v1"
    assert redact_url("http://[::1]:8000/v1") == "http://[::1]:8000/v1"


def test_the_comment_for_a_one_leaf_change_shows_the_changed_seeds_and_the_answers(
    repo: Path, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pr.yml's commands, then the trusted precheck, then pr-comment.yml's script (under Node.js): the
    posted comment holds the seed diff and the model's answers beside the seeds' answers."""
    from tests.test_workflows import run_comment_script

    path = repo / "taxonomy" / HAIKU / "qna.yaml"
    content = yaml.safe_load(path.read_text())
    content["seed_examples"][0]["answer"] = (
        "Cold rain on the roof\nmaple leaves cling to the glass\nthe kettle hums low"
    )
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    git(repo, "commit", "-q", "-am", "one edited seed")
    monkeypatch.chdir(repo)
    artifact = tmp_path / "labtax-report"
    assert main(["report", "--base", "main", "-o", str(artifact / "report.md")]) == 0
    assert main(["precheck", "--base", "main", "--json", str(artifact / "q.json"), "-o", str(artifact / "p.md")]) == 0
    answered = tmp_path / "answered.md"
    code = main(
        [
            "precheck",
            "--questions",
            str(artifact / "q.json"),
            "--model",
            str(tiny_model_dir),
            "--max-tokens",
            "4",
            "-o",
            str(answered),
            "--json",
            str(tmp_path / "answered.json"),
        ]
    )
    assert code == 0
    [item] = items_by_question(json.loads((tmp_path / "answered.json").read_text())).values()
    assert item["question"] == "Write a haiku about autumn rain." and item["answer"] is not None

    (tmp_path / "node").mkdir()
    calls = run_comment_script(
        tmp_path / "node",
        "12",
        (artifact / "report.md").read_text(),
        "abc",
        [],
        untrusted_precheck=(artifact / "p.md").read_text(),
        trusted_precheck=answered.read_text(),
        configured=True,
    )
    [create] = [c for c in calls if c[0] == "create"]
    html = rendered(create[2])
    assert "<summary>Seed changes: 1 edited</summary>" in html
    assert "maple leaves <del>stick</del> <ins>cling</ins> to the glass" in html
    assert "Model’s answer" in html or "Model's answer" in html
    assert "Write a haiku about autumn rain." in html and "not configured" not in html
