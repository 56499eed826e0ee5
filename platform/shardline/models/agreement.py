"""How closely one run's greedy tokens follow another's (a quantized model against
its float original, one parallel layout against another)."""

from __future__ import annotations

from collections.abc import Sequence


def prefix_agreement(reference: Sequence[int], tokens: Sequence[int]) -> float:
    """Share of the reference's tokens reproduced before the first different token
    (1.0 for an empty reference). Greedy decoding conditions every later token on the
    earlier ones, so tokens after the first difference say nothing about the weights."""
    if not reference:
        return 1.0
    same = next((i for i, (a, b) in enumerate(zip(reference, tokens)) if a != b), min(len(reference), len(tokens)))
    return same / len(reference)
