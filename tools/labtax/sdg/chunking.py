"""Splitting a knowledge leaf's documents into overlapping chunks for question-answer generation.

Chunks are measured in tokens of a tokenizer when one is at hand (the local teacher's own), else in
whitespace-separated words: a word is about 1.3 BPE tokens of English, so a word count is a stable,
tokenizer-free proxy that keeps the cache key independent of any download. Either way a chunk is a
slice of the original text (spans, not re-joined words), so Markdown lists, tables and code keep
their line breaks. Chunks never span two files.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# A tokenizer for chunking: text -> the (start, end) character span of every token.
Spans = Callable[[str], list[tuple[int, int]]]

_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Chunk:
    source: str  # the document's path
    index: int  # position within the document
    text: str


def word_spans(text: str) -> list[tuple[int, int]]:
    return [match.span() for match in _WORD.finditer(text)]


def tokenizer_spans(tokenizer: object) -> Spans:
    """Token spans from a Hugging Face fast tokenizer's offset mapping."""

    def spans(text: str) -> list[tuple[int, int]]:
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)  # type: ignore[operator]
        return [(int(start), int(end)) for start, end in encoded["offset_mapping"] if end > start]

    return spans


def chunk_text(text: str, size: int, overlap: int, spans: Spans = word_spans) -> list[str]:
    """Windows of `size` units advancing by `size - overlap`; the last window may be shorter."""
    if size < 1 or not 0 <= overlap < size:
        raise ValueError("chunk size must be positive and the overlap smaller than it")
    units = spans(text)
    if not units:
        return []
    step = size - overlap
    chunks = []
    for start in range(0, len(units), step):
        window = units[start : start + size]
        chunks.append(text[window[0][0] : window[-1][1]].strip())
        if start + size >= len(units):
            break
    return [chunk for chunk in chunks if chunk]


def chunk_documents(
    documents: Sequence[tuple[str, str]], size: int, overlap: int, spans: Spans = word_spans
) -> list[Chunk]:
    """(path, text) pairs to chunks, in document order."""
    chunks: list[Chunk] = []
    for source, text in documents:
        for index, piece in enumerate(chunk_text(_strip_front_matter(text), size, overlap, spans)):
            chunks.append(Chunk(source, index, piece))
    return chunks


def _strip_front_matter(text: str) -> str:
    """Markdown YAML front matter (`---` ... `---` at the top) is metadata, not content."""
    if text.startswith("---\n"):
        end = text.find("\n---", 4)
        if end != -1:
            return text[end + 4 :].lstrip("\n")
    return text
