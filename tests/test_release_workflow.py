"""The release workflow's safety properties, read from the YAML (tests/test_workflows.py runs
actionlint and zizmor on every workflow, this one included)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from conftest import REPO_ROOT

if TYPE_CHECKING:
    from packaging.requirements import Requirement

WORKFLOW = REPO_ROOT / ".github" / "workflows" / "release.yml"


def workflow() -> dict[Any, Any]:
    document = yaml.safe_load(WORKFLOW.read_text())
    document["on"] = document.pop(True)  # YAML 1.1 reads the key `on` as true
    return document


def job() -> dict[str, Any]:
    jobs = workflow()["jobs"]
    assert list(jobs) == ["release"]
    return jobs["release"]


def step(name_part: str) -> dict[str, Any]:
    return next(s for s in job()["steps"] if name_part in s.get("name", ""))


def test_only_version_tags_and_manual_dispatch_start_it() -> None:
    triggers = workflow()["on"]
    assert set(triggers) == {"push", "workflow_dispatch"}
    assert triggers["push"] == {"tags": ["v*"]}
    assert "pull_request" not in WORKFLOW.read_text() and "pull_request_target" not in WORKFLOW.read_text()


def test_gpu_runner_release_environment_least_privilege_and_no_overlap() -> None:
    document = workflow()
    assert document["permissions"] == {}
    assert job()["permissions"] == {"contents": "write"}
    assert job()["runs-on"] == {"group": "labtax-release", "labels": ["self-hosted", "gpu"]}
    assert job()["environment"] == "release"
    assert document["concurrency"] == {"group": "release", "cancel-in-progress": False}
    assert step("Check out")["with"]["persist-credentials"] is False


def test_actions_are_pinned_to_commits() -> None:
    uses = [s["uses"] for s in job()["steps"] if "uses" in s]
    assert uses and all(re.fullmatch(r"[\w-]+/[\w-]+@[0-9a-f]{40}", u) for u in uses)


def test_generation_is_cached_by_leaf_hashes_and_vetted() -> None:
    key_step = step("cache key")
    assert "--cache-key" in key_step["run"] and key_step["id"] == "leaves"
    cache = step("Restore generation results")
    assert cache["uses"].startswith("actions/cache@")
    assert cache["with"]["key"] == "labtax-generation-${{ steps.leaves.outputs.key }}"
    assert ".labtax-cache/release/generation" in cache["with"]["path"]
    assert "--vet-cache" in step("Release")["run"]


def test_the_install_is_pinned_and_hash_checked() -> None:
    """Exactly requirements/release.lock, every file checked against its hash, then labtax without deps."""
    install = step("Install labtax")["run"]
    pip_lines = [line.strip() for line in install.splitlines() if "pip install" in line]
    assert pip_lines == [
        ".venv/bin/pip install --quiet --require-hashes --no-deps -r requirements/release.lock",
        ".venv/bin/pip install --quiet --no-deps --no-build-isolation .",
    ]
    other_installs = [
        s.get("name") for s in job()["steps"] if "pip install" in s.get("run", "") and s != step("Install")
    ]
    assert other_installs == []


def lock_pins() -> dict[str, tuple[str, list[str]]]:
    """requirements/release.lock: normalised name -> (version, hashes)."""
    from packaging.utils import canonicalize_name

    pins: dict[str, tuple[str, list[str]]] = {}
    text = (REPO_ROOT / "requirements" / "release.lock").read_text()
    for entry in re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2]):
        requirement = entry.split("\\")[0].split(";")[0].strip()
        name, _, version = requirement.partition("==")
        pins[canonicalize_name(name)] = (version.strip(), re.findall(r"--hash=sha256:([0-9a-f]{64})", entry))
    return pins


def release_requirements() -> list[Requirement]:
    """The `release` extra's direct dependencies, the extras it names (labtax[pdf,...]) expanded."""
    import tomllib

    from packaging.requirements import Requirement

    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    found, pending = [], ["release"]
    while pending:
        for line in extras[pending.pop()]:
            requirement = Requirement(line)
            if requirement.name == "labtax":
                pending.extend(requirement.extras)
            else:
                found.append(requirement)
    return found


def test_the_lock_covers_the_release_extra_at_the_tested_versions_with_hashes() -> None:
    from packaging.utils import canonicalize_name

    pins = lock_pins()
    assert all(version and hashes for version, hashes in pins.values()), "every pin has a version and hashes"
    regenerate = "run requirements/compile to regenerate requirements/release.lock"
    for requirement in release_requirements():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not in the lock: {regenerate}"
        assert requirement.specifier.contains(pins[name][0], prereleases=True), f"{requirement}: {regenerate}"
    assert "hatchling" in pins  # the build backend of `pip install --no-build-isolation .`
    tested = {}
    for line in (REPO_ROOT / ".ci" / "constraints.txt").read_text().splitlines():
        name, _, version = line.partition("==")
        if version and not line.startswith("#"):
            tested[canonicalize_name(name)] = version.strip()
    differ = {
        name: (pins[name][0], tested[name]) for name in pins.keys() & tested.keys() if pins[name][0] != tested[name]
    }
    assert differ == {}, f"the lock differs from the tested versions (.ci/constraints.txt): {regenerate}"


def test_secrets_reach_only_the_release_step() -> None:
    with_secrets = [s["name"] for s in job()["steps"] if "secrets." in str(s)]
    assert with_secrets == ["Release"]
    assert step("Release")["env"]["HF_TOKEN"] == "${{ secrets.HF_TOKEN }}"


