"""The pre-commit hook's environment, before and after the core/extras split: MB on disk and install time.

    python benchmarks/hook_env.py [--before REV] [--runs 1] [--work DIR]

What a user of the exported hook (`.pre-commit-hooks.yaml`, `repo: <labtax URL>`) pays once per machine
and per labtax version: `pre-commit install-hooks` clones the hooks repository, creates a virtualenv
and pip-installs labtax into it. For each side this builds a hooks repository (the `before` revision,
default 90f2c3c, the last commit with a single dependency list; the `after` side is this working tree),
then times `pre-commit install-hooks` in a scratch taxonomy repository with a fresh PRE_COMMIT_HOME
and an empty pip cache (the first install a contributor sees: downloads included, from the package
index pip is configured with), and measures the environment it made:

- environment: everything under pre-commit's py_env directory (the virtualenv, its pip and setuptools
  included); site-packages: what the labtax install added on top of a bare virtualenv's;
- apparent sizes (sum of file sizes), in MB of 10^6 bytes; packages: *.dist-info directories.

Runs are interleaved (before, after, before, ...); medians are printed with the ratio after / before.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LEAF = "taxonomy/compositional_skills/writing/freeform/haiku"


@dataclass(frozen=True)
class Measurement:
    seconds: float
    environment_mb: float
    site_packages_mb: float
    packages: int


def size_mb(path: Path) -> float:
    total = 0
    for directory, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_size
            except OSError:
                continue
    return total / 1e6


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def hooks_repository(destination: Path, revision: str | None) -> str:
    """A git repository with labtax's files at `revision` (None: this working tree); returns its commit."""
    destination.mkdir(parents=True)
    if revision is None:
        for name in git(ROOT, "ls-files", "-z", "--", "tools", "schema", "pyproject.toml", "README.md").split("\0"):
            source = ROOT / name
            if name and source.is_file():
                (destination / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(source, destination / name)
        shutil.copy(ROOT / ".pre-commit-hooks.yaml", destination / ".pre-commit-hooks.yaml")
    else:
        archive = subprocess.run(["git", "archive", revision], cwd=ROOT, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(destination)], input=archive, check=True)
    git(destination, "init", "-q")
    git(destination, "add", "-A")
    git(destination, "-c", "user.name=bench", "-c", "user.email=bench@example.com", "commit", "-qm", "hooks")
    return git(destination, "rev-parse", "HEAD").strip()


def bare_site_packages_mb(work: Path) -> float:
    """A virtualenv made the way pre-commit makes one, before anything is installed into it."""
    target = work / "bare-venv"
    subprocess.run([sys.executable, "-m", "virtualenv", "-q", str(target)], check=True)
    [site] = list(target.glob("lib/python*/site-packages"))
    mb = size_mb(site)
    shutil.rmtree(target)
    return mb


def install(work: Path, hooks: Path, rev: str, bare_mb: float) -> Measurement:
    taxonomy = work / "taxonomy-repo"
    home = work / "pre-commit-home"
    shutil.rmtree(taxonomy, ignore_errors=True)
    shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(work / "pip-cache", ignore_errors=True)
    shutil.copytree(ROOT / LEAF, taxonomy / LEAF)
    (taxonomy / ".pre-commit-config.yaml").write_text(
        f"repos:\n  - repo: {hooks}\n    rev: {rev}\n    hooks:\n      - id: labtax-validate\n"
    )
    git(taxonomy, "init", "-q")
    env = dict(
        os.environ,
        PRE_COMMIT_HOME=str(home),
        PIP_CACHE_DIR=str(work / "pip-cache"),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        VIRTUALENV_NO_PERIODIC_UPDATE="1",
    )
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pre_commit", "install-hooks"], cwd=taxonomy, env=env, check=True, capture_output=True
    )
    seconds = time.perf_counter() - start
    [environment] = list(home.glob("repo*/py_env-*"))
    [site] = list(environment.glob("lib/python*/site-packages"))
    packages = len(list(site.glob("*.dist-info")))
    # The hook really works from that environment.
    result = subprocess.run(
        [sys.executable, "-m", "pre_commit", "run", "--all-files"], cwd=taxonomy, env=env, capture_output=True
    )
    if result.returncode != 0:
        raise SystemExit(f"the hook failed:\n{result.stdout.decode()}{result.stderr.decode()}")
    return Measurement(seconds, size_mb(environment), size_mb(site) - bare_mb, packages)


def main() -> None:
    parser = argparse.ArgumentParser(description="the pre-commit hook environment: size and install time")
    parser.add_argument("--before", default="90f2c3c", help="revision before the split (default 90f2c3c)")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="labtax-hook-env-"))
    bare_mb = bare_site_packages_mb(work)
    sides = {"before": args.before, "after": None}
    repositories = {name: work / f"hooks-{name}" for name in sides}
    revisions = {}
    for name, revision in sides.items():
        shutil.rmtree(repositories[name], ignore_errors=True)
        revisions[name] = hooks_repository(repositories[name], revision)
    results: dict[str, list[Measurement]] = {name: [] for name in sides}
    for _ in range(args.runs):
        for name in sides:
            results[name].append(install(work, repositories[name], revisions[name], bare_mb))
    median = statistics.median
    print(f"runs: {args.runs}; before = {args.before}, after = working tree; load average {os.getloadavg()[0]:.1f}")
    print(f"{'':<34}{'before':>10}{'after':>10}{'after/before':>14}")
    rows = (
        ("install-hooks wall time (s)", lambda m: m.seconds),
        ("environment on disk (MB)", lambda m: m.environment_mb),
        ("added to site-packages (MB)", lambda m: m.site_packages_mb),
        ("packages installed", lambda m: float(m.packages)),
    )
    for label, value in rows:
        before = median(value(m) for m in results["before"])
        after = median(value(m) for m in results["after"])
        print(f"{label:<34}{before:>10.1f}{after:>10.1f}{after / before:>14.2f}")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
