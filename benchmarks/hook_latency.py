"""Wall time of the pre-commit hook on one changed leaf: `labtax validate <leaf>` as a fresh process.

    python benchmarks/hook_latency.py [--runs 15] [LEAF]

Runs the installed `labtax` console script (the hook's entry) several times and prints the median,
against the reference: a fresh interpreter running instructlab-schema's TaxonomyParser on the same
file (from benchmarks/.work/validate/instructlab-venv, made by validate_vs_instructlab.py; skipped
with a note when absent). Target: under 0.5 s for labtax. Also prints the import time of labtax.cli,
which is most of it.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LEAF = ROOT / "taxonomy/knowledge/science/oceanography/ocean_tides/qna.yaml"
REFERENCE_PYTHON = ROOT / "benchmarks/.work/validate/instructlab-venv/bin/python"
REFERENCE_CODE = (
    "import sys; from instructlab.schema.taxonomy import TaxonomyParser; "
    "sys.exit(1 if TaxonomyParser(schema_version=0, message_format='standard').parse(sys.argv[1]).errors else 0)"
)


def timed_runs(command: list[str], runs: int, env: dict[str, str]) -> tuple[list[float], list[float]]:
    """Wall seconds and CPU seconds (user + system of the child) per run. A busy shared machine
    inflates wall time far more than CPU time, so both are shown."""
    wall, cpu = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, check=False)
        wall.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if completed.returncode not in (0, 1):
            raise SystemExit(f"{command[0]} failed ({completed.returncode}): {completed.stderr[-2000:]}")
    return wall, cpu


def describe(label: str, timings: tuple[list[float], list[float]]) -> str:
    wall, cpu = timings
    median = statistics.median
    return f"{label:<46}{median(wall):>9.3f}{min(wall):>9.3f}{max(wall):>9.3f}{median(cpu):>9.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description="wall time of `labtax validate <one leaf>`")
    parser.add_argument("leaf", nargs="?", type=Path, default=DEFAULT_LEAF)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()

    labtax = Path(sys.executable).parent / "labtax"
    env = dict(os.environ)
    ours = timed_runs([str(labtax), "validate", str(args.leaf)], args.runs, env)
    import_cli = timed_runs([sys.executable, "-c", "import labtax.cli"], args.runs, env)
    bare = timed_runs([sys.executable, "-c", "pass"], args.runs, env)

    print(
        f"leaf: {args.leaf.relative_to(ROOT) if args.leaf.is_relative_to(ROOT) else args.leaf}; runs: {args.runs}; "
        f"cores: {os.cpu_count()}"
    )
    print(f"{'command (seconds)':<46}{'wall':>9}{'min':>9}{'max':>9}{'cpu':>9}")
    print(describe("labtax validate <leaf>", ours))
    print(describe("python -c 'import labtax.cli'", import_cli))
    print(describe("python -c 'pass' (interpreter start-up)", bare))
    if REFERENCE_PYTHON.exists():
        reference_env = dict(env, PATH=f"{REFERENCE_PYTHON.parent}{os.pathsep}{env['PATH']}")
        reference = timed_runs([str(REFERENCE_PYTHON), "-c", REFERENCE_CODE, str(args.leaf)], args.runs, reference_env)
        print(describe("instructlab-schema TaxonomyParser on <leaf>", reference))
        ratio = statistics.median(reference[0]) / statistics.median(ours[0])
        print(f"ratio (wall, median): instructlab / labtax = {ratio:.2f}")
    else:
        print("reference not installed: run benchmarks/validate_vs_instructlab.py once to create it")
    verdict = "meets" if statistics.median(ours[0]) < 0.5 else "MISSES"
    print(
        f"target < 0.5 s wall: {verdict} (median {statistics.median(ours[0]):.3f} s, "
        f"load average {os.getloadavg()[0]:.1f})"
    )


if __name__ == "__main__":
    main()
