"""Validating 2,000 leaves: labtax's `validate_paths` against instructlab-schema's TaxonomyParser.

    python benchmarks/validate_vs_instructlab.py [--count 2000] [--repeat 3]
    python benchmarks/validate_vs_instructlab.py --large-only [--sizes 64,128,256,512,1024] [--reference-max-kib 256]

The second form is the large-leaf case (issue 15, "validation is linear"): one freeform-skill leaf of
many short seeds, of each size up to 1 MiB, with a single error (a list where `created_by` wants text),
validated by labtax and, up to --reference-max-kib, by the reference (whose jsonschema `uniqueItems`
compares every pair of seed examples, so it grows with the square of the size); the table shows seconds
per size and ms per KiB, which stays flat for a linear check.

1. Generates the leaves with benchmarks/generate_leaves.py (InstructLab layout, a few with errors).
2. Installs `instructlab-schema` and `yamllint` into their own virtual environment under
   benchmarks/.work/validate/ (once), since the reference's yamllint step is a subprocess per file.
3. Times, in the same run and on the same files, the reference (`TaxonomyParser(schema_version=0)`,
   which reads each file's version, runs yamllint, validates the schema and, when `yq` is on PATH,
   calls yq once per schema error to find its line) and labtax (`validate_paths`, which does all of
   that in-process), each in a fresh interpreter, parse loop only; prints both and the ratio.
4. Compares the verdicts: which files each tool rejects.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work" / "validate"
REFERENCE_VENV = WORK / "instructlab-venv"

REFERENCE_TIMER = r"""
import json, resource, sys, time
from pathlib import Path
from instructlab.schema.taxonomy import TaxonomyParser, TaxonomyReadingException
files = [Path(line) for line in Path(sys.argv[1]).read_text().splitlines()]
parser = TaxonomyParser(schema_version=0, message_format="standard")
rejected = []
children = resource.getrusage(resource.RUSAGE_CHILDREN)
start, cpu_start = time.perf_counter(), time.process_time()
for path in files:
    try:
        result = parser.parse(path)
        if result.errors:
            rejected.append(str(path))
    except TaxonomyReadingException:
        rejected.append(str(path))
