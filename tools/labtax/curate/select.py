"""Diversity selection: when a leaf has more samples than its target, keep a subset that covers the
leaf's variety instead of its most common phrasing (k-center greedy, as in coreset selection).

Vectors are hashed word n-gram counts (no model needed) or, when `[select] embedding_model` names a
local Hugging Face model directory, mean-pooled hidden states of that model. Everything is
deterministic: ties go to the earlier sample.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from labtax.text import normalise


def ngram_vectors(texts: Sequence[str], *, ngram_max: int = 2, features: int = 4096) -> np.ndarray:
    """L2-normalised, log-scaled counts of word 1..ngram_max-grams hashed (crc32) into `features` slots."""
    matrix = np.zeros((len(texts), features), dtype=np.float32)
    for row, text in enumerate(texts):
        tokens = normalise(text).split()
        for size in range(1, ngram_max + 1):
            for start in range(len(tokens) - size + 1):
                gram = " ".join(tokens[start : start + size]).encode("utf-8")
                matrix[row, zlib.crc32(gram) % features] += 1.0
    np.log1p(matrix, out=matrix)
    return _unit_rows(matrix)


def embedding_vectors(
    texts: Sequence[str], model_dir: Path, *, batch_size: int = 16, max_tokens: int = 256
) -> np.ndarray:
    """Mean-pooled last hidden states of a local model (no download: `local_files_only`)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModel.from_pretrained(model_dir, local_files_only=True)
    model.eval()
    rows = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                list(texts[start : start + batch_size]),
                padding=True,
                truncation=True,
                max_length=max_tokens,
                return_tensors="pt",
            )
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            rows.append(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).float().numpy())
    matrix = np.vstack(rows) if rows else np.zeros((0, 1), dtype=np.float32)
    return _unit_rows(matrix.astype(np.float32))


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1.0, norms)


def k_center_greedy(vectors: np.ndarray, k: int) -> list[int]:
    """Indices of `k` rows chosen so that every row is close to a chosen one (cosine distance).

    Starts from the row nearest the centroid (the most typical sample), then repeatedly adds the row
    farthest from everything chosen so far. Returned in ascending order.
    """
    count = vectors.shape[0]
    if k >= count:
        return list(range(count))
    if k <= 0:
        return []
    centroid = vectors.mean(axis=0)
    first = int(np.argmax(vectors @ centroid))
    chosen = [first]
    distance = 1.0 - vectors @ vectors[first]
    distance[first] = -np.inf
    while len(chosen) < k:
        # argmax returns the first maximum: ties go to the earlier sample, deterministically.
        pick = int(np.argmax(distance))
        chosen.append(pick)
        distance = np.minimum(distance, 1.0 - vectors @ vectors[pick])
        distance[chosen] = -np.inf
    return sorted(chosen)


def select_diverse(
    texts: Sequence[str], k: int, *, ngram_max: int, features: int, embedding_model: Path | None
) -> list[int]:
    """The indices of a diverse subset of `k` texts (all of them when there are no more than `k`)."""
    if len(texts) <= k:
        return list(range(len(texts)))
    if embedding_model is not None:
        vectors = embedding_vectors(texts, embedding_model)
    else:
        vectors = ngram_vectors(texts, ngram_max=ngram_max, features=features)
    return k_center_greedy(vectors, k)
