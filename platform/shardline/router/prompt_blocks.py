"""The prompt blocks a model's routing policy matches (policies/routing/blocks.py).

Filled in by the router, not by Serve's request router: the router process already
holds each model's tokenizer (scorers.py), and the request router runs on Serve's
routing loop, where a tokenization of a long prompt would hold up every other call's
routing. Tokens as the engine counts them (special tokens included), so a block
here is a block of the engine's KV cache; a model without tokenizer.json is cut in
character blocks instead (blocks.CHARS_PER_TOKEN characters per token).
"""

from __future__ import annotations

from shardline.policies.routing import blocks
from shardline.router.scorers import tokenizer_for
from shardline.spec.deployment import ModelSpec


def prompt_blocks(model: ModelSpec, prompt: str) -> tuple[int, ...]:
    """The chained block hashes of `prompt` for `model`; () when its policy ignores the prompt."""
    if not model.routing.by_prompt:
        return ()
    size = model.routing_block_tokens
    found = tokenizer_for(model)
    if found is None:
        return blocks.chain_chars(prompt, size)
    return blocks.chain(found.encode(prompt).ids, size)