def test_eval_and_manifest_are_uploaded_even_when_the_gate_fails_and_notes_make_the_github_release() -> None:
    upload = step("Upload")
    assert upload["if"] == "${{ !cancelled() }}"
    assert {".labtax-cache/release/eval.json", ".labtax-cache/release/release.json"} <= set(
        upload["with"]["path"].split()
    )
    github_release = step("GitHub release")
    assert '--notes-file "$RELEASE_DIR/notes.md"' in github_release["run"]
    assert github_release["env"] == {"GH_TOKEN": "${{ github.token }}"}


# --- who can reach the GPU runner (docs/security.md) ---------------------------------------------


def evaluate(expression: str, context: dict[str, Any]) -> Any:
    """The subset of GitHub's expression language the job's `if:` uses: property paths, string
    literals, ==, !=, &&, ||, !, parentheses, startsWith() and format(); a missing property is ''."""
    tokens = re.findall(r"\s*(&&|\|\||==|!=|[()!,]|'[^']*'|[A-Za-z_][\w.-]*)", expression)
    assert "".join(tokens).replace(" ", "") == re.sub(r"\s+", "", expression), "unsupported syntax"
    position = 0

    def peek() -> str | None:
        return tokens[position].strip() if position < len(tokens) else None

    def take() -> str:
        nonlocal position
        position += 1
        return tokens[position - 1].strip()

    def primary() -> Any:
        token = take()
        if token == "(":
            value = either()
            assert take() == ")"
            return value
        if token == "!":
            return not primary()
        if token.startswith("'"):
            return token[1:-1]
        if peek() == "(":
            take()
            arguments = [either()]
            while peek() == ",":
                take()
                arguments.append(either())
            assert take() == ")"
            if token == "startsWith":
                return str(arguments[0]).lower().startswith(str(arguments[1]).lower())
            if token == "format":
                return re.sub(r"\{(\d+)\}", lambda m: str(arguments[1 + int(m.group(1))]), str(arguments[0]))
            raise AssertionError(f"unsupported function {token}")
        value: Any = context
        for part in token.split("."):
            value = value.get(part, "") if isinstance(value, dict) else ""
        return value

    def comparison() -> Any:
        left = primary()
        while peek() in ("==", "!="):
            operator, right = take(), primary()
            left = (str(left).lower() == str(right).lower()) == (operator == "==")
        return left

    def both() -> Any:
        left = comparison()
        while peek() == "&&":
            take()
            right = comparison()
            left = left and right
        return left

    def either() -> Any:
        left = both()
        while peek() == "||":
            take()
            right = both()
            left = left or right
        return left

    result = either()
    assert position == len(tokens)
    return result


def run_context(repository: str, event: str, ref: str, variable: str | None = "org/taxonomy") -> dict[str, Any]:
    return {
        "github": {
            "repository": repository,
            "event_name": event,
            "ref": ref,
            "event": {"repository": {"default_branch": "main"}},
        },
        "vars": {"LABTAX_RELEASE_REPOSITORY": variable} if variable else {},
    }


@pytest.mark.parametrize(
    ("context", "runs"),
    [
        (run_context("org/taxonomy", "push", "refs/tags/v1.2.0"), True),
        (run_context("org/taxonomy", "workflow_dispatch", "refs/heads/main"), True),
        (run_context("org/taxonomy", "workflow_dispatch", "refs/tags/v1.2.0"), True),
        # a contributor's branch carrying an edited copy of the workflow
        (run_context("org/taxonomy", "workflow_dispatch", "refs/heads/feature"), False),
        (run_context("org/taxonomy", "push", "refs/heads/feature"), False),
        (run_context("org/taxonomy", "push", "refs/tags/nightly"), False),
        # a fork: its own repository name, and no variables of ours
        (run_context("someone/taxonomy", "push", "refs/tags/v1.2.0", variable=None), False),
        (run_context("someone/taxonomy", "push", "refs/tags/v1.2.0"), False),
        # the variable was never set: nothing runs (not "'' == ''")
        (run_context("org/taxonomy", "push", "refs/tags/v1.2.0", variable=None), False),
    ],
)
def test_the_job_runs_only_for_this_repository_at_a_version_tag_or_the_default_branch(
    context: dict[str, Any], runs: bool
) -> None:
    assert bool(evaluate(job()["if"], context)) is runs


def test_the_version_is_checked_before_any_step_uses_it() -> None:
    names = [s.get("name", "") for s in job()["steps"]]
    assert names[0] == "Check the version"
    check = job()["steps"][0]["run"]
    pattern = re.search(r"=~ (\S+) \]\]", check)
    assert pattern is not None
    for good in ("v1.2.0", "v10.0.1-rc.1"):
        assert re.fullmatch(pattern.group(1), good)
    for bad in ("v1.2", "main", "v1.2.0; curl evil", "v1.2.0\n", "$(id)", "v1.2.0 --force"):
        assert not re.fullmatch(pattern.group(1), bad)


def test_no_other_workflow_can_reach_a_self_hosted_runner() -> None:
    for path in sorted(WORKFLOW.parent.glob("*.yml")):
        if path == WORKFLOW:
            continue
        document = yaml.safe_load(path.read_text())
        for name, other in document["jobs"].items():
            runs_on = other["runs-on"]
            assert isinstance(runs_on, str) and runs_on.startswith("ubuntu-"), f"{path.name}: job {name}: {runs_on}"
        assert "self-hosted" not in path.read_text() and "labtax-release" not in path.read_text(), path.name
