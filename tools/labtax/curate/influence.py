"""Influence scoring, Montessori-Instruct made affordable: how much does one optimisation step on a
candidate sample lower the student's loss on a reference set (the held-out seeds)?

For each candidate: one plain SGD step on the candidate's assistant tokens, the mean reference loss
measured again, the weights restored from a copy. influence = loss_before - loss_after, so positive
means "the student learns from this". The reference set is the leaves' training seeds, disjoint from
the held-out seeds evaluation scores. Candidates at or below `min_influence` are dropped, and where the
teacher gave one prompt several different answers (candidates, as generation records them in the
samples' `exchanges`) the best and worst answers become a chosen/rejected pair for tuning the teacher
(DPO): the exact prompt the teacher was sent, and its two raw answers.
Scores are journalled per candidate, so an interrupted run resumes where it stopped.
Cost model and when to use it: docs/influence.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labtax.curate.samples import Candidate
from labtax.curate.settings import InfluenceSettings
from labtax.errors import UsageError
from labtax.records.curation import PairMetadata, PreferencePair
from labtax.records.sample import Message
from labtax.taxonomy.leaf import Leaf, LeafKind, heldout_pairs, training_seeds
from labtax.text import normalise

JOURNAL_FORMAT = "labtax-influence/1"


@dataclass(frozen=True)
class ReferenceExample:
    """A held-out seed as a chat exchange."""

    leaf: str
    messages: tuple[dict[str, str], ...]


@dataclass
class InfluenceRun:
    scores: dict[str, float]
    reference_loss: float
    scored: int
    resumed: int
    seconds: float
    parameters: int

    @property
    def seconds_per_candidate(self) -> float:
        return self.seconds / self.scored if self.scored else 0.0


def reference_set(leaves: Sequence[Leaf], size: int, seed: int) -> list[ReferenceExample]:
    """The influence reference set: the leaves' *training* seeds, never their held-out ones, so that the
    data chosen for lowering the reference loss is not chosen for the evaluation's questions
    (docs/influence.md). Asked as evaluation asks: knowledge closed-book, a grounded skill with its context."""
    examples = []
    for leaf in sorted(leaves, key=lambda leaf: leaf.path):
        held_out = {normalise(pair.question) for _, pair in heldout_pairs(leaf)}
        for example in training_seeds(leaf):
            for pair in example.qna:
                if normalise(pair.question) in held_out:
                    continue
                grounded = example.context and leaf.kind is not LeafKind.KNOWLEDGE
                question = f"{example.context}\n\n{pair.question}" if grounded else pair.question
                examples.append(
                    ReferenceExample(
                        leaf.path,
                        ({"role": "user", "content": question}, {"role": "assistant", "content": pair.answer}),
                    )
                )
    if len(examples) > size:
        chosen = sorted(random.Random(seed).sample(range(len(examples)), size))
        examples = [examples[i] for i in chosen]
    return examples


def student_fingerprint(student: Path) -> str:
    """Identifies the student weights cheaply: config, and each weight file's name, size and first/last MiB."""
    digest = hashlib.sha256()
    for path in sorted(student.iterdir()):
        if path.name == "config.json" or path.suffix in (".safetensors", ".bin", ".pt"):
            size = path.stat().st_size
            digest.update(f"{path.name}\0{size}\0".encode())
            with path.open("rb") as handle:
                digest.update(handle.read(1 << 20))
                if size > 2 << 20:
                    handle.seek(-(1 << 20), os.SEEK_END)
                    digest.update(handle.read())
    return digest.hexdigest()


