"""`self_information`: keep the sentences the cheapest tier finds least predictable.

Selective-Context style: each prompt token's negative log-likelihood under a
small causal LM (the cheapest tier's `prompt_logprobs`) is its self-information;
a sentence's score is the mean over its tokens, so filler the model predicts
well goes first. Token scores arrive as character spans, aligned to units here.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from shardline.policies.compression.units import Layout, fill

TokenScore = tuple[int, int, float]
"""(start char, end char, negative log-likelihood) of one prompt token."""


def select(lay: Layout, budget: int, token_nll: Sequence[TokenScore]) -> set[int]:
    info = unit_information(lay, token_nll)
    free = lay.free
    return fill(lay, sorted(free, key=lambda i: (-info[i], i)), budget)


def unit_information(lay: Layout, token_nll: Sequence[TokenScore]) -> list[float]:
    """Mean NLL of the tokens starting inside each unit (0 for units with none)."""
    starts = [u.start for u in lay.units]
    totals = [0.0] * len(lay.units)
    counts = [0] * len(lay.units)
    for start, _, nll in token_nll:
        k = bisect.bisect_right(starts, start) - 1
        if 0 <= k < len(totals):
            totals[k] += nll
            counts[k] += 1
    return [t / c if c else 0.0 for t, c in zip(totals, counts)]
