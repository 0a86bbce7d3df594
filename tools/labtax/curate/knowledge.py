"""Knowledge learned with its documents: phase 1 shows the student the document chunk each fact came from.

InstructLab's knowledge data mixing (instructlab/sdg `datamixing.py`) writes every generated knowledge
question-answer pair twice: once after the document it was generated from, as a "pretraining" sample
whose every token is trained (`_create_phase07_ds`, `_conv_pretrain`), and once after a few documents of
which the right one is only sometimes part (`_add_extra_contexts_to_samples`, p = 0.4 with four
documents, after RAFT, arXiv 2403.10131), trained on the answer. The student thereby reads the source
text itself, learns to answer from it, and learns to answer when the right passage is missing or hidden
among others, instead of memorising bare question-answer pairs. labtax renders its phase-1 rows the same
way, with the proportions in `[knowledge]` (`KnowledgeSettings`):

- `grounded`: the chunk, a blank line, the question; the answer; `train_all_tokens` (every token trained);
- `raft`: `Document:` blocks (the right chunk with probability `raft_oracle_probability`, else
  distractors only), the question; the answer (assistant tokens trained);
- `plain`: the bare question and answer, as generated.

The chunks are the leaf's pinned documents (`labtax.documents.read_documents` and `document_text`: git
objects, PDFs as text) cut as generation cuts them (`labtax.sdg.chunking.chunk_documents`). A sample's
own chunk is the one its generation prompt showed the teacher: a chunk contained in the prompt of the
exchange that wrote the question, else the chunk sharing most word trigrams with that prompt, else with
the answer. Every choice is seeded per sample, so adding a leaf does not reshuffle another's rows.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from labtax.curate.samples import Candidate
from labtax.curate.settings import KnowledgeSettings, chunking
from labtax.records.curation import KnowledgeMixCounts
from labtax.records.sample import QUESTION, Message, Sample
from labtax.taxonomy.leaf import Leaf, LeafKind
from labtax.text import shingles

GROUNDED, RAFT, PLAIN = "grounded", "raft", "plain"
FORMS = (GROUNDED, RAFT, PLAIN)


@dataclass
class KnowledgeRows:
    rows: list[Sample]  # grounded rows first, then raft, then plain; each block in the candidates' order
    counts: KnowledgeMixCounts
    notes: list[str] = field(default_factory=list)


def leaf_chunks(
    leaves: Sequence[Leaf], project_root: Path, settings: KnowledgeSettings
) -> tuple[dict[str, list[str]], list[str]]:
    """Each knowledge leaf's document chunks, and notes for leaves whose documents cannot be read (their
    samples are then written plain, and the note says so)."""
    from labtax.documents import DocumentError, document_text, read_documents
    from labtax.sdg.chunking import chunk_documents

    size, overlap = chunking(settings)
    chunks: dict[str, list[str]] = {}
    notes: list[str] = []
    for leaf in leaves:
        if leaf.kind is not LeafKind.KNOWLEDGE or leaf.document is None:
            continue
        try:  # from git objects, and PDFs as text, exactly as generation reads them
            texts = [(d.path, document_text(d)) for d in read_documents(project_root, leaf.document)]
        except DocumentError as exc:
            notes.append(f"{leaf.path}: its documents cannot be read ({exc}); its samples are written without them")
            continue
        chunks[leaf.path] = [chunk.text for chunk in chunk_documents(texts, size, overlap)]
    return chunks, notes


def source_chunk(candidate: Candidate, chunks: Sequence[str]) -> int | None:
    """The index of the chunk the sample's question was generated from (see the module docstring)."""
    if not chunks:
        return None
    asked = candidate.sample.metadata.exchange_that_wrote(QUESTION)
    prompt = "\n".join(m.content for m in asked.messages if m.role == "user") if asked else ""
    for index, chunk in enumerate(chunks):
        if prompt and chunk in prompt:
            return index
    for text in (prompt, candidate.answer):
        if not text:
            continue
        grams = shingles(text, 3)
        overlaps = [len(grams & shingles(chunk, 3)) for chunk in chunks]
        best = max(range(len(chunks)), key=lambda i: (overlaps[i], -i))
        if overlaps[best] > 0:
            return best
    return None


