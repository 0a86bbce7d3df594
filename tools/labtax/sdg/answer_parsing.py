"""Reading a teacher's answer into the items a pipeline stage needs, without trusting the server.

Our prompts ask for **free text** in simple, line-oriented formats that small local teachers write
naturally and that survive a cut at `max_tokens` (InstructLab's SDG does the same: its prompt configs
ask for `[Start of Question] ... [End of Question]` blocks or `[Question] ... [Answer] ...` text and its
LLMBlock pulls the items out with tags or a regex; docs/generation.md cites them):

    items       a numbered (or bulleted) list, one item per entry           -> {"items": [str, ...]}
    blocks      items between `[Start of X]` and `[End of X]` tags           -> {"items": [str, ...]}
    qa_pairs    `Q: ...` / `A: ...` pairs                                    -> {"pairs": [{"question", "answer"}]}
    text        the whole answer                                             -> {"text": str}
    any_text    the whole answer, cut at max_tokens or not (the precheck's)  -> {"text": str}
    score       an explanation, then `Score: N` (reason before the verdict)  -> {"score": int, "explanation": str}

Every parser keeps each **complete** item written before a cut: an answer that ended at `max_tokens`
(`finish_reason=length`) loses only its last, unfinished item. A server that ignored a stop sequence is
cut at it here. A request with a JSON Schema (`response_format`, for callers that want one) is read
strictly first, then rescued from prose or fences; `structured` says whether the server honoured it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

ITEMS, BLOCKS, QA_PAIRS, TEXT, SCORE = "items", "blocks", "qa_pairs", "text", "score"
ANY_TEXT = "any_text"
FORMATS = (ITEMS, BLOCKS, QA_PAIRS, TEXT, SCORE, ANY_TEXT)


@dataclass(frozen=True)
class AnswerFormat:
    """How a stage's free-text answer is read; part of the prompt template (and so of its version)."""

    kind: str  # one of FORMATS
    tag: str = ""  # BLOCKS: the X of [Start of X] / [End of X]
    low: int = 0  # SCORE: the scale
    high: int = 1
    words: dict[str, int] = field(default_factory=dict)  # SCORE: verdict words and their score (YES: 1)
    limit: int = 0  # ITEMS, BLOCKS, QA_PAIRS: at most this many items are read (0: no limit)

    def with_limit(self, limit: int) -> AnswerFormat:
        return AnswerFormat(self.kind, self.tag, self.low, self.high, dict(self.words), limit)

    def stop_sequences(self) -> tuple[str, ...]:
        """What the server may stop at: one item past the limit of a numbered list or of Q/A pairs (the
        old InstructLab generator stopped its numbered task lists the same way)."""
        if self.kind == ITEMS and self.limit:
            return (f"\n{self.limit + 1}.",)
        if self.kind == BLOCKS and self.tag and self.limit:
            return ()  # the (n+1)-th start tag looks like every other one; the parser stops at n
        return ()


@dataclass(frozen=True)
class ParsedAnswer:
    data: dict[str, Any] | None  # None: nothing usable
    problem: str = ""  # why nothing was usable
    partial: bool = False  # the answer was cut and only its complete items were kept
    rescued: bool = False  # found in a shape other than the one asked for (prose around JSON, no tags)
    past_stop: bool = False  # the text ran past a stop sequence the server was given