elapsed = time.perf_counter() - start
after = resource.getrusage(resource.RUSAGE_CHILDREN)
# CPU of this process plus its yamllint and yq subprocesses
cpu = time.process_time() - cpu_start + (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
sys.stdout.flush()
print("RESULT " + json.dumps({"seconds": elapsed, "cpu_seconds": cpu, "rejected": rejected, "yq": parser.yq_available}))
"""

LABTAX_TIMER = r"""
import json, sys, time
from pathlib import Path
start_import = time.perf_counter()
from labtax.config import load_config
from labtax.validate import validate_paths
imported = time.perf_counter() - start_import
root = Path(sys.argv[2])
files = [Path(line) for line in Path(sys.argv[1]).read_text().splitlines()]
start, cpu_start = time.perf_counter(), time.process_time()
config = load_config(start=root)
result = validate_paths(config, files)
elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
errors = [d for d in result.diagnostics if d.severity == "error" and d.file.endswith("qna.yaml")]
rejected = sorted({str(root / d.file) for d in errors})
record = {"seconds": elapsed, "cpu_seconds": cpu, "import_seconds": imported, "rejected": rejected}
print("RESULT " + json.dumps(record))
"""


def ensure_reference_venv() -> Path:
    python = REFERENCE_VENV / "bin" / "python"
    if python.exists():
        return python
    print(f"creating {REFERENCE_VENV} with instructlab-schema and yamllint ...", flush=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(REFERENCE_VENV)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "instructlab-schema", "yamllint"], check=True)
    return python


def run_timer(python: Path, code: str, *args: str, path_prefix: Path | None = None) -> dict[str, object]:
    env = dict(os.environ)
    if path_prefix is not None:  # the reference finds yamllint (and yq) on PATH
        env["PATH"] = f"{path_prefix}{os.pathsep}{env['PATH']}"
    completed = subprocess.run(
        [str(python), "-c", code, *args], capture_output=True, text=True, env=env, check=False, cwd=WORK
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    if completed.returncode != 0 or not lines:
        raise SystemExit(f"timer failed ({completed.returncode}):\n{completed.stderr[-3000:]}")
    result: dict[str, object] = json.loads(lines[-1][len("RESULT ") :])
    return result


def installed_version(python: Path, package: str) -> str:
    out = subprocess.run(
        [str(python), "-c", f"import importlib.metadata as m; print(m.version('{package}'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() or "?"


def large_leaf(size_kib: int) -> str:
    """A freeform skill of about `size_kib` KiB made of many short seeds (the worst case for a check that
    compares items pairwise: 1 MiB holds about 13,000 of them), with one error: `created_by` is a list."""
    import random

    sys.path.insert(0, str(HERE))
    from generate_leaves import WORDS

    rng = random.Random(size_kib)
    lines = ["version: 3", "created_by:", "  - contributor", "task_description: Answer a question."]
    lines.append("seed_examples:")
    size = sum(len(line) + 1 for line in lines)
    index = 0
    while size < size_kib * 1024 - 100:
        seed = [
            f"  - question: Question {index}, what is the {rng.choice(WORDS)} {rng.choice(WORDS)}?",
            f"    answer: The {rng.choice(WORDS)} of the {rng.choice(WORDS)}.",
        ]
        lines += seed
        size += sum(len(line) + 1 for line in seed)
        index += 1
    return "\n".join(lines) + "\n"


def large_leaf_case(args: argparse.Namespace) -> None:
    sizes = [int(size) for size in args.sizes.split(",")]
    root = WORK / "large"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / "pyproject.toml").write_text('[tool.labtax]\ntaxonomy = "."\n', encoding="utf-8")
    reference_python = ensure_reference_venv()
    print(f"labtax: {sys.executable}; cores: {os.cpu_count()}; load average {os.getloadavg()[0]:.1f}")
    print(f"{'leaf':>9}{'seeds':>7}{'labtax s':>10}{'ms/KiB':>8}{'reference s':>13}{'ms/KiB':>8}{'ratio':>8}  verdicts")
    for size in sizes:
        leaf_dir = root / "compositional_skills" / f"large_{size}"
        leaf_dir.mkdir(parents=True)
        text = large_leaf(size)
        (leaf_dir / "qna.yaml").write_text(text, encoding="utf-8")
        actual_kib = len(text.encode()) / 1024
        file_list = root / f"files_{size}.txt"
        file_list.write_text(str(leaf_dir / "qna.yaml") + "\n", encoding="utf-8")
        ours = [run_timer(Path(sys.executable), LABTAX_TIMER, str(file_list), str(root)) for _ in range(args.repeat)]
        ours_seconds = statistics.median(float(run["seconds"]) for run in ours)  # type: ignore[arg-type]
        reference_cell, ratio, verdicts = "(skipped)", "", f"labtax rejects: {bool(ours[0]['rejected'])}"
        if size <= args.reference_max_kib:
            reference = run_timer(
                reference_python, REFERENCE_TIMER, str(file_list), path_prefix=reference_python.parent
            )
            seconds = float(reference["seconds"])  # type: ignore[arg-type]
            reference_cell = f"{seconds:>13.2f}{seconds * 1000 / actual_kib:>8.1f}"
            ratio = f"{seconds / ours_seconds:>7.0f}x"
            verdicts += f", reference rejects: {bool(reference['rejected'])}"
        seeds = text.count("\n  - question:")
        print(
            f"{actual_kib:>7.0f}Ki{seeds:>7}{ours_seconds:>10.3f}{ours_seconds * 1000 / actual_kib:>8.2f}"
            f"{reference_cell:>21}{ratio:>8}  {verdicts}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description="labtax validate vs instructlab-schema TaxonomyParser")
    parser.add_argument("--count", type=int, default=2000, help="leaves to generate")
    parser.add_argument("--repeat", type=int, default=3, help="labtax runs (median reported); the reference runs once")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--large-only", action="store_true", help="run only the large-leaf case")
    parser.add_argument("--sizes", default="64,128,256,512,1024", help="large-leaf sizes in KiB")
    parser.add_argument(
        "--reference-max-kib", type=int, default=256, help="largest leaf the reference is timed on (it is quadratic)"
    )
    args = parser.parse_args()
    if args.large_only:
        large_leaf_case(args)
        return

    sys.path.insert(0, str(HERE))
    from generate_leaves import generate

    WORK.mkdir(parents=True, exist_ok=True)
    leaves_root = WORK / "leaves"
    files = generate(leaves_root, args.count, args.seed, error_rate=0.01)
    file_list = WORK / "files.txt"
    file_list.write_text("\n".join(str(f) for f in files) + "\n", encoding="utf-8")
    reference_python = ensure_reference_venv()

    print(f"{len(files)} leaves under {leaves_root}")
    print(
        f"instructlab-schema {installed_version(reference_python, 'instructlab-schema')}, "
        f"yamllint {installed_version(reference_python, 'yamllint')}, yq: {shutil.which('yq') or 'not found'}"
    )
    print(f"labtax: {sys.executable}; cores: {os.cpu_count()}")

    ours_runs = [
        run_timer(Path(sys.executable), LABTAX_TIMER, str(file_list), str(leaves_root)) for _ in range(args.repeat)
    ]
    reference = run_timer(reference_python, REFERENCE_TIMER, str(file_list), path_prefix=reference_python.parent)
    ours_runs += [
        run_timer(Path(sys.executable), LABTAX_TIMER, str(file_list), str(leaves_root)) for _ in range(args.repeat)
    ]

    def median(runs: list[dict[str, object]], key: str) -> float:
        return statistics.median(float(run[key]) for run in runs)  # type: ignore[arg-type]

    ours_seconds, ours_cpu = median(ours_runs, "seconds"), median(ours_runs, "cpu_seconds")
    reference_seconds, reference_cpu = median([reference], "seconds"), median([reference], "cpu_seconds")
    print()
    print(f"{'tool':<44}{'wall s':>9}{'ms/leaf':>9}{'CPU s':>9}{'ms/leaf':>9}")
    rows = [
        ("instructlab-schema TaxonomyParser + yamllint", reference_seconds, reference_cpu),
        (f"labtax validate_paths (median of {len(ours_runs)})", ours_seconds, ours_cpu),
    ]
    for label, seconds, cpu in rows:
        per_leaf, cpu_per_leaf = seconds / len(files) * 1000, cpu / len(files) * 1000
        print(f"{label:<44}{seconds:>9.2f}{per_leaf:>9.2f}{cpu:>9.2f}{cpu_per_leaf:>9.2f}")
    print(
        f"ratio: labtax is {reference_seconds / ours_seconds:.0f}x faster in wall time, "
        f"{reference_cpu / ours_cpu:.0f}x in CPU time (target: >= 50x); load average {os.getloadavg()[0]:.1f}"
    )
    print(f"labtax import time: {float(ours_runs[0]['import_seconds']) * 1000:.0f} ms (not in the timings)")  # type: ignore[arg-type]

    ours_rejected = set(ours_runs[0]["rejected"])  # type: ignore[arg-type]
    reference_rejected = set(reference["rejected"])  # type: ignore[arg-type]
    print()
    print(
        f"rejected files: instructlab {len(reference_rejected)}, labtax {len(ours_rejected)}, "
        f"both {len(ours_rejected & reference_rejected)}"
    )
    for label, only in (
        ("only instructlab", reference_rejected - ours_rejected),
        ("only labtax", ours_rejected - reference_rejected),
    ):
        for path in sorted(only)[:10]:
            print(f"  {label}: {Path(path).relative_to(leaves_root)}")
    print()
    print("large-leaf case (one leaf, one error):")
    large_leaf_case(args)


if __name__ == "__main__":
    main()
