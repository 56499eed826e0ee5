"""Fake compression scorers for tests: predictable stand-ins for MiniLM and prompt logprobs."""

from __future__ import annotations

import hashlib

import numpy as np


def hash_embed(texts):
    """Deterministic bag-of-words embedding: shared words -> high cosine."""
    rows = np.zeros((len(texts), 64), dtype=np.float32)
    for r, text in enumerate(texts):
        for word in text.lower().split():
            rows[r, int(hashlib.md5(word.encode()).hexdigest(), 16) % 64] += 1
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-9)


def word_nll(prompt: str, digit: float, word: float) -> list[tuple[int, int, float]]:
    """Fake prompt self-information per word span: digits cost `digit`, words `word`."""
    out, cursor = [], 0
    for token in prompt.split():
        start = prompt.index(token, cursor)
        cursor = start + len(token)
        out.append((start, cursor, digit if token.isdigit() else word))
    return out