def read_answer(
    text: str,
    finish_reason: str,
    answer: AnswerFormat | None,
    schema: dict[str, Any] | None = None,
    stop: tuple[str, ...] = (),
) -> ParsedAnswer:
    """The usable content of an answer. Pure: the teacher backends and the journal's replay call it alike."""
    past_stop = stopped = False
    for sequence in stop:
        at = text.find(sequence)
        if at >= 0:
            # Servers stop at the sequence (OpenAI's leave it out, transformers serve keeps it); one
            # that wrote on past it ignored it. Either way the answer ends there.
            past_stop = past_stop or bool(text[at + len(sequence) :].strip())
            text, stopped = text[:at], True
    cut = finish_reason == "length" and not stopped
    if schema is not None:
        return _read_json(text, cut, schema, past_stop)
    if answer is not None and answer.kind == ANY_TEXT:  # what a model says, as far as it got
        return ParsedAnswer({"text": text.strip()}, partial=cut, past_stop=past_stop)
    if answer is None or answer.kind == TEXT:
        body = text.strip()
        if cut:
            return ParsedAnswer(
                None, "the answer was cut off at max_tokens (finish_reason=length)", past_stop=past_stop
            )
        if not body:
            return ParsedAnswer(None, "the answer is empty", past_stop=past_stop)
        return ParsedAnswer({"text": body}, past_stop=past_stop)
    reader = {ITEMS: _read_items, BLOCKS: _read_blocks, QA_PAIRS: _read_pairs, SCORE: _read_score}[answer.kind]
    parsed = reader(text, cut, answer)
    return ParsedAnswer(parsed.data, parsed.problem, parsed.partial, parsed.rescued, past_stop)


# --- lists ----------------------------------------------------------------------------------------

_ITEM_START = re.compile(r"^\s*(?:(?:\d{1,3}|[A-Za-z])[.):]|[-*•])\s+(.*\S)?\s*$")
_EMPHASIS = re.compile(r"^(\*\*|__|\"|“)(.*?)(\*\*|__|\"|”)$")


_PLACEHOLDER = re.compile(r"^(?:<[^<>]{0,40}>|\.\.\.|…)$")


def _clean(item: str) -> str:
    """An item without surrounding emphasis or quotes; "" for a placeholder copied from the prompt (`<...>`)."""
    item = item.strip()
    match = _EMPHASIS.match(item)
    item = match.group(2).strip() if match else item
    return "" if _PLACEHOLDER.match(item) else item


def _limited(items: list[str], limit: int) -> list[str]:
    return items[:limit] if limit else items


def _read_items(text: str, cut: bool, answer: AnswerFormat) -> ParsedAnswer:
    """A numbered or bulleted list. An item ends at the next item or at a blank line; a preamble or a
    closing remark outside the list is ignored."""
    items: list[str] = []
    current: list[str] | None = None
    for line in text.splitlines():
        match = _ITEM_START.match(line)
        if match:
            if current is not None:
                items.append(" ".join(current))
            current = [match.group(1) or ""]
        elif current is not None and line.strip():
            current.append(line.strip())
        elif current is not None:
            items.append(" ".join(current))
            current = None
    last_open = current is not None
    if current is not None:
        items.append(" ".join(current))
    if cut and last_open and items:
        items.pop()  # the item being written when the answer was cut
    items = _limited([c for c in map(_clean, items) if c], answer.limit)
    if not items:
        rescued = _whole_answer(text, cut) if answer.limit == 1 else []
        if rescued:  # the one item asked for, written without a list marker
            return ParsedAnswer({"items": rescued}, rescued=True)
        return ParsedAnswer(None, _nothing(cut, "a numbered list"))
    return ParsedAnswer({"items": items}, partial=cut)


def _whole_answer(text: str, cut: bool) -> list[str]:
    body = text.strip()
    if cut or not body or "\n\n" in body or len(body) > 2000:
        return []
    return [_clean(body)]


def _nothing(cut: bool, shape: str) -> str:
    if cut:
        return f"the answer was cut off at max_tokens (finish_reason=length) before one complete item of {shape}"
    return f"the answer holds no {shape}"


def _read_blocks(text: str, cut: bool, answer: AnswerFormat) -> ParsedAnswer:
    start, end = f"[Start of {answer.tag}]", f"[End of {answer.tag}]"
    starts = [m.end() for m in re.finditer(re.escape(start), text)]
    items: list[str] = []
    for n, begin in enumerate(starts):
        stop = starts[n + 1] - len(start) if n + 1 < len(starts) else len(text)
        closing = text.find(end, begin, stop)
        body = text[begin : closing if closing >= 0 else stop].strip()
        # A block without its end tag is complete when another block follows or the answer was not cut.
        complete = closing >= 0 or n + 1 < len(starts) or not cut
        if body and complete:
            items.append(body)
    items = _limited(items, answer.limit)
    if items:
        return ParsedAnswer({"items": items}, partial=cut)
    if start not in text:
        rescued = [text.strip()] if text.strip() and not cut else []
        if rescued:  # the whole answer is the one item, without the tags
            return ParsedAnswer({"items": rescued}, rescued=True)
    return ParsedAnswer(None, _nothing(cut, f"[Start of {answer.tag}] blocks"))


