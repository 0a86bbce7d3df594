"""Generate an InstructLab-style taxonomy of N leaves for benchmarks: `python benchmarks/generate_leaves.py OUT`.

The layout is InstructLab's (branches at the top of OUT, `[tool.labtax] taxonomy = "."`), so both
labtax and instructlab-schema's TaxonomyParser read the same files. The mix: about 30% knowledge
(version 3, a pinned remote document), 50% compositional skills (a third of them grounded, with
context), 20% foundational skills; every leaf has an attribution.txt. About 1% of the leaves carry
one deliberate error (too few seeds, an unknown key, a wrong type, a duplicate key, trailing spaces)
so that both tools also go through their error paths. Deterministic for a given --seed.
"""

from __future__ import annotations

import argparse
import random
import shutil
from pathlib import Path

WORDS = (
    "tide moon orbit planet ocean current wave energy signal data model value table column field query "
    "record index result answer reason number ratio sum total average detail summary section chapter "
    "history method process system network protocol message request response error status version"
).split()

ATTRIBUTION = """Title of work: Generated benchmark leaf {index}
Link to work: n/a (generated)
Revision: n/a
License of the work: CC-BY-4.0
Creator names: labtax benchmark
"""

ERRORS = ("few-seeds", "unknown-key", "wrong-type", "duplicate-key", "trailing-space")


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize()


def block(text: str, indent: int) -> str:
    """A literal block scalar (`|`) indented under its key."""
    pad = " " * indent
    return "|\n" + "\n".join(pad + line for line in text.splitlines())


def skill_leaf(rng: random.Random, index: int, grounded: bool, seeds: int) -> str:
    lines = [
        "version: 3",
        f"created_by: contributor-{index % 97}",
        f"task_description: {sentence(rng, 12)}.",
        "seed_examples:",
    ]
    for number in range(seeds):
        if grounded:
            lines.append(f"  - context: {block(sentence(rng, 60) + '.', 6)}")
            lines.append(f"    question: Question {number} of leaf {index}, {sentence(rng, 10)}?")
        else:
            lines.append(f"  - question: Question {number} of leaf {index}, {sentence(rng, 10)}?")
        lines.append(f"    answer: {block(sentence(rng, 40) + '.', 6)}")
    return "\n".join(lines) + "\n"


def knowledge_leaf(rng: random.Random, index: int, seeds: int) -> str:
    commit = f"{rng.getrandbits(160):040x}"
    lines = [
        "version: 3",
        f"created_by: contributor-{index % 97}",
        f"domain: {rng.choice(WORDS)}",
        f"document_outline: {sentence(rng, 15)}.",
        "document:",
        "  repo: https://github.com/example/knowledge-documents",
        f"  commit: {commit}",
        "  patterns:",
        f"    - leaf-{index}/*.md",
        "seed_examples:",
    ]
    for number in range(seeds):
        lines.append(f"  - context: {block(sentence(rng, 120) + '.', 6)}")
        lines.append("    questions_and_answers:")
        for pair in range(3):
            lines.append(f"      - question: Question {pair} on passage {number} of leaf {index}, {sentence(rng, 8)}?")
            lines.append(f"        answer: {sentence(rng, 25)}.")
    return "\n".join(lines) + "\n"


def break_leaf(text: str, error: str) -> str:
    if error == "few-seeds":
        head, _, _ = text.partition("  - ")
        seeds = text[len(head) :].split("\n  - ")
        return head + "\n  - ".join(seeds[:3]).rstrip("\n") + "\n"
    if error == "unknown-key":
        return text.replace("created_by:", "created_bye:", 1)
    if error == "wrong-type":
        return text.replace("version: 3\n", "version: 3\nseed_examples_count: [1, 2]\n", 1).replace(
            "created_by: ", "created_by:\n  - ", 1
        )
    if error == "duplicate-key":
        return text.replace("version: 3\n", "version: 3\ncreated_by: someone-else\n", 1)
    return text.replace("version: 3\n", "version: 3   \n", 1)  # trailing-space


def generate(out: Path, count: int, seed: int, error_rate: float) -> list[Path]:
    rng = random.Random(seed)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / "pyproject.toml").write_text('[tool.labtax]\ntaxonomy = "."\n', encoding="utf-8")
    files = []
    for index in range(count):
        roll = rng.random()
        if roll < 0.3:
            branch, text = "knowledge", knowledge_leaf(rng, index, seeds=5)
        elif roll < 0.8:
            branch, text = "compositional_skills", skill_leaf(rng, index, grounded=rng.random() < 1 / 3, seeds=5)
        else:
            branch, text = "foundational_skills", skill_leaf(rng, index, grounded=False, seeds=5)
        if rng.random() < error_rate:
            text = break_leaf(text, ERRORS[index % len(ERRORS)])
        directory = out / branch / f"group_{index % 20:02d}" / f"leaf_{index:05d}"
        directory.mkdir(parents=True)
        (directory / "qna.yaml").write_text(text, encoding="utf-8")
        (directory / "attribution.txt").write_text(ATTRIBUTION.format(index=index), encoding="utf-8")
        files.append(directory / "qna.yaml")
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="directory to (re)create")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--error-rate", type=float, default=0.01)
    args = parser.parse_args()
    files = generate(args.out, args.count, args.seed, args.error_rate)
    print(f"wrote {len(files)} leaves under {args.out}")


if __name__ == "__main__":
    main()
