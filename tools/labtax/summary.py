"""The one-screen taxonomy summary that `labtax check` prints."""

from __future__ import annotations

from collections import Counter

from labtax.config import Config
from labtax.taxonomy.discover import display_path
from labtax.taxonomy.leaf import BRANCHES, LeafKind
from labtax.validate import ValidationResult


def summarise(result: ValidationResult, config: Config) -> str:
    leaves = result.leaves
    counts: Counter[tuple[str, str]] = Counter((leaf.branch or "(none)", str(leaf.kind)) for leaf in leaves)
    seeds: Counter[str] = Counter()
    pairs: Counter[str] = Counter()
    for leaf in leaves:
        seeds[leaf.branch or "(none)"] += len(leaf.seed_examples)
        pairs[leaf.branch or "(none)"] += len(leaf.qna_pairs)
    kinds = [str(k) for k in LeafKind]
    header = f"{'branch':<22}" + "".join(f"{k:>16}" for k in kinds) + f"{'seeds':>8}{'Q&A':>7}"
    lines = [f"taxonomy {display_path(config.taxonomy_root, config) or '.'}/: {len(leaves)} leaves", "", header]
    branches = [b for b in BRANCHES] + sorted({b for b, _ in counts} - set(BRANCHES))
    for branch in branches:
        if not any(counts[(branch, k)] for k in kinds):
            continue
        row = f"{branch:<22}" + "".join(f"{counts[(branch, k)]:>16}" for k in kinds)
        lines.append(row + f"{seeds[branch]:>8}{pairs[branch]:>7}")
    total = f"{'total':<22}" + "".join(f"{sum(counts[(b, k)] for b in branches):>16}" for k in kinds)
    lines.append(total + f"{sum(seeds.values()):>8}{sum(pairs.values()):>7}")
    lines.append("")
    unusable = result.files_checked - len(leaves)
    if unusable:
        lines.append(f"{unusable} qna.yaml files could not be read at all (see the errors above)")
    verdict = "OK" if not result.errors else "FAILED"
    lines.append(f"{result.errors} errors, {result.warnings} warnings: {verdict}")
    return "\n".join(lines)