_Q = re.compile(r"^\s*(?:\*\*)?(?:Q|Question)\s*\d*\s*(?:\*\*)?\s*[:.)]\s*(?:\*\*)?\s*(.*)$", re.I)
_A = re.compile(r"^\s*(?:\*\*)?(?:A|Answer)\s*\d*\s*(?:\*\*)?\s*[:.)]\s*(?:\*\*)?\s*(.*)$", re.I)


_BARE_A = re.compile(r"^\s*A\s*:")


def _paragraphs(lines: list[str]) -> int:
    """How many paragraphs (runs of non-blank lines) `lines` hold."""
    count, blank = 0, True
    for line in lines:
        if line.strip() and blank:
            count += 1
        blank = not line.strip()
    return count


def _first_paragraphs(lines: list[str]) -> list[str]:
    """`lines` without their last paragraph (and the blank lines around it)."""
    end = len(lines)
    while end and not lines[end - 1].strip():
        end -= 1
    while end and lines[end - 1].strip():
        end -= 1
    return lines[:end]


def _read_pairs(text: str, cut: bool, answer: AnswerFormat) -> ParsedAnswer:
    """`Q: ...` / `A: ...` pairs (also `Question 1:` / `Answer 1:`); an answer may span lines."""
    pairs: list[dict[str, str]] = []
    question: list[str] | None = None
    reply: list[str] | None = None

    def close() -> None:
        if question is not None and reply is not None:
            q, a = _clean(" ".join(question)), _clean("\n".join(reply))
            if q and a:
                pairs.append({"question": q, "answer": a})

    plain = False  # the open reply began with a bare `A:`
    for line in text.splitlines():
        q_match, a_match = _Q.match(line), _A.match(line)
        if q_match:
            close()
            question, reply = [q_match.group(1).strip()], None
        elif a_match and question is not None and reply is None:
            reply, plain = [a_match.group(1).strip()], _BARE_A.match(line) is not None
        elif reply is not None and plain and _BARE_A.match(line) and _paragraphs(reply) > 1:
            # A second bare `A:` after a paragraph break: the paragraph before it was a question without
            # its `Q:` (a small teacher wrote "B: <question>"). The reply ends at the break; the
            # unlabelled pair is not guessed at. (`Answer:` or `A)` inside a reply stays part of it.)
            reply = _first_paragraphs(reply)
            close()
            question = reply = None
        elif reply is not None:
            reply.append(line.rstrip())
        elif question is not None and line.strip():
            question.append(line.strip())
    open_pair = question is not None
    if cut and open_pair:
        question = None  # the pair being written when the answer was cut
    close()
    pairs = pairs[: answer.limit] if answer.limit else pairs
    if not pairs:
        return ParsedAnswer(None, _nothing(cut, "Q:/A: pairs"))
    return ParsedAnswer({"pairs": pairs}, partial=cut and open_pair)


# --- verdicts -------------------------------------------------------------------------------------

_SCORE_LINE = re.compile(r"(?:score|rating|answer|verdict|judg(?:e)?ment)\s*\**\s*[:=]\s*\**\s*([A-Za-z]+|-?\d+)", re.I)
_OUT_OF = re.compile(r"(-?\d+)\s*(?:/|out of)\s*\d+", re.I)
_TAGGED = re.compile(r"\[Start of (?:Score|Answer)\]\s*([A-Za-z]+|-?\d+)", re.I)


