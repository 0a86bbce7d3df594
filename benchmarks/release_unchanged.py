"""Wall time of a release where nothing changed, against the full release of the same taxonomy.

    python benchmarks/release_unchanged.py [--runs 5]

Copies the shipped taxonomy into a temporary git repository, builds the tiny offline model, starts
the stand-in teacher (tests/openai_server.py) and runs, as fresh `labtax release --dry-run`
processes: the reference, a full first release v1.0.0 (generation, curation, two tiny training
phases, evaluation), then v1.0.1 with nothing changed, several times. Prints wall and CPU seconds
side by side with the ratio, and the teacher requests and training runs of the unchanged release
(both must be 0). The tiny model makes the reference fast; with a real model and teacher the full
release takes hours while the unchanged one stays the same seconds.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

TRAINING = [
    *("--set", "max_length=512", "--set", "micro_batch_tokens=2048", "--set", "gradient_accumulation_steps=1"),
    *("--set", "warmup_steps=0", "--set", "phase1.max_steps=1", "--set", "phase2.max_steps=1"),
]


def run(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    completed = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if completed.returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])} failed ({completed.returncode}): {completed.stderr[-3000:]}")
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, completed.stderr


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    from labtax.train.tiny import build_tiny_model
    from openai_server import running_server

    labtax = str(Path(sys.executable).with_name("labtax"))
    with tempfile.TemporaryDirectory() as temporary, running_server() as teacher:
        work = Path(temporary)
        repo = work / "repo"
        repo.mkdir()
        for name in ("taxonomy", "documents"):
            shutil.copytree(ROOT / name, repo / name)
        shutil.copy2(ROOT / "pyproject.toml", repo)
        env = dict(os.environ, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@example.com", GIT_COMMITTER_NAME="b")
        env |= {"GIT_COMMITTER_EMAIL": "b@example.com", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        git(repo, "init", "-q")
        git(repo, "add", ".")
        subprocess.run(["git", "commit", "-qm", "taxonomy"], cwd=repo, check=True, env=env)
        git(repo, "tag", "v1.0.0")
        git(repo, "tag", "v1.0.1")
        model = build_tiny_model(work / "tiny")
        common = ["--dry-run", "--output", str(work / "release"), "--base-model", str(model)]
        common += ["--teacher-url", teacher.url, "--teacher-model", "fake-teacher", "--target", "2"]
        common += ["--eval-max-new-tokens", "1", *TRAINING]

        full_wall, full_cpu, _ = run([labtax, "release", "v1.0.0", *common], repo, env)
        requests_after_full = teacher.chat_requests
        trainings = sorted((work / "release" / "train").rglob("training.json"))
        stamps = [p.stat().st_mtime_ns for p in trainings]
        walls, cpus = [], []
        for _ in range(args.runs):
            wall, cpu, stderr = run([labtax, "release", "v1.0.1", *common], repo, env)
            assert "nothing changed since v1.0.0" in stderr, stderr
            walls.append(wall)
            cpus.append(cpu)
        new_requests = teacher.chat_requests - requests_after_full
        retrained = [p.stat().st_mtime_ns for p in trainings] != stamps
    leaves = len(list((ROOT / "taxonomy").rglob("qna.yaml")))
    unchanged_wall, unchanged_cpu = statistics.median(walls), statistics.median(cpus)
    print(f"labtax release --dry-run on the shipped taxonomy ({leaves} leaves), tiny model, stand-in teacher")
    print(f"{'':<34}{'wall s':>10}{'cpu s':>10}")
    print(f"{'reference: full release v1.0.0':<34}{full_wall:>10.2f}{full_cpu:>10.2f}")
    print(f"{'nothing changed v1.0.1 (median)':<34}{unchanged_wall:>10.2f}{unchanged_cpu:>10.2f}")
    print(f"ratio full / unchanged: {full_wall / unchanged_wall:.1f}x wall, {full_cpu / unchanged_cpu:.1f}x cpu")
    print(f"unchanged release: {new_requests} teacher requests, training {'RAN' if retrained else 'not started'}")
    return 0 if new_requests == 0 and not retrained else 1


if __name__ == "__main__":
    raise SystemExit(main())
