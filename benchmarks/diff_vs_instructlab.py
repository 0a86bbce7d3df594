"""Benchmark: `labtax diff` against InstructLab's way of finding changed leaves, side by side.

Builds (with `git fast-import`, in seconds) a repository of 10,000 leaves and 2,000 commits:
`main` with 1,490 commits, `pr-short` (10 commits, forked 40 commits behind main's tip) and
`pr-long` (500 commits, forked 100 commits behind). On each branch it times

- `labtax diff --base main --format json`, as a user runs it (a fresh process: Python start-up,
  imports, git calls, leaf hashes of both versions of every changed leaf), and
- InstructLab's approach, reimplemented from its description: walk HEAD's first-parent chain and
  call `git branch -a --contains <commit>` for each commit until one is on the base branch, then
  diff that commit against the working tree (plus untracked files). Parents are listed once up
  front, so only the per-commit `branch --contains` calls are counted against it.

Both must find the same changed leaves. Prints median wall times, the ratio, and the CPU-time ratio
(user + system, git children included), which machine load does not distort.

    python benchmarks/diff_vs_instructlab.py [--work DIR] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

LEAVES = 10_000
MAIN_COMMITS = 1_490
BRANCHES = {"pr-short": (40, 10), "pr-long": (100, 500)}  # name: (fork point behind main's tip, own commits)
AUTHOR = "Bench <bench@example.com> 1700000000 +0000"


def leaf_path(number: int) -> str:
    return f"taxonomy/compositional_skills/bench/group_{number // 100:03d}/leaf_{number:05d}"


def leaf_text(number: int, revision: int) -> bytes:
    seeds = "".join(
        f"  - question: Write a short note on topic {number}, variant {i}, revision {revision}.\n"
        f"    answer: A short note on topic {number}, variant {i}: it is written plainly and kept brief.\n"
        for i in range(1, 6)
    )
    text = f"version: 3\ntask_description: Notes on topic {number}.\ncreated_by: bench\nseed_examples:\n{seeds}"
    return text.encode()


ATTRIBUTION = (
    b"Title of work: Bench\nLink to work: n/a\nRevision: n/a\nLicense of the work: Apache-2.0\nCreator names: bench\n"
)


def _blob(path: str, data: bytes) -> bytes:
    return f"M 100644 inline {path}\ndata {len(data)}\n".encode() + data + b"\n"


def _commit(ref: str, mark: int, message: str, parent: str | None, files: list[tuple[str, bytes]]) -> bytes:
    out = f"commit {ref}\nmark :{mark}\nauthor {AUTHOR}\ncommitter {AUTHOR}\ndata {len(message)}\n{message}\n"
    if parent:
        out += f"from {parent}\n"
    return out.encode() + b"".join(_blob(path, data) for path, data in files) + b"\n"


def fast_import_stream() -> Iterator[bytes]:
    """The whole history as one fast-import stream: 2,000 commits, every one touching a leaf."""
    files = [(f"{leaf_path(n)}/qna.yaml", leaf_text(n, 0)) for n in range(LEAVES)]
    files += [(f"{leaf_path(n)}/attribution.txt", ATTRIBUTION) for n in range(LEAVES)]
    yield _commit("refs/heads/main", 1, "10,000 leaves", None, files)
    for mark in range(2, MAIN_COMMITS + 1):  # main moves on: each commit edits one leaf
        number = (mark * 7) % LEAVES
        yield _commit(
            "refs/heads/main",
            mark,
            f"main {mark}",
            f":{mark - 1}",
            [(f"{leaf_path(number)}/qna.yaml", leaf_text(number, mark))],
        )
    mark = MAIN_COMMITS
    for branch, (behind, own) in BRANCHES.items():
        parent = f":{MAIN_COMMITS - behind}"
        for step in range(own):
            mark += 1
            if step % 2:  # half the commits add a leaf, half edit one
                number = LEAVES + mark
                change = [
                    (f"{leaf_path(number)}/qna.yaml", leaf_text(number, 0)),
                    (f"{leaf_path(number)}/attribution.txt", ATTRIBUTION),
                ]
            else:
                number = (mark * 13) % LEAVES
                change = [(f"{leaf_path(number)}/qna.yaml", leaf_text(number, mark))]
            yield _commit(f"refs/heads/{branch}", mark, f"{branch} {step}", parent, change)
            parent = f":{mark}"


def build_repository(root: Path) -> None:
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    process = subprocess.Popen(["git", "fast-import", "--quiet"], cwd=root, stdin=subprocess.PIPE)
    assert process.stdin is not None
    for chunk in fast_import_stream():
        process.stdin.write(chunk)
    process.stdin.close()
    if process.wait() != 0:
        raise SystemExit("git fast-import failed")


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout


# --- the two ways of finding changed leaves ----------------------------------------------------------


def labtax_diff(root: Path) -> set[str]:
    """`labtax diff` as a user runs it: a fresh process."""
    labtax = Path(sys.executable).parent / "labtax"
    out = subprocess.run(
        [str(labtax), "diff", "--base", "main", "--format", "json"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {f"taxonomy/{change['path']}" for change in json.loads(out) if change["status"] != "deleted"}


def instructlab_diff(root: Path, base: str = "main") -> set[str]:
    """InstructLab's approach (instructlab.utils.get_taxonomy_diff), reimplemented from its description."""
    untracked = [
        p for p in git(root, "ls-files", "--others", "--exclude-standard").splitlines() if p.endswith("qna.yaml")
    ]
    base_branch = re.compile(f"{re.escape(base)}$", re.MULTILINE)
    first_parents = git(root, "rev-list", "--first-parent", "HEAD").split()
    found = None
    for commit in first_parents:  # one `git branch -a --contains` per commit until one is on the base
        if base_branch.search(git(root, "branch", "-a", "--contains", commit)):
            found = commit
            break
    if found is None:
        raise SystemExit(f"no commit of HEAD is on {base}")
    modified = git(root, "diff", "--name-only", "--diff-filter=d", found).splitlines()
    return {p for p in [*untracked, *modified] if p.endswith("qna.yaml")}


