"""Quality filters, datatrove style: each filter is one small callable that looks at one sample and
returns a `Verdict` (keep, or drop with a reason id and the text that triggered it). The pipeline
runs them in order and stops at the first drop, so every dropped sample has exactly one reason in
curation.json.

Language detection uses py3langid (langid.py's maintained fork; its model ships in the wheel, so it
works offline and gives the same answer every time). Texts too short to judge are kept.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from labtax.curate.samples import Candidate
from labtax.curate.settings import FilterSettings
from labtax.text import excerpt, jaccard, normalise, shingles, words


@dataclass(frozen=True)
class Verdict:
    keep: bool
    reason: str = ""
    detail: str = ""


KEEP = Verdict(True)


def drop(reason: str, detail: str = "") -> Verdict:
    return Verdict(False, reason, excerpt(detail, 120))


SampleFilter = Callable[[Candidate], Verdict]


@dataclass(frozen=True)
class EmptyFilter:
    """An empty question or answer teaches nothing."""

    name = "empty"

    def __call__(self, sample: Candidate) -> Verdict:
        if not sample.question.strip():
            return drop("empty-question")
        if not sample.answer.strip():
            return drop("empty-answer")
        return KEEP


@dataclass(frozen=True)
class TruncationFilter:
    """Answers the teacher was cut off in: the server's own `finish_reason` of "length" (it stopped at
    `max_tokens`), as generation recorded it for the request that wrote the answer, *and* the answer is
    where the cut fell, at the end of that request's output. A request that wrote several items (a list of
    question-answer pairs) and was cut lost only its last, unfinished item (generation keeps the complete
    ones before it, sdg/answer_parsing.py); the items before the cut are whole and stay. Nothing else:
    the text alone cannot tell a truncation from a complete answer that ends on "**$12**", "C++" or a
    URL; `looks_truncated` only flags such answers in the report."""

    name = "truncated"

    def __call__(self, sample: Candidate) -> Verdict:
        if cut_inside_answer(sample):
            return drop("truncated", "finish_reason=length")
        return KEEP


def cut_inside_answer(sample: Candidate) -> bool:
    """Whether the cut at `max_tokens` fell inside this sample's answer. An answer of several items (a
    list of question-answer pairs, of instructions) that was cut keeps only its complete items
    (`labtax.sdg.answer_parsing`): one that ends before the cut output does is complete. Only when the
    answer runs to the output's end, or cannot be found in it, is it taken as cut."""
    exchange = sample.answered_by
    if exchange is None or exchange.finish_reason != "length":
        return False
    answer = sample.answer.strip()
    at = exchange.output.rfind(answer) if answer else -1
    return at < 0 or not exchange.output[at + len(answer) :].strip()


# Words a finished English answer rarely ends on (a teacher that hit its token limit stops mid-phrase);
# only the clearest ones, so that a poem line or a list item ending on "is" or "with" is not flagged.
_DANGLING_WORDS = frozenset("a an the and or but of to because than".split())
_OPENING = (",", ";", "(", "[", "{", "–", "—", "\\")
_URL = re.compile(r"^<?https?://\S+$")
_OPERATOR_ONLY = re.compile(r"^[-+*/=&|<>~^:]+$")


def looks_truncated(answer: str) -> str | None:
    """Why a kept answer looks cut off (for the report's flags), or None. Markdown emphasis and code
    marks are set aside first, a final URL counts as finished, and so does a word such as "C++"."""
    text = answer.rstrip()
    if text.count("```") % 2:
        return "unclosed code fence"
    tokens = text.split()
    if not tokens:
        return None
    last = tokens[-1].strip("*_`\"'»”’")
    if not last or _URL.match(last):
        return None
    if last.endswith(_OPENING) or _OPERATOR_ONLY.match(last) or (last.endswith(":") and len(tokens) > 3):
        return f"ends on {last[-1]!r}: …{excerpt(text[-40:], 40)}"
    if last.casefold() in _DANGLING_WORDS and len(tokens) > 3:
        return f"ends on {last!r}: …{excerpt(text[-40:], 40)}"
    return None


@dataclass(frozen=True)
class LengthFilter:
    settings: FilterSettings
    name = "length"

    def __call__(self, sample: Candidate) -> Verdict:
        s = self.settings
        question_words, answer_words = len(words(sample.question)), len(words(sample.answer))
        if question_words < s.question_min_words:
            return drop("question-too-short", f"{question_words} words < {s.question_min_words}")
        if question_words > s.question_max_words:
            return drop("question-too-long", f"{question_words} words > {s.question_max_words}")
        if answer_words < s.answer_min_words:
            return drop("answer-too-short", f"{answer_words} words < {s.answer_min_words}")
        if answer_words > s.answer_max_words:
            return drop("answer-too-long", f"{answer_words} words > {s.answer_max_words}")
        return KEEP


REFUSAL_PATTERNS = (
    r"\bas an ai\b",
    r"\bas a(n)? (large )?language model\b",
    r"\bas an? (ai|artificial intelligence) (assistant|model|language model)\b",
    r"\bi(?: a|')m (?:sorry|afraid),? (?:but )?i (?:can ?not|can't|am unable|'m unable|won't)\b",
    r"\bi (?:can ?not|can't|am unable to|'m unable to|am not able to|won't) "
    r"(?:help|assist|provide|comply|fulfil|fulfill|answer|do that)\b",
    r"\bi don't have (?:personal )?(?:opinions|feelings|access to real-time)\b",
    r"\bmy (?:knowledge cutoff|training data)\b",
    r"\bi apologi[sz]e,? but\b",
)


