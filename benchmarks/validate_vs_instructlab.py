"""Validating 2,000 leaves: labtax's `validate_paths` against instructlab-schema's TaxonomyParser.

    python benchmarks/validate_vs_instructlab.py [--count 2000] [--repeat 3]

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


def main() -> None:
    parser = argparse.ArgumentParser(description="labtax validate vs instructlab-schema TaxonomyParser")
    parser.add_argument("--count", type=int, default=2000, help="leaves to generate")
    parser.add_argument("--repeat", type=int, default=3, help="labtax runs (median reported); the reference runs once")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

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


if __name__ == "__main__":
    main()
