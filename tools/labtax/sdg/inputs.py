"""What generation reads from a leaf: exactly the values the prompts show the teacher, and the seed
questions generated ones are checked against. Nothing else of the leaf reaches the teacher.

The pipelines build every prompt from a `GenerationInputs` (never from the `Leaf`), and the cache key
hashes it (`GenerationInputs.digest`), so the key covers what reaches the teacher and nothing more:
`created_by`, `attribution.txt`, the schema `version`, comments and formatting, a knowledge seed's
context (the knowledge prompts show passages of the documents instead) and the path of an in-repository
documents directory (its tree id and the files' digest identify the bytes) change the leaf hash
(provenance) but not the key. docs/leaf-hash.md says which hash is which.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from labtax.taxonomy.leaf import Leaf, LeafKind, heldout_pairs, training_seeds
from labtax.text import normalise

INPUTS_FORMAT = "labtax-generation-inputs/1"


@dataclass(frozen=True)
class SkillExample:
    seed_id: str  # the seed example's 1-based position in qna.yaml ("3")
    context: str | None
    question: str
    answer: str


@dataclass(frozen=True)
class KnowledgeExample:
    seed_id: str  # "3.2": the second question-answer pair of the third seed example
    question: str
    answer: str


@dataclass(frozen=True)
class DocumentPin:
    """The documents' identity: a git commit (or an in-repository directory's tree id) and the patterns,
    and for in-repository documents the digest of the selected files' bytes (an edit not yet re-pinned
    changes it too). A remote repository's URL is part of it; a local directory's path is not."""

    repo: str | None
    commit: str
    patterns: tuple[str, ...]
    digest: str | None = None


@dataclass(frozen=True)
class GenerationInputs:
    kind: str  # LeafKind: which pipeline
    task_description: str  # skills ("" for knowledge)
    domain: str  # knowledge ("" for skills)
    document_outline: str  # knowledge
    skill_examples: tuple[SkillExample, ...]  # skills: the training seeds
    knowledge_examples: tuple[KnowledgeExample, ...]  # knowledge: the training pairs
    document: DocumentPin | None  # knowledge
    seed_questions: tuple[str, ...]  # every seed question, normalised: a generated one equal to it is dropped
    heldout_questions: tuple[str, ...]  # the held-out ones among them, normalised (dropped with that reason)

    def digest(self) -> str:
        payload = {"format": INPUTS_FORMAT, **asdict(self)}
        encoded = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return hashlib.sha256(encoded).hexdigest()


def inputs_for(leaf: Leaf) -> GenerationInputs:
    knowledge = leaf.kind is LeafKind.KNOWLEDGE
    seeds = training_seeds(leaf)  # the leading seeds in file order: position n is seed id n
    skill_examples: tuple[SkillExample, ...] = ()
    knowledge_examples: tuple[KnowledgeExample, ...] = ()
    if knowledge:
        knowledge_examples = tuple(
            KnowledgeExample(f"{n}.{m}", pair.question, pair.answer)
            for n, seed in enumerate(seeds, start=1)
            for m, pair in enumerate(seed.qna, start=1)
        )
    else:
        skill_examples = tuple(
            SkillExample(str(n), seed.context, seed.qna[0].question, seed.qna[0].answer)
            for n, seed in enumerate(seeds, start=1)
            if seed.qna
        )
    document = None
    if knowledge and leaf.document is not None:
        ref = leaf.document
        digest = leaf.document_digest if ref.is_local else None
        document = DocumentPin(None if ref.is_local else ref.repo, ref.commit, tuple(ref.patterns), digest)
    return GenerationInputs(
        kind=str(leaf.kind),
        task_description="" if knowledge else leaf.task_description,
        domain=leaf.domain if knowledge else "",
        document_outline=leaf.document_outline if knowledge else "",
        skill_examples=skill_examples,
        knowledge_examples=knowledge_examples,
        document=document,
        seed_questions=tuple(sorted({normalise(pair.question) for pair in leaf.qna_pairs})),
        heldout_questions=tuple(sorted({normalise(pair.question) for _, pair in heldout_pairs(leaf)})),
    )