@dataclass(frozen=True)
class RefusalFilter:
    """Refusals and assistant boilerplate ("As an AI language model..."): they teach the student to refuse."""

    settings: FilterSettings
    name = "refusal"

    def __call__(self, sample: Candidate) -> Verdict:
        match = _refusal_regex(self.settings.extra_refusal_patterns).search(sample.answer)
        if match:
            return drop("refusal", match.group(0))
        return KEEP


@cache
def _refusal_regex(extra: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in (*REFUSAL_PATTERNS, *extra)), re.IGNORECASE)


@dataclass(frozen=True)
class CopyFilter:
    """Answers that repeat the question instead of answering it."""

    settings: FilterSettings
    name = "copies-question"

    def __call__(self, sample: Candidate) -> Verdict:
        question, answer = normalise(sample.question), normalise(sample.answer)
        if not answer:
            return KEEP
        if answer == question or (len(answer) >= 20 and question.endswith(answer)):
            return drop("copies-question", sample.answer)
        similarity = jaccard(shingles(question, 1), shingles(answer, 1))
        if similarity >= self.settings.copy_similarity:
            return drop("copies-question", f"word overlap {similarity:.2f}")
        return KEEP


_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})\b")
# International (+CC ...) or North American ((555) 123-4567, 555-123-4567) numbers: at least 10 digits
# in groups, so dates, ISBNs written with spaces, version numbers and plain integers don't match.
_PHONE = re.compile(
    r"(?<![\w.+-])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?|\d{2,4}[\s.-])\d{3,4}[\s.-]\d{3,4}(?![\w-])"
)
_SECRETS = (
    ("aws-access-key", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("github-token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b")),
    ("github-token", re.compile(r"\bgithub_pat_[A-Za-z0-9_]{40,}\b")),
    ("huggingface-token", re.compile(r"\bhf_[A-Za-z0-9]{30,}\b")),
    ("openai-key", re.compile(r"\bsk-(?:proj-)?[A-Za-z0-9_-]{20,}\b")),
    ("slack-token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b")),
    ("google-api-key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
    ("private-key", re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----")),
    (
        "credential-assignment",
        re.compile(
            r"(?i)\b(?:api[_-]?key|secret|access[_-]?token|auth[_-]?token|password)\b\s*[:=]\s*['\"]?[A-Za-z0-9_\-/+]{16,}"
        ),
    ),
)


def find_pii(text: str, allowed_email_domains: tuple[str, ...]) -> tuple[str, str] | None:
    """The first PII in `text` as (reason, masked match), or None."""
    for match in _EMAIL.finditer(text):
        domain = match.group(1).casefold()
        if not any(domain == d or domain.endswith("." + d) for d in allowed_email_domains):
            return "pii-email", _mask(match.group(0))
    for name, pattern in _SECRETS:
        found = pattern.search(text)
        if found:
            return f"pii-{name}", _mask(found.group(0))
    phone = _PHONE.search(text)
    if phone and sum(ch.isdigit() for ch in phone.group(0)) >= 10:
        return "pii-phone", _mask(phone.group(0))
    return None


@dataclass(frozen=True)
class PiiFilter:
    """Personal data and credentials: e-mail addresses (except reserved example domains), phone numbers,
    API keys and tokens. The model must not learn to emit them."""

    settings: FilterSettings
    name = "pii"

    def __call__(self, sample: Candidate) -> Verdict:
        for text in (sample.answer, sample.question):
            found = find_pii(text, self.settings.allowed_email_domains)
            if found:
                return Verdict(False, found[0], found[1])
        return KEEP


def _mask(secret: str) -> str:
    """Reports show where the PII was, not the PII itself."""
    return secret[:4] + "…" if len(secret) > 4 else "…"


@dataclass(frozen=True)
class LanguageFilter:
    """Text confidently detected as another language than the target. Leaves whose task is another
    language (translation) are listed in `language_skip_leaves`."""

    settings: FilterSettings
    name = "language"

    def __call__(self, sample: Candidate) -> Verdict:
        s = self.settings
        if any(fnmatch.fnmatch(sample.leaf, pattern) for pattern in s.language_skip_leaves):
            return KEEP
        text = f"{sample.question}\n{sample.answer}"
        if len(words(text)) < s.language_min_words:
            return KEEP
        language, confidence = detect_language(text)
        if language != s.language and confidence >= s.language_min_confidence:
            return drop("wrong-language", f"{language} ({confidence:.2f})")
        return KEEP


@cache
def _identifier() -> Any:
    import py3langid.langid as langid

    return langid.LanguageIdentifier.from_modelpath(langid.MODEL_DIR / langid.MODEL_FILE, norm_probs=True)


def detect_language(text: str) -> tuple[str, float]:
    """The ISO 639-1 code py3langid picks and its normalised probability."""
    language, probability = _identifier().classify(text)
    return str(language), float(probability)


def build_filters(settings: FilterSettings) -> list[tuple[str, SampleFilter]]:
    """The enabled filters in their fixed order: cheap structural checks first, the language model last."""
    every: list[tuple[str, SampleFilter]] = [
        ("empty", EmptyFilter()),
        ("truncated", TruncationFilter()),
        ("length", LengthFilter(settings)),
        ("refusal", RefusalFilter(settings)),
        ("copies-question", CopyFilter(settings)),
        ("pii", PiiFilter(settings)),
        ("language", LanguageFilter(settings)),
    ]
    return [(name, check) for name, check in every if name in settings.enabled]


def first_failure(filters: list[tuple[str, SampleFilter]], sample: Candidate) -> tuple[str, Verdict] | None:
    """The first filter that drops the sample, with its verdict; None when every filter keeps it."""
    for name, check in filters:
        verdict = check(sample)
        if not verdict.keep:
            return name, verdict
    return None
