"""What the compression policies consult, gathered by the router.

Token counts use the served model's own tokenizer (`tokenizer.json` beside its
weights), so reported and budgeted token counts match the engine's; without one,
whitespace words stand in. The extractive embedder is MiniLM (loaded once per
router process). Prompt self-information comes from the cheapest tier's
`prompt_logprobs`: one extra, uncached prefill on that tier.
"""

from __future__ import annotations

import functools
import os
from dataclasses import replace

from shardline.generation import GenerationRequest
from shardline.policies.compression.units import TokenCounter, whitespace_tokens
from shardline.router.backend import Backend
from shardline.spec.deployment import DeploymentSpec, ModelSpec


@functools.cache
def tokenizer(tokenizer_path: str):
    """The `tokenizers.Tokenizer` in `tokenizer_path`; None without that file."""
    if not os.path.isfile(tokenizer_path):
        return None
    from tokenizers import Tokenizer

    return Tokenizer.from_file(tokenizer_path)


def tokenizer_for(model: ModelSpec):
    return tokenizer(os.path.join(model.path, "tokenizer.json"))


@functools.cache
def token_counter(tokenizer_path: str) -> TokenCounter:
    found = tokenizer(tokenizer_path)
    if found is None:
        return whitespace_tokens
    return lambda text: len(found.encode(text, add_special_tokens=False).ids)


def counter_for(model: ModelSpec) -> TokenCounter:
    return token_counter(os.path.join(model.path, "tokenizer.json"))


def cheapest_tier(spec: DeploymentSpec, fallback: str) -> str:
    """The served model with the lowest input price (the fallback when none is priced)."""
    priced = [m for m in spec.models if m.cost is not None]
    if not priced:
        return fallback
    return min(priced, key=lambda m: (m.cost.input_per_1k, m.name)).name


async def prompt_nll(backend: Backend, model: str, request: GenerationRequest, prompt: str):
    """Per-token (start, end, NLL) of `prompt` under `model`: a 1-token generation."""
    probe = replace(
        request,
        request_id=f"{request.request_id}-score",
        prompt=prompt,
        max_tokens=1,
        temperature=0.0,
        logprobs=0,
        prompt_logprobs=True,
        stop=(),
        ignore_eos=True,
    )
    scores = []
    stream = backend.stream(model, probe)
    try:
        async for delta in stream:
            scores.extend(delta.prompt_nll)
    finally:
        await stream.aclose()
    return scores
