"""Planning generation, purely: which leaves need work, under which cache key, at what expected cost.

`plan_generation` takes leaves, configuration and (optionally) the cache's contents and returns a
`GenerationPlan` with the action and the expected requests for every leaf. It is the one planner:
`labtax generate` runs its plan, `--dry-run` prints it, and the reviewer report and the release notes
announce its counts (`plan_changes`: the leaves of a change, with the base's versions as the cache).
A leaf's `cache_key` hashes exactly what reaches the teacher (`labtax.sdg.inputs`), never metadata.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from labtax.sdg.inputs import inputs_for
from labtax.sdg.params import GenerationParams, expected_requests, pipeline_for
from labtax.sdg.store import CacheEntry
from labtax.sdg.teacher_spec import TeacherSpec
from labtax.taxonomy.leaf import Leaf

# /2: samples record their teacher exchanges (labtax-sample/1); results cached under /1 keys lack them.
# /3: the key hashes the generation inputs (what reaches the teacher), no longer the whole leaf hash.
CACHE_KEY_FORMAT = "labtax-generation-key/3"

# Plan actions
CACHED, GENERATE, RESUME, SKIP = "cached", "generate", "resume", "skip"


@dataclass(frozen=True)
class GenerationConfig:
    output_dir: Path
    teacher: str  # TeacherSpec.identity()
    params: GenerationParams = field(default_factory=GenerationParams)
    project_root: Path = Path(".")
    selected: frozenset[str] | None = None  # leaf paths that may be generated (--base); None: every leaf


@dataclass(frozen=True)
class LeafPlan:
    leaf: Leaf
    pipeline: str
    cache_key: str
    action: str  # cached | generate | resume | skip
    target: int
    expected_requests: int  # at the nominal keep rates; 0 for cached and skipped leaves
    max_requests: int  # the leaf's request budget

    def as_json(self) -> dict[str, Any]:
        return {
            "leaf": self.leaf.path,
            "leaf_hash": self.leaf.leaf_hash,
            "kind": str(self.leaf.kind),
            "pipeline": self.pipeline,
            "cache_key": self.cache_key,
            "action": self.action,
            "target": self.target,
            "expected_requests": self.expected_requests,
            "max_requests": self.max_requests,
        }


@dataclass(frozen=True)
class GenerationPlan:
    teacher: str
    leaves: tuple[LeafPlan, ...]

    @property
    def to_run(self) -> tuple[LeafPlan, ...]:
        return tuple(p for p in self.leaves if p.action in (GENERATE, RESUME))

    @property
    def expected_requests(self) -> int:
        return sum(p.expected_requests for p in self.leaves)

    @property
    def max_requests(self) -> int:
        return sum(p.max_requests for p in self.to_run)

    def as_json(self) -> dict[str, Any]:
        return {
            "teacher": self.teacher,
            "expected_requests": self.expected_requests,
            "max_requests": self.max_requests,
            "leaves": [p.as_json() for p in self.leaves],
        }


def cache_key(leaf: Leaf, teacher: str, params: GenerationParams) -> str:
    """Hash of (generation inputs, pipeline and prompt versions, teacher, generation parameters): what
    reaches the teacher, and nothing else of the leaf (docs/leaf-hash.md)."""
    pipeline = pipeline_for(leaf)
    material = {
        "format": CACHE_KEY_FORMAT,
        "inputs": inputs_for(leaf).digest(),
        "pipeline": f"{pipeline.name}@{pipeline.version}",
        "prompts": pipeline.prompt_version,
        "teacher": teacher,
        "params": params.key_fields(leaf.kind),
    }
    encoded = json.dumps(material, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(encoded).hexdigest()[:32]


def plan_generation(
    leaves: Iterable[Leaf], config: GenerationConfig, cache: Mapping[str, CacheEntry] | None = None
) -> GenerationPlan:
    """What a run would do for every leaf. Pure: pass `cache` (from `store.scan_cache`) to see hits.

    A leaf is `cached` when a finished complete result exists for its cache key, `resume` when a
    journal or an incomplete result exists, `generate` otherwise, and `skip` when it is not among
    `config.selected` (and not cached). `expected_requests` assumes the nominal keep rates.
    """
    cache = cache or {}
    plans = []
    for leaf in sorted(leaves, key=lambda item: item.path):
        key = cache_key(leaf, config.teacher, config.params)
        entry = cache.get(key)
        budget = config.params.budget_for(leaf.kind)
        expected = expected_requests(leaf.kind, config.params)
        if entry is not None and entry.finished and entry.status == "complete":
            action, expected = CACHED, 0
        elif config.selected is not None and leaf.path not in config.selected:
            action, expected = SKIP, 0
        elif entry is not None:
            action, expected = RESUME, max(0, expected - entry.journal_lines)
        else:
            action = GENERATE
        plans.append(
            LeafPlan(leaf, pipeline_for(leaf).name, key, action, config.params.target_for(leaf.kind), expected, budget)
        )
    return GenerationPlan(config.teacher, tuple(plans))


def chunker_name(spec: TeacherSpec) -> str:
    """A local teacher's tokenizer measures chunks; otherwise whitespace words (docs/generation.md)."""
    return f"tokenizer:{spec.identity()}" if spec.is_local else "words"


def generation_config(
    spec: TeacherSpec,
    output_dir: Path,
    params: GenerationParams | None = None,
    project_root: Path = Path("."),
    selected: frozenset[str] | None = None,
) -> GenerationConfig:
    """The configuration a run with `spec` uses (its chunk unit filled in), for `plan_generation` or a dry run."""
    params = replace(params or GenerationParams(), chunker=chunker_name(spec))
    return GenerationConfig(output_dir, spec.identity(), params, project_root, selected)


def plan_changes(
    changed: Iterable[tuple[Leaf | None, Leaf]], params: GenerationParams | None = None, teacher: str = "teacher"
) -> GenerationPlan:
    """The plan of a change, for the reviewer report and the release notes: each (old, new) leaf is
    planned as a release run would, with the base's data cached. So a change that reaches no teacher
    (metadata, attribution, comments, a rename) plans 0 requests; a new or edited leaf plans what
    `labtax generate` would. `teacher` only needs to be the same on both sides."""
    config = GenerationConfig(Path("."), teacher, params or GenerationParams())
    pairs = list(changed)
    cache = {
        cache_key(old, teacher, config.params): CacheEntry("", True, "complete", 0, 0)
        for old, _ in pairs
        if old is not None
    }
    return plan_generation([new for _, new in pairs], config, cache)
