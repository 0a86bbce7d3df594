"""Curation settings: one dataclass per step, the defaults documented in docs/curation.md, and the
TOML file (`labtax curate --config FILE`) that overrides them.

Every value is checked here, before any sample is read or any model loaded: a typo in a key or an
out-of-range share stops the run with a message that names the key.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labtax.errors import UsageError

FILTER_NAMES = ("empty", "truncated", "length", "refusal", "copies-question", "pii", "language")


@dataclass(frozen=True)
class FilterSettings:
    enabled: tuple[str, ...] = FILTER_NAMES
    question_min_words: int = 2
    question_max_words: int = 2000
    answer_min_words: int = 1
    answer_max_words: int = 2000
    extra_refusal_patterns: tuple[str, ...] = ()
    copy_similarity: float = 0.9
    language: str = "en"
    language_min_words: int = 5
    language_min_confidence: float = 0.9
    language_skip_leaves: tuple[str, ...] = ()
    allowed_email_domains: tuple[str, ...] = ("example.com", "example.org", "example.net", "example.edu")


@dataclass(frozen=True)
class DedupSettings:
    ngram: int = 3
    num_perm: int = 128
    near_duplicate_threshold: float = 0.7
    decontamination_ngram: int = 2
    decontamination_threshold: float = 0.6
    decontamination_min_words: int = 6


@dataclass(frozen=True)
class SelectSettings:
    max_per_leaf: int | None = None
    ngram_max: int = 2
    features: int = 4096
    embedding_model: Path | None = None


@dataclass(frozen=True)
class MixSettings:
    seeds: bool = True  # the leaves' training seeds join their phase's data (labtax.curate.seeds)
    replay_share: float = 0.3
    min_knowledge_share: float = 0.2
    allow_repeats: bool = True
    replay_file: Path | None = None
    replay_file_sha256: str | None = None
    replay_file_rows: int | None = None


@dataclass(frozen=True)
class KnowledgeSettings:
    """How phase 1 shows the student its knowledge: InstructLab's knowledge data mixing (docs/curation.md).

    Each share is the fraction of knowledge samples written in that form (independently, so a sample
    may appear in several; one drawn for none is written in the form with the largest share).
    `grounded`: the document chunk the question came from, then the question and answer, every token
    trained (InstructLab's phase 0.7 "pretraining" samples). `raft`: the question after `raft_documents`
    chunks, the right one among them with `raft_oracle_probability`, distractors otherwise (its phase
    1.0, after RAFT). `plain`: the bare question and answer."""

    grounded_share: float = 1.0
    raft_share: float = 1.0
    plain_share: float = 0.0
    raft_documents: int = 4  # InstructLab's num_doc_in_context
    raft_oracle_probability: float = 0.4  # InstructLab's p
    raft_max_words: int = 800  # distractor chunks are cut so a RAFT context stays within this many words
    chunk_size: int | None = None  # words per chunk; None: generation's default (labtax.sdg.params)
    chunk_overlap: int | None = None


@dataclass(frozen=True)
class InfluenceSettings:
    enabled: bool = False
    student: Path | None = None
    learning_rate: float = 1e-3
    reference_size: int = 64
    max_candidates: int | None = None
    min_influence: float = 0.0
    pairs_per_prompt: int = 1
    max_tokens: int = 512


@dataclass(frozen=True)
class CurationConfig:
    samples_dir: Path
    output_dir: Path
    taxonomy_root: Path | None = None
    project_root: Path | None = None  # where knowledge documents are read from; default: found from the taxonomy
    seed: int = 0
    examples_per_reason: int = 3
    filters: FilterSettings = field(default_factory=FilterSettings)
    dedup: DedupSettings = field(default_factory=DedupSettings)
    select: SelectSettings = field(default_factory=SelectSettings)
    mix: MixSettings = field(default_factory=MixSettings)
    knowledge: KnowledgeSettings = field(default_factory=KnowledgeSettings)
    influence: InfluenceSettings = field(default_factory=InfluenceSettings)


def chunking(settings: KnowledgeSettings) -> tuple[int, int]:
    """Chunk size and overlap in words: the settings', else generation's defaults (so chunks match its)."""
    from labtax.sdg.params import GenerationParams

    default = GenerationParams()
    size = settings.chunk_size if settings.chunk_size is not None else default.chunk_size
    overlap = settings.chunk_overlap if settings.chunk_overlap is not None else default.chunk_overlap
    return size, overlap


SECTIONS: dict[str, type] = {
    "filters": FilterSettings,
    "dedup": DedupSettings,
    "select": SelectSettings,
    "mix": MixSettings,
    "knowledge": KnowledgeSettings,
    "influence": InfluenceSettings,
}


def load_settings_file(path: Path) -> dict[str, Any]:
    """The sections of a curation TOML file as dataclass instances (keys checked, paths resolved)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read --config {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"--config {path} is not valid TOML: {exc}") from None
    sections: dict[str, Any] = {}
    for name, table in data.items():
        if name in ("seed", "examples_per_reason"):
            sections[name] = table
            continue
        if name not in SECTIONS:
            raise UsageError(f"{path}: unknown section [{name}]; use {', '.join(f'[{s}]' for s in SECTIONS)}")
        if not isinstance(table, dict):
            raise UsageError(f"{path}: [{name}] must be a table")
        sections[name] = _section(path, name, SECTIONS[name], table)
    return sections


def _section(path: Path, name: str, cls: type, table: dict[str, Any]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in fields:
            raise UsageError(f"{path}: [{name}] has no key {key!r}; known keys: {', '.join(fields)}")
        default = fields[key].default
        if isinstance(default, tuple):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise UsageError(f"{path}: [{name}] {key} must be a list of strings")
            value = tuple(value)
        elif key in ("embedding_model", "replay_file", "student"):
            if not isinstance(value, str):
                raise UsageError(f"{path}: [{name}] {key} must be a path string")
            value = (path.parent / value).resolve()
        values[key] = value
    return cls(**values)


def check_config(config: CurationConfig) -> None:
    """Reject impossible settings before any work starts; messages name the TOML key to fix."""
    problems: list[str] = []

    def need(condition: bool, message: str) -> None:
        if not condition:
            problems.append(message)

    def integer(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    def number(value: object) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    def share(value: object) -> bool:
        return number(value) and 0.0 <= float(value) <= 1.0  # type: ignore[arg-type]

    f, d, s, m, i = config.filters, config.dedup, config.select, config.mix, config.influence
    k = config.knowledge
    need(integer(config.seed), "seed must be an integer")
    need(integer(config.examples_per_reason) and config.examples_per_reason >= 0, "examples_per_reason must be >= 0")
    unknown = [name for name in f.enabled if name not in FILTER_NAMES]
    need(not unknown, f"[filters] enabled has unknown filters {unknown}; choose from {', '.join(FILTER_NAMES)}")
    for key in (
        "question_min_words",
        "question_max_words",
        "answer_min_words",
        "answer_max_words",
        "language_min_words",
    ):
        need(integer(getattr(f, key)) and getattr(f, key) >= 0, f"[filters] {key} must be an integer >= 0")
    need(f.question_min_words <= f.question_max_words, "[filters] question_min_words must be <= question_max_words")
    need(f.answer_min_words <= f.answer_max_words, "[filters] answer_min_words must be <= answer_max_words")
    need(share(f.copy_similarity), "[filters] copy_similarity must be between 0 and 1")
    need(share(f.language_min_confidence), "[filters] language_min_confidence must be between 0 and 1")
    need(
        isinstance(f.language, str) and 2 <= len(f.language) <= 3,
        "[filters] language must be an ISO 639-1 code such as 'en'",
    )
    for pattern in f.extra_refusal_patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            problems.append(f"[filters] extra_refusal_patterns: {pattern!r} is not a regular expression ({exc})")
    need(integer(d.ngram) and d.ngram >= 1, "[dedup] ngram must be an integer >= 1")
    need(
        integer(d.decontamination_ngram) and d.decontamination_ngram >= 1, "[dedup] decontamination_ngram must be >= 1"
    )
    need(integer(d.num_perm) and 16 <= d.num_perm <= 1024, "[dedup] num_perm must be between 16 and 1024")
    need(
        number(d.near_duplicate_threshold) and 0.0 < d.near_duplicate_threshold <= 1.0,
        "[dedup] near_duplicate_threshold must be in (0, 1]",
    )
    need(
        number(d.decontamination_threshold) and 0.0 < d.decontamination_threshold <= 1.0,
        "[dedup] decontamination_threshold must be in (0, 1]",
    )
    need(
        integer(d.decontamination_min_words) and d.decontamination_min_words >= 1,
        "[dedup] decontamination_min_words must be >= 1",
    )
    need(
        s.max_per_leaf is None or (integer(s.max_per_leaf) and s.max_per_leaf >= 1),
        "[select] max_per_leaf must be >= 1",
    )
    need(integer(s.ngram_max) and 1 <= s.ngram_max <= 4, "[select] ngram_max must be 1 to 4")
    need(integer(s.features) and s.features >= 16, "[select] features must be >= 16")
    if s.embedding_model is not None and not Path(s.embedding_model).is_dir():
        problems.append(
            f"[select] embedding_model {s.embedding_model} is not a directory; give a local model directory"
        )
    need(isinstance(m.seeds, bool), "[mix] seeds must be true or false")
    need(share(m.replay_share), "[mix] replay_share must be between 0 and 1")
    need(
        number(m.min_knowledge_share) and 0.0 <= m.min_knowledge_share < 1.0,
        "[mix] min_knowledge_share must be in [0, 1)",
    )
    need(
        m.replay_file_rows is None or (integer(m.replay_file_rows) and m.replay_file_rows >= 0),
        "[mix] replay_file_rows must be >= 0",
    )
    if m.replay_file is not None:
        if not Path(m.replay_file).is_file():
            problems.append(f"[mix] replay_file {m.replay_file} does not exist")
        if m.replay_file_sha256 is None:
            problems.append(
                "[mix] replay_file needs replay_file_sha256 (run `sha256sum FILE`): the replay data is pinned"
            )
    for key in ("grounded_share", "raft_share", "plain_share", "raft_oracle_probability"):
        need(share(getattr(k, key)), f"[knowledge] {key} must be between 0 and 1")
    need(
        bool(k.grounded_share or k.raft_share or k.plain_share),
        "[knowledge] grounded_share, raft_share and plain_share are all 0: phase 1 would hold no knowledge",
    )
    need(integer(k.raft_documents) and k.raft_documents >= 1, "[knowledge] raft_documents must be >= 1")
    need(integer(k.raft_max_words) and k.raft_max_words >= 1, "[knowledge] raft_max_words must be >= 1")
    need(k.chunk_size is None or (integer(k.chunk_size) and k.chunk_size >= 1), "[knowledge] chunk_size must be >= 1")
    if integer(k.chunk_size) or k.chunk_size is None:
        size, overlap = chunking(k)
        need(integer(overlap) and 0 <= overlap < size, "[knowledge] chunk_overlap must be >= 0 and < chunk_size")
    if i.enabled:
        if i.student is None:
            problems.append("--influence needs --student PATH (a local Hugging Face model directory)")
        elif not (Path(i.student) / "config.json").is_file():
            problems.append(f"--student {i.student} is not a Hugging Face model directory (no config.json)")
    need(number(i.learning_rate) and i.learning_rate > 0, "[influence] learning_rate must be > 0")
    need(integer(i.reference_size) and i.reference_size >= 1, "[influence] reference_size must be >= 1")
    need(
        i.max_candidates is None or (integer(i.max_candidates) and i.max_candidates >= 1),
        "[influence] max_candidates must be >= 1",
    )
    need(number(i.min_influence), "[influence] min_influence must be a number")
    need(integer(i.pairs_per_prompt) and i.pairs_per_prompt >= 0, "[influence] pairs_per_prompt must be >= 0")
    need(integer(i.max_tokens) and i.max_tokens >= 16, "[influence] max_tokens must be >= 16")
    if not config.samples_dir.is_dir():
        problems.append(
            f"--samples {config.samples_dir} is not a directory; give the --output directory of `labtax generate`"
        )
    if problems:
        raise UsageError("bad curation settings:\n  " + "\n  ".join(problems))
