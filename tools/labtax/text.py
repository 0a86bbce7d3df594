"""Text normalisation: the one definition of "the same text" in labtax.

Generation (a candidate question equal to a seed or a held-out one), curation (filters, exact dedup,
near-duplicate shingles, decontamination) and the reviewer report (near-duplicate seeds) all compare
texts through `normalise` and `shingles`, so that what one stage calls a duplicate the others do too.
Standard library only: the contributor path imports it.
"""

from __future__ import annotations

import re
import unicodedata

_WORD = re.compile(r"\w+")
_SPACE = re.compile(r"\s+")


def normalised_tokens(text: str) -> list[str]:
    """The words of a text with case, Unicode form and punctuation folded away (one regex pass)."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def normalise(text: str) -> str:
    """Case, Unicode form, punctuation and runs of whitespace don't make two texts different."""
    return " ".join(normalised_tokens(text))


def words(text: str) -> list[str]:
    """Whitespace-separated tokens of the raw text: what the length bounds count."""
    return text.split()


def shingles(text: str, size: int) -> set[str]:
    """Word n-grams of the normalised text; a text shorter than `size` words is one shingle.

    Word shingles (not characters) so that two answers about the same topic but worded differently
    stay apart, while a copy with a few words edited still shares most of its shingles.
    """
    tokens = normalised_tokens(text)
    if len(tokens) <= size:
        return {" ".join(tokens)} if tokens else set()
    return {" ".join(tokens[i : i + size]) for i in range(len(tokens) - size + 1)}


def jaccard(first: set[str], second: set[str]) -> float:
    if not first and not second:
        return 1.0
    return len(first & second) / len(first | second)


def excerpt(text: str, limit: int = 160) -> str:
    """A one-line excerpt for reports."""
    flat = _SPACE.sub(" ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
