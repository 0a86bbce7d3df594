"""Bad input never crashes `labtax validate`: each gets one clear diagnostic, and every other file is
still validated. Checked through the real CLI, in-process (`labtax.cli.main`) and in a subprocess."""

from __future__ import annotations

import ctypes
import json
import os
from pathlib import Path

import pytest

from labtax.cli import main
from test_validate_support import Project, make_project, run_cli, skill_yaml

ALIAS_BOMB = "\n".join(
    ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    + [f"{chr(97 + i)}: &{chr(97 + i)} [{', '.join(['*' + chr(96 + i)] * 9)}]" for i in range(1, 10)]
)

# (leaf directory under taxonomy/compositional_skills, line, column, rule, words the message must contain)
EXPECTED = [
    ("malformed", 3, 1, "yaml-syntax", "YAML syntax error"),
    ("non_utf8", 2, 13, "encoding", "byte 0xff is not valid UTF-8; save the file as UTF-8"),
    ("alias_bomb", 1, 1, "yaml-too-complex", "anchors and aliases"),
    ("huge", 1, 1, "file-too-large", "the file is 52.4 MB; the limit is 1.0 MB"),
    ("top_level_list", 1, 1, "not-a-mapping", "the top level must be a mapping of keys"),
    ("wrong_types", 2, 13, "wrong-type", "'created_by' must be text, but it is a list"),
    ("symlink_outside", 1, 1, "symlink-outside", "points outside the repository"),
    ("fifo", 1, 1, "unreadable", "not a regular file"),
    ("dangling", 1, 1, "unreadable", "points to nothing"),
    ("directory", 1, 1, "file-name", "'qna.yaml' is a directory"),
    ("empty", 1, 1, "empty-file", "the file is empty"),
    ("comments_only", 1, 1, "empty-file", "the file is empty"),
]


def build_bad_taxonomy(project: Project, outside: Path) -> None:
    base = "compositional_skills"
    project.leaf(f"{base}/good", skill_yaml())
    project.leaf(f"{base}/malformed", "version: 3\nseed_examples: [\n")
    project.leaf(f"{base}/non_utf8", b"version: 3\ncreated_by: \xff\xfe\n")
    project.leaf(f"{base}/alias_bomb", ALIAS_BOMB + "\n")
    huge = project.root / f"taxonomy/{base}/huge/qna.yaml"
    huge.parent.mkdir(parents=True)
    with huge.open("wb") as handle:  # sparse: the size check happens before any read
        handle.truncate(50 * 1024 * 1024)
    project.leaf(f"{base}/top_level_list", "- version: 3\n- created_by: x\n")
    project.leaf(f"{base}/wrong_types", "version: 3\ncreated_by: [1]\ntask_description: {a: 1}\nseed_examples: 5\n")
    outside.write_text(skill_yaml(), encoding="utf-8")
    (project.root / f"taxonomy/{base}/symlink_outside").mkdir(parents=True)
    (project.root / f"taxonomy/{base}/symlink_outside/qna.yaml").symlink_to(outside)
    (project.root / f"taxonomy/{base}/fifo").mkdir(parents=True)
    os.mkfifo(project.root / f"taxonomy/{base}/fifo/qna.yaml")
    (project.root / f"taxonomy/{base}/dangling").mkdir(parents=True)
    (project.root / f"taxonomy/{base}/dangling/qna.yaml").symlink_to(project.root / "nowhere.yaml")
    (project.root / f"taxonomy/{base}/directory/qna.yaml").mkdir(parents=True)
    project.leaf(f"{base}/empty", "")
    project.leaf(f"{base}/comments_only", "# nothing yet\n")


@pytest.fixture
def bad_project(tmp_path: Path) -> Project:
    project = make_project(tmp_path / "project")
    build_bad_taxonomy(project, tmp_path / "outside.yaml")
    return project


def expected_lines() -> list[str]:
    return [
        f"taxonomy/compositional_skills/{name}/qna.yaml:{line}:{column}: error [{rule}] "
        for name, line, column, rule, _ in EXPECTED
    ]


def test_library_reports_each_bad_file_once_and_keeps_going(bad_project: Project) -> None:
    result = bad_project.validate()
    by_file = {}
    for diagnostic in result.diagnostics:
        by_file.setdefault(diagnostic.file.split("/")[2], []).append(diagnostic)
    for name, line, column, rule, words in EXPECTED:
        first = by_file[name][0]
        assert (first.line, first.column, first.rule) == (line, column, rule), name
        assert words in first.message, name
    assert "good" not in by_file
    assert [leaf.path for leaf in result.leaves] == [
        "compositional_skills/good/qna.yaml",
        "compositional_skills/wrong_types/qna.yaml",
    ]


