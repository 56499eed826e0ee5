"""A prompt as a chain of block hashes: what prefix affinity compares.

Block i's hash covers its own tokens and the hash of block i - 1, so two prompts
share block i's hash only if they share every token up to the end of block i: the
leading run of equal hashes is the longest shared prefix, in whole blocks. Only
whole blocks count, as in vLLM's prefix cache (a partial last block is never reused).

Hashes are Python's `hash` of int tuples: deterministic across processes (ints and
tuples are not salted), fast, and 64 bits wide; a collision costs one misrouted
request, never a wrong answer (the engine checks its own cache).
"""

from __future__ import annotations

from collections.abc import Sequence

CHARS_PER_TOKEN = 4
"""Characters standing in for one token when the model has no tokenizer.json."""


def chain(token_ids: Sequence[int], block_tokens: int) -> tuple[int, ...]:
    """The chained hash of each whole block of `token_ids`."""
    hashes, previous = [], 0
    for start in range(0, len(token_ids) - block_tokens + 1, block_tokens):
        previous = hash((previous, *token_ids[start : start + block_tokens]))
        hashes.append(previous)
    return tuple(hashes)


def chain_chars(text: str, block_tokens: int) -> tuple[int, ...]:
    """`chain` over code points, `CHARS_PER_TOKEN` per token: the fallback without a tokenizer."""
    return chain([ord(c) for c in text], block_tokens * CHARS_PER_TOKEN)