def render_knowledge(
    knowledge: Sequence[Candidate], chunks: dict[str, list[str]], settings: KnowledgeSettings, seed: int
) -> KnowledgeRows:
    """Phase 1's rows for the knowledge samples (in the order given), in the forms `settings` asks for."""
    blocks: dict[str, list[Sample]] = {form: [] for form in FORMS}
    with_oracle = without_chunk = 0
    shares = {GROUNDED: settings.grounded_share, RAFT: settings.raft_share, PLAIN: settings.plain_share}
    for candidate in knowledge:
        leaf_chunks_ = chunks.get(candidate.leaf, [])
        own = source_chunk(candidate, leaf_chunks_)
        rng = random.Random(f"{seed}/knowledge/{candidate.sample_id}")
        chosen = {form for form in FORMS if rng.random() < shares[form]}
        if not chosen:  # every kept sample is trained on at least once: in the most-shared form
            chosen = {max(FORMS, key=lambda form: shares[form])}
        if own is None:
            without_chunk += 1
            if chosen - {PLAIN}:
                chosen = {PLAIN}  # nothing to ground it in: the bare pair, counted in `without_chunk`
        base = candidate.sample.with_curation(sample_id=candidate.sample_id)
        question, answer = candidate.question, candidate.answer
        if GROUNDED in chosen and own is not None:
            blocks[GROUNDED].append(
                _with_messages(base, f"{leaf_chunks_[own]}\n\n{question}", answer, form=GROUNDED, all_tokens=True)
            )
        if RAFT in chosen and own is not None:
            documents, oracle = raft_documents(candidate, own, chunks, settings, rng)
            with_oracle += oracle
            context = "\n".join(f"Document:\n{document}\n\n" for document in documents)
            blocks[RAFT].append(_with_messages(base, f"{context}\n\n{question}", answer, form=RAFT))
        if PLAIN in chosen:
            blocks[PLAIN].append(base.with_curation(form=PLAIN))
    counts = KnowledgeMixCounts(
        samples=len(knowledge),
        grounded_rows=len(blocks[GROUNDED]),
        raft_rows=len(blocks[RAFT]),
        raft_with_oracle_rows=with_oracle,
        plain_rows=len(blocks[PLAIN]),
        without_chunk=without_chunk,
        chunks=sum(len(c) for c in chunks.values()),
    )
    notes = []
    if without_chunk:
        notes.append(
            f"{without_chunk} knowledge samples have no document chunk to show (documents unreadable, or no "
            "chunk matches the prompt); they are written as plain question-answer rows"
        )
    return KnowledgeRows([*blocks[GROUNDED], *blocks[RAFT], *blocks[PLAIN]], counts, notes)


def raft_documents(
    candidate: Candidate, own: int, chunks: dict[str, list[str]], settings: KnowledgeSettings, rng: random.Random
) -> tuple[list[str], bool]:
    """The documents a RAFT row shows, shuffled, and whether the right chunk is among them.

    Distractors come from the sample's own leaf first (as InstructLab draws them from the leaf's own
    documents), then from the other knowledge leaves; they are cut to words so that the whole context
    stays within `raft_max_words` (the right chunk is never cut). With no distractor at all, the right
    chunk is shown alone, as InstructLab does for a one-document leaf."""
    mine = chunks[candidate.leaf]
    oracle = rng.random() < settings.raft_oracle_probability
    same = [i for i in range(len(mine)) if i != own]
    others = [chunk for leaf in sorted(chunks) if leaf != candidate.leaf for chunk in chunks[leaf]]
    wanted = settings.raft_documents - 1 if oracle else settings.raft_documents
    picked = [mine[i] for i in rng.sample(same, min(wanted, len(same)))]
    if len(picked) < wanted and others:
        picked += rng.sample(others, min(wanted - len(picked), len(others)))
    if not picked:
        return [mine[own]], True
    room = settings.raft_max_words - (len(mine[own].split()) if oracle else 0)
    each = max(1, room // len(picked))
    documents = [_first_words(text, each) for text in picked]
    if oracle:
        documents.append(mine[own])
    rng.shuffle(documents)
    return documents, oracle


def _first_words(text: str, count: int) -> str:
    words = text.split()
    return text if len(words) <= count else " ".join(words[:count])


def _with_messages(sample: Sample, user: str, answer: str, *, form: str, all_tokens: bool = False) -> Sample:
    from dataclasses import replace

    row = replace(sample, messages=(Message("user", user), Message("assistant", answer)))
    return row.with_curation(form=form, train_all_tokens=True if all_tokens else None)
