"""What a contribution could do to the machine that validates it: run cached code, hang it, or write to
its terminal. Each finding of issue 15 for the contributor path, as a test that fails on the old code."""

from __future__ import annotations

import hashlib
import json
import marshal
import os
import sys
from pathlib import Path

import pytest

from labtax.validate.schema import load_schema
from test_validate_support import make_project, run_cli, skill_yaml


def _malicious_code(marker: Path) -> bytes:
    source = f"open({str(marker)!r}, 'w').write('executed')\ndef validate(data):\n    return data\n"
    return marshal.dumps(compile(source, "<planted>", "exec"))


def test_a_planted_validator_cache_is_never_executed(tmp_path: Path) -> None:
    """Older labtax loaded ~/.cache/labtax/schema-validators/*.marshal and ran it: whatever an earlier job
    on a persistent runner left there ran in the next release with its secrets."""
    import fastjsonschema

    project = make_project(tmp_path / "p")
    project.leaf("compositional_skills/a", skill_yaml())
    assert run_cli(project.root, "validate", fresh_process=True).returncode == 0
    cache = Path(os.environ["LABTAX_CACHE_DIR"]) / "schema-validators"
    marker = tmp_path / "executed"
    # Every file a run left there, and the exact names the old cache used, now hold someone else's code.
    planted = list(cache.glob("*.marshal")) if cache.is_dir() else []
    for version in (1, 2, 3):
        for name in ("knowledge", "compositional_skills"):
            schema = {k: v for k, v in load_schema(version, name).items() if k not in ("$schema", "$id")}
            key = json.dumps([schema, fastjsonschema.VERSION, sys.version, 1], sort_keys=True)
            planted.append(cache / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.marshal")
    cache.mkdir(parents=True, exist_ok=True)
    for path in planted:
        path.write_bytes(_malicious_code(marker))
    result = run_cli(project.root, "validate", fresh_process=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not marker.exists(), "labtax executed code it found in its cache"
    # And a bad leaf is still judged by the real schema, not by the planted `validate` that accepts all.
    project.leaf("compositional_skills/b", skill_yaml(count=3))
    assert run_cli(project.root, "validate", fresh_process=True).returncode == 1
    assert not marker.exists()


@pytest.mark.parametrize("shape", ["wrong-type", "duplicate-seed", "duplicate-pair"])
def test_checks_are_linear_in_the_size_of_the_leaf(tmp_path: Path, shape: str) -> None:
    """A leaf 8x larger with one error costs about 8x the work, not 64x (issue 15: 1 MiB took 842 s, in
    jsonschema's pairwise `uniqueItems` and our own pairwise duplicate search). Work is counted as function
    calls (Python and C) during validation: deterministic, unlike a timing; benchmarks/ has the timings."""
    from labtax.config import load_config
    from labtax.validate import validate_paths
    from test_validate_support import knowledge_yaml

    def leaf(seeds: int) -> tuple[str, str]:
        if shape == "duplicate-pair":  # a knowledge seed with many pairs, two of them equal
            text = knowledge_yaml("a" * 40)
            pairs = "".join(
                f"      - question: Extra question {i}?\n        answer: Extra {i}.\n" for i in range(seeds)
            )
            extra = "      - question: Extra question 0?\n        answer: Extra 0.\n"
            return "knowledge/k", text.replace(
                "    questions_and_answers:\n", "    questions_and_answers:\n" + pairs + extra, 1
            )
        text = skill_yaml(count=seeds)
        if shape == "wrong-type":
            return "compositional_skills/a", text.replace("created_by: tester", "created_by: [tester]")
        return "compositional_skills/a", text + "  - question: Question number 1?\n    answer: Answer number 1.\n"

    def calls(seeds: int) -> int:
        project = make_project(tmp_path / f"{shape}-{seeds}")
        project.leaf(*leaf(seeds))
        config = load_config(start=project.root)
        validate_paths(config)  # warm: imports, compiled validators
        count = 0

        def profile(frame: object, event: str, arg: object) -> None:
            nonlocal count
            if event in ("call", "c_call"):
                count += 1

        sys.setprofile(profile)
        try:
            result = validate_paths(config)
        finally:
            sys.setprofile(None)
        assert result.errors >= 1
        return count

    small, large = calls(400), calls(3_200)
    # Quadratic work would make the ratio ~64; linear work ~8.
    assert large / small < 12, (small, large)


def test_text_output_neutralises_escape_sequences_and_newlines(tmp_path: Path) -> None:
    """A directory name or a value can carry ANSI escapes (that clear or rewrite a terminal or a CI log) and
    newlines (that forge extra diagnostic lines); text and annotation output shows them as inert escapes."""
    project = make_project(tmp_path / "p")
    evil_dir = "compositional_skills/evil\x1b[2J\nfake.yaml:1:1: error [x] forged"
    project.leaf(evil_dir, skill_yaml(count=3))
    project.leaf(
        "compositional_skills/value",
        skill_yaml().replace("created_by: tester", 'created_by: tester\n"\\e[31mevil\\nkey": 1'),
    )
    for output_format in ("text", "github"):
        result = run_cli(project.root, "validate", "--format", output_format, fresh_process=True)
        assert result.returncode == 1
        assert "\x1b" not in result.stdout + result.stderr, output_format
        lines = result.stdout.splitlines()
        assert not any(line.startswith("fake.yaml") for line in lines), output_format
        newline = "\\x0a" if output_format == "text" else "%0A"  # GitHub decodes its own escape, not ESC
        assert any(f"evil\\x1b[2J{newline}fake.yaml" in line for line in lines), lines
        [unknown] = [line for line in lines if "unknown-key" in line]
        assert f"\\x1b[31mevil{newline}key" in unknown