def test_cli_in_process(
    bad_project: Project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(bad_project.root)
    assert main(["validate"]) == 1
    out, err = capsys.readouterr()
    for expected in expected_lines():
        assert expected in out
    assert "Traceback" not in out + err
    assert err.strip().endswith("errors, 0 warnings")
    # Every qna.yaml is counted, those refused before reading (a symlink out, a directory) too.
    assert f"{len(EXPECTED) + 1} leaves checked" in err
    assert main(["check"]) == 1
    assert f"{len(EXPECTED) + 1 - 2} qna.yaml files could not be read at all" in capsys.readouterr().out


def test_cli_subprocess_text_and_json(bad_project: Project) -> None:
    text = run_cli(bad_project.root, "validate", fresh_process=True)
    assert text.returncode == 1, text.stderr
    for expected in expected_lines():
        assert expected in text.stdout
    assert "Traceback" not in text.stdout + text.stderr
    as_json = run_cli(bad_project.root, "validate", "--format", "json", fresh_process=True)
    assert as_json.returncode == 1
    records = json.loads(as_json.stdout)
    rules = {(r["file"].split("/")[2], r["rule"]) for r in records}
    assert {(name, rule) for name, _, _, rule, _ in EXPECTED} <= rules


def test_explicit_bad_paths_are_each_reported(bad_project: Project) -> None:
    names = ["huge", "fifo", "directory", "symlink_outside", "good"]
    paths = [f"taxonomy/compositional_skills/{name}/qna.yaml" for name in names]
    result = run_cli(bad_project.root, "validate", *paths, fresh_process=True)
    assert result.returncode == 1
    reported = {line.split("/")[2] for line in result.stdout.splitlines()}
    assert reported == {"huge", "fifo", "directory", "symlink_outside"}
    assert "Traceback" not in result.stderr


def _drop_file_permission_override() -> None:
    """Run as root, a child still meets file permissions once it loses CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH from its capability bounding set (they are recomputed at exec)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def _run_without_read_permission(project: Project, *args: str) -> tuple[int, str, str]:
    import subprocess
    import sys

    code = "import sys; from labtax.cli import main; sys.exit(main(sys.argv[1:]))"
    completed = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=project.root,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        preexec_fn=_drop_file_permission_override if os.geteuid() == 0 else None,
    )
    return completed.returncode, completed.stdout, completed.stderr


def test_unreadable_file_and_directory(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    project.leaf("compositional_skills/good", skill_yaml())
    locked = project.root / project.leaf("compositional_skills/locked", skill_yaml())
    hidden_dir = project.root / "taxonomy/compositional_skills/hidden"
    project.leaf("compositional_skills/hidden/inner", skill_yaml())
    locked.chmod(0)
    hidden_dir.chmod(0)
    try:
        code, out, err = _run_without_read_permission(project, "validate")
    finally:
        locked.chmod(0o644)
        hidden_dir.chmod(0o755)
    assert code == 1, err
    assert "taxonomy/compositional_skills/locked/qna.yaml:1:1: error [unreadable] permission denied" in out
    assert "taxonomy/compositional_skills/hidden:1:1: error [unreadable] cannot list this directory" in out
    assert "Traceback" not in out + err
    assert "2 leaves checked" in err  # good and locked; hidden's leaf could not be reached


def test_files_named_like_leaves_but_not_leaves(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    project.write("taxonomy/compositional_skills/a/qna.yml", skill_yaml())
    project.write("taxonomy/compositional_skills/b/QNA.yaml", skill_yaml())
    project.leaf("compositional_skills/c", skill_yaml())
    result = run_cli(project.root, "validate")
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "taxonomy/compositional_skills/a/qna.yml:1:1: error [file-name] "
        "'qna.yml' is not read as a leaf; rename it to 'qna.yaml'",
        "taxonomy/compositional_skills/b/QNA.yaml:1:1: error [file-name] "
        "'QNA.yaml' is not read as a leaf; rename it to 'qna.yaml'",
    ]
    assert "1 leaves checked: 2 errors" in result.stderr


def test_names_that_are_not_utf8(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    project.leaf("compositional_skills/good", skill_yaml())
    bad_dir = os.fsencode(project.root / "taxonomy/compositional_skills") + b"/caf\xe9"
    os.makedirs(bad_dir)
    with open(bad_dir + b"/qna.yaml", "w") as handle:
        handle.write(skill_yaml())
    # A strict stdout (not the surrogateescape of a C locale) must still print the diagnostics.
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    import subprocess
    import sys

    code = "import sys; from labtax.cli import main; sys.exit(main(sys.argv[1:]))"
    for args in (["validate"], ["validate", "-f", "json"], ["validate", os.fsdecode(bad_dir + b"/qna.yaml")]):
        result = subprocess.run(
            [sys.executable, "-c", code, *args], cwd=project.root, env=env, capture_output=True, text=True, check=False
        )
        assert result.returncode == 1, result.stderr
        assert "not valid UTF-8; rename it" in result.stdout
        assert "Traceback" not in result.stderr and "unexpected error" not in result.stderr


def test_utf16_file_is_named_as_such(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    file = project.leaf("compositional_skills/a", skill_yaml().encode("utf-16"))
    [diagnostic] = project.validate().diagnostics
    assert (diagnostic.file, diagnostic.line, diagnostic.column, diagnostic.rule) == (file, 1, 1, "encoding")
    assert diagnostic.message == "the file is UTF-16; save it as UTF-8"