def labtax_library(root: Path) -> set[str]:
    """`labtax diff`'s library call in this process: the same work without interpreter start-up."""
    from labtax.config import load_config
    from labtax.gitdiff import changed_leaves

    config = load_config(start=root / "taxonomy", taxonomy=root / "taxonomy")
    return {f"taxonomy/{c.path}" for c in changed_leaves(config, "main").changes if c.status != "deleted"}


@dataclass
class Timing:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # user + system, this process and its children
    found: set[str] = field(default_factory=set)

    def median_wall(self) -> float:
        return statistics.median(self.wall)

    def median_cpu(self) -> float:
        return statistics.median(self.cpu)


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(function: Callable[[Path], set[str]], root: Path, timing: Timing) -> None:
    cpu, start = _cpu_seconds(), time.perf_counter()
    timing.found = function(root)
    timing.wall.append(time.perf_counter() - start)
    timing.cpu.append(_cpu_seconds() - cpu)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, help="where to build the repository (default: a temporary directory)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per tool and branch (median reported)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="labtax-bench-"))
    root = work / "taxonomy-repo"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    start = time.perf_counter()
    build_repository(root)
    commits = int(git(root, "rev-list", "--count", "--all"))
    print(f"built {root}: {LEAVES:,} leaves, {commits:,} commits in {time.perf_counter() - start:.1f} s")

    rows = []
    for branch, (behind, own) in BRANCHES.items():
        git(root, "checkout", "-q", "-f", branch)
        git(root, "status", "--porcelain")  # refresh the index once, as any working copy has it
        cli, library, instructlab = Timing(), Timing(), Timing()
        labtax_library(root)  # warm the imports once; the CLI column pays for them every time
        for _ in range(args.repeat):  # interleaved, so a change in machine load hits every column alike
            timed(labtax_diff, root, cli)
            timed(labtax_library, root, library)
            timed(instructlab_diff, root, instructlab)
        if not cli.found == library.found == instructlab.found:
            raise SystemExit(f"{branch}: the tools disagree: {sorted(cli.found ^ instructlab.found)[:5]}")
        rows.append((branch, own, behind, len(cli.found), cli, library, instructlab))

    print(f"\nmedian of {args.repeat} runs; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(
        f"{'branch':<9}{'commits':>8}{'leaves':>7}{'labtax diff (CLI)':>19}{'(its CPU)':>11}{'labtax (library)':>18}"
        f"{'InstructLab':>13}{'ratio':>8}{'CPU ratio':>11}"
    )
    for branch, own, _behind, leaves, cli, library, instructlab in rows:
        print(
            f"{branch:<9}{own:>8}{leaves:>7}{cli.median_wall():>17.3f} s{cli.median_cpu():>9.3f} s"
            f"{library.median_wall():>16.3f} s"
            f"{instructlab.median_wall():>11.3f} s{instructlab.median_wall() / library.median_wall():>7.1f}x"
            f"{instructlab.median_cpu() / library.median_cpu():>10.1f}x"
        )
    print(
        "\nratio = InstructLab's approach / labtax's library call, both in this process (wall time; CPU ratio:\n"
        "user+system time of the process and its git children). The CLI column is `labtax diff` as a user\n"
        "runs it, Python start-up included (the < 1 s target), and its CPU time (process + git children),\n"
        "which shows the work itself when the machine is shared."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
