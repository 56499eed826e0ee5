"""`extractive`: keep the sentences most relevant to the question, without repeats.

Coarse to fine, as in LongLLMLingua: a lexical pass (IDF-weighted overlap with
the question's words) ranks every free sentence cheaply; the top `max_embedded`
are embedded with the sentence model and ordered by maximal marginal relevance
(cosine to the question, minus similarity to what is already chosen). The budget
is filled in that order, then by lexical rank; the output keeps original order.
Why not embed every sentence: on two cores MiniLM embeds only a few thousand
word pieces per second, about 150 ms per 1k prompt tokens, so the candidate set
grows with the prompt (EMBED_PER_1K sentences per 1k tokens) to stay near the
20 ms per 1k-token target (bench/compression.py measures both).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from shardline.policies.compression.units import Layout, fill

Embedder = Callable[[list[str]], np.ndarray]
"""Texts -> L2-normalised embedding rows (one per text)."""

EMBED_PER_1K = 3
MIN_EMBEDDED, MAX_EMBEDDED = 8, 64
_WORD = re.compile(r"\w+")


def select(
    lay: Layout, budget: int, embed: Embedder, mmr_lambda: float = 0.7, max_embedded: int | None = None
) -> set[int]:
    if max_embedded is None:
        max_embedded = min(MAX_EMBEDDED, max(MIN_EMBEDDED, math.ceil(lay.tokens / 1000 * EMBED_PER_1K)))
    lexical = lexical_ranking(lay)
    candidates = lexical[:max_embedded]
    ranked = _mmr(lay, candidates, embed, mmr_lambda) if candidates else []
    return fill(lay, ranked + lexical[max_embedded:], budget)


def lexical_ranking(lay: Layout) -> list[int]:
    """Free units by IDF-weighted overlap with the question, best first (ties: earlier first)."""
    free = lay.free
    words = [set(_WORD.findall(lay.text(lay.units[i]).lower())) for i in free]
    df = Counter(w for ws in words for w in ws)
    query = set(_WORD.findall(lay.question.lower()))
    n = len(free) + 1

    def score(ws: set[str]) -> float:
        return sum(math.log(n / df[w]) for w in ws & query) / math.sqrt(len(ws) + 1)

    scores = [score(ws) for ws in words]
    return [free[k] for k in sorted(range(len(free)), key=lambda k: (-scores[k], k))]


def _mmr(lay: Layout, candidates: Sequence[int], embed: Embedder, lam: float) -> list[int]:
    vectors = embed([lay.question] + [lay.text(lay.units[i]) for i in candidates])
    relevance = vectors[1:] @ vectors[0]
    similarity = vectors[1:] @ vectors[1:].T
    chosen: list[int] = []
    redundancy = np.zeros(len(candidates))
    open_ = np.ones(len(candidates), dtype=bool)
    for _ in range(len(candidates)):
        gain = np.where(open_, lam * relevance - (1 - lam) * redundancy, -np.inf)
        k = int(np.argmax(gain))
        chosen.append(k)
        open_[k] = False
        redundancy = np.maximum(redundancy, similarity[k])
    return [candidates[k] for k in chosen]
