"""Fixtures for the curation tests (no tests here): a small real taxonomy copied from the repository,
and a generation directory written through the records' own writers (labtax.records), filled with
realistic, varied samples plus the junk each curation step must catch.

The teacher can be made to write that junk only by chance, so these samples are built here; but every
field generation would write is filled as generation fills it: the prompts are the real templates
rendered with the leaf's own training seeds, the outputs follow the templates' schemas, and the ids and
cache keys are computed as generation computes them. End-to-end tests that run generation itself are in
tests/test_generate_curate.py.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

from labtax.config import load_config
from labtax.records.generation import COMPLETE, GeneratedLeaf, GenerationIndex, write_generation_index
from labtax.records.sample import (
    ANSWER,
    CONTEXT,
    QUESTION,
    Message,
    Sample,
    SampleMetadata,
    TeacherExchange,
    samples_bytes,
)
from labtax.sdg.leaf_run import item_output
from labtax.sdg.params import SCORE_KEYS, GenerationParams, pipeline_for
from labtax.sdg.plan import cache_key
from labtax.sdg.prompts import load_prompt
from labtax.taxonomy.leaf import Leaf, LeafKind, heldout_pairs, training_seeds
from labtax.validate import load_leaves

TEACHER = "fake-teacher"

REPO_ROOT = Path(__file__).resolve().parents[1]
TIDES = "knowledge/science/oceanography/ocean_tides/qna.yaml"
GIT = "knowledge/technology/version_control/git_object_model/qna.yaml"
HAIKU = "compositional_skills/writing/freeform/haiku/qna.yaml"
UNITS = "foundational_skills/reasoning/unit_conversion/qna.yaml"
LEAF_DIRS = [TIDES, GIT, HAIKU, UNITS]
DOCUMENTS = {TIDES: "documents/ocean_tides/ocean_tides.md", GIT: "documents/git_object_model/git_object_model.md"}


def make_project(root: Path) -> Path:
    """A project with four leaves of the shipped taxonomy (two knowledge, two skills) and their documents."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text('[tool.labtax]\ntaxonomy = "taxonomy"\n')
    for leaf in LEAF_DIRS:
        source = REPO_ROOT / "taxonomy" / Path(leaf).parent
        shutil.copytree(source, root / "taxonomy" / Path(leaf).parent)
    for document in DOCUMENTS.values():
        shutil.copytree(REPO_ROOT / Path(document).parent, root / Path(document).parent, dirs_exist_ok=True)
    return root


def project_leaves(root: Path) -> list[Leaf]:
    result = load_leaves(load_config(start=root, taxonomy=root / "taxonomy"))
    assert {leaf.path for leaf in result.leaves} == set(LEAF_DIRS)
    return result.leaves


def exchange(
    leaf: Leaf, stage: str, values: dict[str, object], items: list[object], wrote: tuple[str, ...], finish: str
) -> list[TeacherExchange]:
    """One teacher request as generation records it, once per item of its answer: the real template
    rendered with the leaf's training seeds as examples, an answer in the template's free-text format
    holding every item, the request's key, and each sample's own item alone in that format."""
    template = load_prompt(stage)
    seeds = training_seeds(leaf)
    shown = [(str(n), f"- {seed.qna[0].question}") for n, seed in enumerate(seeds, start=1)][:3]
    with_examples = "examples" in template.user
    rendered = {**values, "examples": "\n\n".join(text for _, text in shown)} if with_examples else values
    messages = template.render(**rendered)
    key = hashlib.sha256(json.dumps([stage, messages], ensure_ascii=False).encode()).hexdigest()[:24]
    ones = [item_output(template.answer, item) for item in items]  # type: ignore[arg-type]
    if template.answer.kind == "items":
        output = "\n".join(f"{n}. {item}" for n, item in enumerate(items, start=1))
    else:
        output = "\n\n".join(ones)
    return [
        TeacherExchange(
            stage=stage,
            request_id=key,
            messages=tuple(Message(role, content) for role, content in messages),
            output=output,
            finish_reason=finish,
            seed_ids=tuple(seed for seed, _ in shown) if with_examples else (),
            wrote=wrote,
            item_output=one,
        )
        for one in ones
    ]