def encode_exchange(tokenizer: Any, messages: Sequence[dict[str, str]], max_tokens: int) -> tuple[list[int], list[int]]:
    """Token ids and labels for a chat exchange; only the final assistant turn is learned (-100 elsewhere).

    Too long for `max_tokens`: the start of the prompt is cut (a long grounding context), so the
    answer, which is what the loss measures, is kept whole when it fits.
    """
    full = tokenizer.apply_chat_template(list(messages), tokenize=False)
    prompt = tokenizer.apply_chat_template(list(messages[:-1]), tokenize=False, add_generation_prompt=True)
    if not full.startswith(prompt):  # a template that rewrites earlier turns: learn the whole text
        prompt = ""
    prompt_ids = tokenizer(prompt, add_special_tokens=False, verbose=False)["input_ids"] if prompt else []
    answer_ids = tokenizer(full[len(prompt) :], add_special_tokens=False, verbose=False)["input_ids"]
    if len(answer_ids) >= max_tokens:
        return answer_ids[:max_tokens], answer_ids[:max_tokens]
    prompt_ids = (
        prompt_ids[len(prompt_ids) + len(answer_ids) - max_tokens :]
        if len(prompt_ids) + len(answer_ids) > max_tokens
        else prompt_ids
    )
    return prompt_ids + answer_ids, [-100] * len(prompt_ids) + answer_ids