def _read_score(text: str, cut: bool, answer: AnswerFormat) -> ParsedAnswer:
    """The last `Score: N` (or a verdict word) of a judge's answer, and the reasoning before it."""
    words = {word.lower(): value for word, value in answer.words.items()}
    found: list[tuple[int, str]] = []
    for pattern in (_SCORE_LINE, _TAGGED):
        for match in pattern.finditer(text):
            found.append((match.start(), match.group(1)))
    rescued = False
    if not found:
        found = [(m.start(), m.group(1)) for m in _OUT_OF.finditer(text)]
        rescued = bool(found)
    if not found and words:
        bare = re.findall(r"\b(" + "|".join(map(re.escape, words)) + r")\b", text, re.I)
        if len(set(map(str.lower, bare))) == 1:  # one verdict word, however often: unambiguous
            found, rescued = [(text.lower().rfind(bare[-1].lower()), bare[-1])], True
    if not found:
        return ParsedAnswer(None, _nothing(cut, "'Score:' line"))
    at, raw = max(found)
    value = words.get(raw.lower()) if not raw.lstrip("-").isdigit() else int(raw)
    if value is None or not answer.low <= value <= answer.high:
        return ParsedAnswer(None, f"the score {raw!r} is not on the scale {answer.low}-{answer.high}")
    explanation = re.sub(r"^\s*(?:\[Start of Evaluation\]|Explanation\s*:)\s*", "", text[:at], flags=re.I)
    explanation = explanation.replace("[End of Evaluation]", "").strip()
    return ParsedAnswer({"score": value, "explanation": explanation[:2000]}, rescued=rescued)


# --- JSON, for requests that carry a schema -------------------------------------------------------

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def _read_json(text: str, cut: bool, schema: dict[str, Any], past_stop: bool) -> ParsedAnswer:
    if cut:
        return ParsedAnswer(None, "the answer was cut off at max_tokens (finish_reason=length)", past_stop=past_stop)
    data, rescued, problem = parse_json_answer(text, validator_for(schema))
    return ParsedAnswer(data, problem, rescued=rescued, past_stop=past_stop)


def parse_json_answer(text: str, validator: Any) -> tuple[dict[str, Any] | None, bool, str]:
    """(object, rescued, problem): the JSON object in `text` that `validator` accepts.

    Strict first (the whole text is the object, as structured output guarantees); then the fallback
    for servers that ignore `response_format`: fenced blocks, then every `{` in turn. `rescued` says
    the fallback found it; `problem` says why nothing was found.
    """
    problem = "the answer is not JSON"
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        value = None
    else:
        problem = _schema_problem(value, validator)
        if isinstance(value, dict) and not problem:
            return value, False, ""
    for candidate in _embedded_objects(text):
        if isinstance(candidate, dict) and not _schema_problem(candidate, validator):
            return candidate, True, ""
    return None, False, problem


def _schema_problem(value: object, validator: Any) -> str:
    if not isinstance(value, dict):
        return "the answer is not a JSON object"
    error = next(iter(validator.iter_errors(value)), None)
    if error is None:
        return ""
    where = "/".join(str(p) for p in error.absolute_path) or "(top)"
    return f"the answer does not follow the schema at {where}: {error.message[:200]}"


def _embedded_objects(text: str) -> list[object]:
    found: list[object] = []
    decoder = json.JSONDecoder()
    sources = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for source in sources:
        for match in re.finditer(r"\{", source):
            try:
                value, _ = decoder.raw_decode(source, match.start())
            except (json.JSONDecodeError, RecursionError):
                continue
            found.append(value)
            if len(found) > 50:  # a pathological answer; enough tries
                return found
    return found


_validators: dict[str, Any] = {}


def validator_for(schema: dict[str, Any]) -> Any:
    """A compiled JSON Schema validator, cached: compiling is costly, the schemas are few."""
    key = json.dumps(schema, sort_keys=True)
    validator = _validators.get(key)
    if validator is None:
        from jsonschema import Draft202012Validator

        validator = _validators[key] = Draft202012Validator(schema)
    return validator