def one_request(leaf: Leaf, pairs: list[tuple[str, str]], *, finish_reason: str = "stop") -> list[Sample]:
    """Samples of `leaf` proposed by one teacher request, as its pipeline writes them: knowledge, one
    question-answer request for all of them; skills, one instruction request, then a response each."""
    if leaf.kind is LeafKind.KNOWLEDGE:
        values = {
            "domain": leaf.domain,
            "outline": leaf.document_outline,
            "chunk": " ".join(a for _, a in pairs),
            "count": len(pairs),
        }
        items: list[object] = [{"question": q, "answer": a} for q, a in pairs]
        made = [(e,) for e in exchange(leaf, "knowledge_qa", values, items, (QUESTION, ANSWER), finish_reason)]
        scores = {"faithfulness": 1, "relevance": 3, "question_quality": 3}
    else:
        task = {"task_description": leaf.task_description, "count": len(pairs)}
        proposed = exchange(leaf, "freeform_instructions", task, [q for q, _ in pairs], (QUESTION,), "stop")
        made = []
        for (question, answer), asked in zip(pairs, proposed, strict=True):
            respond = {"task_description": leaf.task_description, "context_block": "", "instruction": question}
            made.append((asked, *exchange(leaf, "response", respond, [answer], (ANSWER,), finish_reason)))
        scores = {"instruction": 1, "pair": 3}
    return [
        generated_sample(leaf, question, answer, scores, exchanges)
        for (question, answer), exchanges in zip(pairs, made, strict=True)
    ]


def generated_sample(
    leaf: Leaf, question: str, answer: str, scores: dict[str, int], exchanges: tuple[TeacherExchange, ...]
) -> Sample:
    """A sample as generation writes it for `leaf`: the pair, its scores and the exchanges that made it."""
    pipeline = pipeline_for(leaf)
    return Sample(
        messages=(Message("user", question), Message("assistant", answer)),
        metadata=SampleMetadata(
            leaf=leaf.path,
            leaf_hash=leaf.leaf_hash,
            pipeline=pipeline.name,
            prompt_version=pipeline.prompt_version,
            teacher=TEACHER,
            scores={key: scores.get(key, -1) for key in SCORE_KEYS},
            exchanges=exchanges,
        ),
    )


def grounded_request(leaf: Leaf, context: str, pairs: list[tuple[str, str]]) -> list[Sample]:
    """Samples of a grounded-skill leaf over one context, as its pipeline writes them: a context request
    (wrote the context), one question request for all the instructions, then a response each."""
    (made,) = exchange(
        leaf,
        "grounded_contexts",
        {"task_description": leaf.task_description, "count": 1},
        [context],
        (CONTEXT,),
        "stop",
    )
    asked = exchange(
        leaf,
        "grounded_questions",
        {"task_description": leaf.task_description, "count": len(pairs), "context": context},
        [q for q, _ in pairs],
        (QUESTION,),
        "stop",
    )
    samples = []
    for (question, answer), proposed in zip(pairs, asked, strict=True):
        respond = {
            "task_description": leaf.task_description,
            "context_block": f"Context:\n{context}\n\n",
            "instruction": question,
        }
        (answered,) = exchange(leaf, "response", respond, [answer], (ANSWER,), "stop")
        scores = {"instruction": 1, "pair": 3}
        samples.append(generated_sample(leaf, f"{context}\n\n{question}", answer, scores, (made, proposed, answered)))
    return samples


def candidate_answers(leaf: Leaf, question: str, answers: list[str]) -> list[Sample]:
    """Samples of a freeform skill whose one response prompt the teacher answered several times (candidates):
    each sample's answering exchange has the same request id and messages and its own raw output."""
    (asked,) = exchange(
        leaf, "freeform_instructions", {"task_description": leaf.task_description, "count": 1}, [question], (QUESTION,),
        "stop",
    )  # fmt: skip
    respond = {"task_description": leaf.task_description, "context_block": "", "instruction": question}
    samples = []
    for answer in answers:
        (answered,) = exchange(leaf, "response", respond, [answer], (ANSWER,), "stop")
        samples.append(generated_sample(leaf, question, answer, {"instruction": 1, "pair": 3}, (asked, answered)))
    return samples


def row(leaf: Leaf, question: str, answer: str, *, finish_reason: str = "stop") -> Sample:
    return one_request(leaf, [(question, answer)], finish_reason=finish_reason)[0]


def in_requests(leaf: Leaf, pairs: list[tuple[str, str]], per_request: int) -> list[Sample]:
    """Samples proposed `per_request` at a time, as generation's requests propose them."""
    return [s for i in range(0, len(pairs), per_request) for s in one_request(leaf, pairs[i : i + per_request])]