def _reference_batches(
    encoded: Sequence[tuple[list[int], list[int]]], pad_id: int, device: Any, size: int = 8
) -> list[Any]:
    """Right-padded batches of similar lengths (fewer padded positions), as (ids, labels, mask) tensors."""
    import torch

    ordered = sorted(
        (pair for pair in encoded if any(label != -100 for label in pair[1][1:])), key=lambda pair: len(pair[0])
    )
    batches = []
    for start in range(0, len(ordered), size):
        chunk = ordered[start : start + size]
        width = max(len(ids) for ids, _ in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        labels = torch.full((len(chunk), width), -100, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, (row_ids, row_labels) in enumerate(chunk):
            ids[row, : len(row_ids)] = torch.tensor(row_ids)
            labels[row, : len(row_labels)] = torch.tensor(row_labels)
            mask[row, : len(row_ids)] = 1
        batches.append((ids.to(device), labels.to(device), mask.to(device)))
    return batches


def _mean_example_loss(model: Any, batches: Sequence[Any]) -> float:
    """The mean over examples of each example's mean token loss (long answers don't outweigh short ones)."""
    import torch
    import torch.nn.functional as F

    total, count = 0.0, 0
    with torch.no_grad():
        for ids, labels, mask in batches:
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
            target = labels[:, 1:]
            losses = F.cross_entropy(logits.transpose(1, 2), target, ignore_index=-100, reduction="none")
            valid = (target != -100).float()
            total += float(((losses * valid).sum(1) / valid.sum(1)).sum())
            count += ids.shape[0]
    return total / count


def score_candidates(
    candidates: Sequence[Candidate],
    reference: Sequence[ReferenceExample],
    settings: InfluenceSettings,
    seed: int,
    journal_path: Path,
) -> InfluenceRun:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert settings.student is not None
    student = Path(settings.student)
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(student, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(student, local_files_only=True, dtype=torch.float32)
    model.eval()  # no dropout: the same candidate always gives the same step
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)  # type: ignore[arg-type]
    parameters = [p for p in model.parameters() if p.requires_grad]
    saved = [p.detach().clone() for p in parameters]

    encoded_reference = [encode_exchange(tokenizer, r.messages, settings.max_tokens) for r in reference]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    batches = _reference_batches(encoded_reference, pad_id or 0, device)
    if not batches:
        raise UsageError("the influence reference set has no answer tokens; raise [influence] max_tokens")
    reference_key = hashlib.sha256(json.dumps([r.messages for r in reference], sort_keys=True).encode()).hexdigest()
    run_key = hashlib.sha256(
        f"{JOURNAL_FORMAT}\0{student_fingerprint(student)}\0{reference_key}\0{settings.learning_rate!r}\0"
        f"{settings.max_tokens}\0{seed}".encode()
    ).hexdigest()
    done = _read_journal(journal_path, run_key)

    def reference_loss() -> float:
        return _mean_example_loss(model, batches)

    before = reference_loss()
    scores: dict[str, float] = {}
    resumed = scored = 0
    started = time.perf_counter()
    journal_path.parent.mkdir(parents=True, exist_ok=True)
    with journal_path.open("a", encoding="utf-8") as journal:
        for candidate in candidates:
            if candidate.sample_id in done:
                scores[candidate.sample_id] = done[candidate.sample_id]
                resumed += 1
                continue
            chat = [{"role": m.role, "content": m.content} for m in candidate.sample.messages]
            ids, labels = encode_exchange(tokenizer, chat, settings.max_tokens)
            model.zero_grad(set_to_none=True)
            _loss(model, ids, labels, device).backward()
            with torch.no_grad():
                for parameter in parameters:
                    if parameter.grad is not None:
                        parameter.add_(parameter.grad, alpha=-settings.learning_rate)
            after = reference_loss()
            with torch.no_grad():
                for parameter, copy in zip(parameters, saved, strict=True):
                    parameter.copy_(copy)
            influence = round(before - after, 9)
            scores[candidate.sample_id] = influence
            scored += 1
            journal.write(json.dumps({"run": run_key, "sample_id": candidate.sample_id, "influence": influence}) + "\n")
            journal.flush()
    seconds = time.perf_counter() - started
    return InfluenceRun(scores, round(before, 9), scored, resumed, seconds, sum(p.numel() for p in parameters))


def _loss(model: Any, ids: list[int], labels: list[int], device: Any) -> Any:
    import torch

    input_ids = torch.tensor([ids], device=device)
    label_ids = torch.tensor([labels], device=device)
    if not any(label != -100 for label in labels[1:]):
        return torch.zeros((), device=device, requires_grad=True)
    return model(input_ids=input_ids, labels=label_ids).loss


def _read_journal(path: Path, run_key: str) -> dict[str, float]:
    """Scores from an interrupted run with the same student, reference set and settings."""
    done: dict[str, float] = {}
    if not path.is_file():
        return done
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by the interruption
        if (
            isinstance(record, dict)
            and record.get("run") == run_key
            and isinstance(record.get("influence"), float | int)
        ):
            done[str(record["sample_id"])] = float(record["influence"])
    return done


def preference_pairs(candidates: Sequence[Candidate], settings: InfluenceSettings) -> list[PreferencePair]:
    """Chosen/rejected pairs of the teacher's own answers to one prompt (Montessori-Instruct's DPO data).

    Samples are grouped by the teacher request whose answer made them (their exchange that wrote the
    answer). A group makes pairs only when the teacher gave that very prompt two or more *different*
    answers: generation asks for several candidates per prompt where pairs are wanted and records each
    candidate as its sample's answering exchange, with the request's id and messages and its own raw
    output (docs/influence.md). Samples cut from one answer (a knowledge request's three pairs) are one
    answer, scored by their mean influence. The best answer is paired with the worst, the second best
    with the second worst, up to `pairs_per_prompt`, while the chosen one helped strictly more. A pair is
    the prompt exactly as sent and the two raw answers as assistant turns: the conversation the teacher had.
    """
    groups: dict[tuple[str, str], dict[str, list[Candidate]]] = {}
    for candidate in candidates:
        answered = candidate.answered_by
        if candidate.influence is None or answered is None:
            continue
        groups.setdefault((candidate.leaf, answered.request_id), {}).setdefault(answered.output, []).append(candidate)
    pairs = []
    for (leaf, request_id), answers in sorted(groups.items()):
        if len(answers) < 2:
            continue  # one answer to this prompt: nothing to prefer it to
        ranked = sorted(
            (
                (statistics.fmean(float(c.influence or 0.0) for c in members), sorted(members, key=_by_id))
                for members in answers.values()
            ),
            key=lambda item: (-item[0], item[1][0].sample_id),
        )
        for rank in range(min(settings.pairs_per_prompt, len(ranked) // 2)):
            (good, chosen), (bad, rejected) = ranked[rank], ranked[-1 - rank]
            if good <= bad:
                break
            asked, other = chosen[0].answered_by, rejected[0].answered_by
            assert asked is not None and other is not None  # grouped by it
            pairs.append(
                PreferencePair(
                    prompt=asked.messages,
                    chosen=(Message("assistant", asked.output),),
                    rejected=(Message("assistant", other.output),),
                    metadata=PairMetadata(
                        leaf=leaf,
                        group=f"{leaf}#{request_id}",
                        prompt_stage=asked.stage,
                        chosen_sample_id=chosen[0].sample_id,
                        rejected_sample_id=rejected[0].sample_id,
                        chosen_influence=round(good, 9),
                        rejected_influence=round(bad, 9),
                    ),
                )
            )
    return pairs


def _by_id(candidate: Candidate) -> str:
    return candidate.sample_id