def with_answer(sample: Sample, answer: str) -> Sample:
    return replace(sample, messages=(*sample.messages[:-1], Message("assistant", answer)))


def document_sentences(root: Path, leaf_path: str) -> list[str]:
    text = (root / DOCUMENTS[leaf_path]).read_text(encoding="utf-8")
    body = " ".join(line for line in text.splitlines() if line and not line.startswith("#"))
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", body) if len(s.split()) >= 10]
    return sentences


QUESTION_OPENERS = (
    "What does the reference text explain about",
    "Summarise what is said about",
    "According to the document, what is true of",
    "Describe, in one or two sentences,",
    "What should a student remember about",
    "Explain briefly the point about",
)


def knowledge_rows(root: Path, leaf: Leaf, count: int, rng: random.Random) -> list[Sample]:
    """One or two consecutive document sentences per answer: factual, varied, in English."""
    sentences = document_sentences(root, leaf.path)
    pairs = []
    for index in range(count):
        start = (index * 2) % (len(sentences) - 1)
        answer = sentences[start] if index % 3 else f"{sentences[start]} {sentences[start + 1]}"
        subject = " ".join(re.sub(r"[^\w\s-]", "", sentences[start]).split()[2:7]).lower()
        pairs.append((f"{QUESTION_OPENERS[index % len(QUESTION_OPENERS)]} {subject}?", answer))
    return in_requests(leaf, pairs, 3)


SUBJECTS = (
    "a lighthouse in winter fog",
    "an old library at closing time",
    "a fox crossing a frozen river",
    "rain on a tin roof",
    "the first snow on a mountain village",
    "a heron waiting in the reeds",
    "autumn leaves in a city gutter",
    "a kettle left to cool",
    "fireflies over a summer meadow",
    "a night train through the desert",
    "moss growing on a temple step",
    "a child's kite caught in a pine",
    "low tide at dawn",
    "bees in the lavender",
    "a cracked teacup mended with gold",
    "wind chimes before a storm",
    "a harbour full of fishing boats",
    "the last cicada of August",
)
FIRST_LINES = (
    "grey light on the stones",
    "a slow wind rises",
    "quiet water waits",
    "the bell has gone still",
    "shadows lean eastward",
    "one crow on the wire",
    "frost along the fence",
    "warm bread on the sill",
)
MIDDLE_LINES = (
    "the path forgets every footstep",
    "a single lantern sways in the dark",
    "somewhere a door is closing softly",
    "the river carries what it cannot keep",
    "my breath becomes a small white cloud",
    "old roots drink the melting snow",
    "the clock hands pause between the hours",
    "a sparrow shakes the wet branch",
)
LAST_LINES = (
    "morning comes at last",
    "nobody answers",
    "the moon keeps its watch",
    "petals on the ground",
    "and then it is gone",
    "the kettle sings on",
    "silence fills the room",
    "tomorrow, the same",
)


def haiku_rows(leaf: Leaf, count: int, rng: random.Random) -> list[Sample]:
    pairs = []
    for index in range(count):
        subject = SUBJECTS[index % len(SUBJECTS)]
        lines = (rng.choice(FIRST_LINES), rng.choice(MIDDLE_LINES), rng.choice(LAST_LINES))
        pairs.append((f"Write a haiku about {subject}.", "\n".join(lines).capitalize() + "."))
    return in_requests(leaf, pairs, 5)


CONVERSIONS = (
    ("kilometres", "miles", 0.621371),
    ("pounds", "kilograms", 0.453592),
    ("litres", "US gallons", 0.264172),
    ("inches", "centimetres", 2.54),
    ("kilowatt-hours", "megajoules", 3.6),
    ("nautical miles", "kilometres", 1.852),
    ("square metres", "square feet", 10.7639),
    ("ounces", "grams", 28.3495),
    ("horsepower", "kilowatts", 0.7457),
)
PHRASINGS = (
    ("Convert {v} {a} to {b}.", "Multiply by {f}: {v} {a} is about {r} {b}."),
    ("How many {b} are there in {v} {a}?", "One of the {a} equals {f} {b}, so {v} {a} make roughly {r} {b}."),
    ("A recipe calls for {v} {a}. What is that in {b}?", "Since the factor is {f}, the recipe needs close to {r} {b}."),
    (
        "Express {v} {a} in {b}, showing the factor you use.",
        "The factor from {a} to {b} is {f}; {v} times {f} gives {r} {b}.",
    ),
)


def unit_rows(leaf: Leaf, count: int, rng: random.Random) -> list[Sample]:
    pairs = []
    for index in range(count):
        a, b, factor = CONVERSIONS[index % len(CONVERSIONS)]
        question, answer = PHRASINGS[(index // len(CONVERSIONS)) % len(PHRASINGS)]
        value = rng.randint(2, 950)
        fields = {"v": value, "a": a, "b": b, "f": factor, "r": f"{value * factor:.2f}"}
        pairs.append((question.format(**fields), answer.format(**fields)))
    return in_requests(leaf, pairs, 5)


@dataclass
class Generation:
    """A GEN directory plus what the tests expect curation to do with it."""

    directory: Path
    leaves: list[Leaf]
    expected_drops: dict[str, int] = field(default_factory=dict)  # "stage/reason-prefix" -> count
    good_rows: int = 0


def junk_rows(leaves: dict[str, Leaf], root: Path) -> tuple[dict[str, list[Sample]], dict[str, int]]:
    """Rows each curation step must catch, by leaf, and the drop reason each one must get."""
    tides, units, haiku = leaves[TIDES], leaves[UNITS], leaves[HAIKU]
    sentence = document_sentences(root, TIDES)[5]
    held_out_tide = heldout_pairs(tides)[0][1]
    held_out_unit = heldout_pairs(units)[0][1]
    by_leaf: dict[str, list[Sample]] = {TIDES: [], UNITS: [], HAIKU: []}
    expected: dict[str, int] = {}

    def add(leaf: str, reason: str, sample: Sample) -> None:
        by_leaf[leaf].append(sample)
        expected[reason] = expected.get(reason, 0) + 1

    add(TIDES, "filter/empty:empty-answer", row(tides, "What is a neap tide?", "   "))
    add(
        TIDES,
        "filter/truncated:truncated",
        row(
            tides,
            "What causes spring tides?",
            "Spring tides happen when the Sun and the Moon are aligned, and",
            finish_reason="length",
        ),
    )
    add(
        TIDES,
        "filter/truncated:truncated",
        row(tides, "Why do tides lag?", "The lag comes from friction between the", finish_reason="length"),
    )
    add(  # truncated, and with PII the truncation filter meets first: the report must not quote it
        TIDES,
        "filter/truncated:truncated",
        row(
            tides,
            "Where can I order printed tide tables?",
            "Order them from mary.jones@tidewatch-press.org and",
            finish_reason="length",
        ),
    )
    add(
        UNITS,
        "filter/truncated:truncated",
        row(
            units,
            "Show code converting feet to metres.",
            "```python\ndef feet_to_metres(feet):\n    return feet * 0.3048",
            finish_reason="length",
        ),
    )
    add(
        TIDES,
        "filter/length:answer-too-long",
        row(tides, "Tell me everything about tides.", " ".join([sentence] * 120)),
    )
    add(
        TIDES,
        "filter/length:question-too-short",
        row(tides, "Tides?", "Tides are the regular rise and fall of the sea."),
    )
    add(
        TIDES,
        "filter/refusal:refusal",
        row(
            tides,
            "What is an amphidromic point?",
            "As an AI language model, I cannot browse the ocean, but an amphidromic point has no tide.",
        ),
    )
    add(
        HAIKU,
        "filter/refusal:refusal",
        row(haiku, "Write a haiku about a funeral.", "I'm sorry, but I can't write poetry about that topic."),
    )
    add(
        UNITS,
        "filter/copies-question:copies-question",
        row(units, "Convert 12 metres to feet, please.", "Convert 12 metres to feet, please."),
    )
    add(
        TIDES,
        "filter/pii:pii-email",
        row(
            tides,
            "Who maintains the tide tables for this harbour?",
            "Write to the harbour master at john.smith@harbour-office.co.uk for the tables.",
        ),
    )
    add(
        TIDES,
        "filter/pii:pii-phone",
        row(
            tides,
            "How can I get today's tide times by phone?",
            "Call the tide line on +44 20 7946 0958 any time of day.",
        ),
    )
    add(
        UNITS,
        "filter/pii:pii-openai-key",
        row(
            units,
            "Which key does the conversion API use?",
            "Use the key sk-proj-Abc123def456GHI789jkl012MNO345 in the header.",
        ),
    )
    add(
        UNITS,
        "filter/pii:pii-aws-access-key",
        row(
            units,
            "What are the credentials for the converter bucket?",
            "The access key is AKIAIOSFODNN7EXAMPLE and it works for every region.",
        ),
    )
    add(
        TIDES,
        "filter/language:wrong-language",
        row(
            tides,
            "Pourquoi y a-t-il deux marées par jour ?",
            "La Lune attire plus fortement le côté de la Terre qui lui fait face, ce qui crée deux bourrelets d'eau.",
        ),
    )
    add(
        TIDES,
        "decontamination/exact",
        row(tides, held_out_tide.question.upper(), "About half, because the Sun is much farther away."),
    )
    add(
        TIDES,
        "decontamination/near",
        row(
            tides,
            "How strong is the Sun's tide generating force compared to the Moon's?",
            "Somewhat less than half of it.",
        ),
    )
    add(UNITS, "decontamination/exact", row(units, held_out_unit.question, "It is 5.4 megajoules."))
    long_held_out = next(pair.question for _, pair in heldout_pairs(tides) if len(pair.question.split()) >= 8)
    quiz = f"Here is a quiz question from the tides unit. {long_held_out} Answer it briefly."
    add(TIDES, "decontamination/contains", row(tides, quiz, "It depends on the coast and the local basin shape."))
    return by_leaf, expected


def write_generation(
    directory: Path,
    leaves: list[Leaf],
    rows_by_leaf: dict[str, list[Sample]],
    *,
    targets: dict[str, int] | None = None,
    raw_lines: dict[str, list[str]] | None = None,
) -> Path:
    """generation.json and leaves/<key>/samples.jsonl, through the records' writers, as `labtax generate`
    leaves them; `raw_lines` are appended to a leaf's file as they are (damaged lines)."""
    entries = []
    for leaf in sorted(leaves, key=lambda item: item.path):
        target = (targets or {}).get(leaf.path, 100)
        key = cache_key(leaf, TEACHER, GenerationParams(target=target))
        samples = f"leaves/{key}/samples.jsonl"
        rows = rows_by_leaf.get(leaf.path, [])
        (directory / samples).parent.mkdir(parents=True, exist_ok=True)
        damaged = "".join(line + "\n" for line in (raw_lines or {}).get(leaf.path, []))
        (directory / samples).write_bytes(samples_bytes(rows) + damaged.encode("utf-8"))
        entries.append(
            GeneratedLeaf(
                leaf=leaf.path,
                leaf_hash=leaf.leaf_hash,
                branch=leaf.branch,
                kind=str(leaf.kind),
                pipeline=pipeline_for(leaf).name,
                cache_key=key,
                samples=samples,
                rejected=f"leaves/{key}/rejected.jsonl",
                status=COMPLETE,
                kept=len(rows),
                target=target,
            )
        )
    write_generation_index(directory, GenerationIndex(TEACHER, tuple(entries)))
    return directory


def build_generation(root: Path, directory: Path, *, good_per_leaf: int = 24, seed: int = 7) -> Generation:
    """Realistic samples for every leaf, plus junk, exact and near duplicates and contaminated rows."""
    leaves = project_leaves(root)
    by_path = {leaf.path: leaf for leaf in leaves}
    rng = random.Random(seed)
    rows: dict[str, list[Sample]] = {
        TIDES: knowledge_rows(root, by_path[TIDES], good_per_leaf, rng),
        GIT: knowledge_rows(root, by_path[GIT], good_per_leaf, rng),
        HAIKU: haiku_rows(by_path[HAIKU], good_per_leaf // 2, rng),
        UNITS: unit_rows(by_path[UNITS], good_per_leaf, rng),
    }
    good = sum(len(r) for r in rows.values())
    junk, expected = junk_rows(by_path, root)
    # An exact duplicate (case and punctuation differ) and a near duplicate (a few words changed).
    original = rows[GIT][3]
    exact = with_answer(original, original.answer.upper().replace(".", " !"))
    answer_words = rows[GIT][4].answer.split()
    answer_words[len(answer_words) // 2] = "notably"
    near = with_answer(rows[GIT][4], " ".join(answer_words))
    rows[GIT] += [exact, near]
    expected["exact-duplicate/exact"] = 1
    expected["near-duplicate/near"] = 1
    for leaf, extra in junk.items():
        rows[leaf] += extra
    # Damaged lines (a killed writer, a hand edit): written as they are, after the valid rows.
    malformed = json.dumps({"messages": "not a list", "metadata": {"format": "labtax-sample/1"}})
    write_generation(directory, leaves, rows, raw_lines={TIDES: [malformed, "{not json"]})
    expected["malformed/malformed"] = 2
    return Generation(directory, leaves, expected, good)
