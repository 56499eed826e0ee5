"""Prompt compression policies: `none`, `truncate_middle`, `extractive`, `self_information`.

`compress` is the one entry point: lay the prompt out in units (units.py), skip
when compression cannot pay off, let the policy choose units to a token budget,
and guarantee the result is never longer than the input. Deterministic: the same
prompt, options and scorers give the same text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from shardline.policies.compression import extractive, selfinfo, truncate
from shardline.policies.compression.units import Span, TokenCounter, join, layout, whitespace_tokens
from shardline.spec.policies import COMPRESSION_POLICIES

NONE, TRUNCATE_MIDDLE, EXTRACTIVE, SELF_INFORMATION = COMPRESSION_POLICIES


@dataclass(frozen=True, slots=True)
class Options:
    policy: str = EXTRACTIVE
    target_ratio: float = 4.0
    min_prompt_tokens: int = 2000
    min_ratio: float = 1.3
    mmr_lambda: float = 0.7
    system_chars: int = 0
    question_chars: int | None = None
    protected: tuple[Span, ...] = ()


@dataclass(frozen=True, slots=True)
class Scorers:
    """What the policies may consult; the router fills only what the policy needs."""

    count: TokenCounter = whitespace_tokens
    embed: extractive.Embedder | None = None
    token_nll: Sequence[selfinfo.TokenScore] | None = None


@dataclass(frozen=True, slots=True)
class Compressed:
    text: str
    policy: str
    original_tokens: int
    sent_tokens: int
    skipped: str = ""
    """Why the prompt went unchanged ("" when it was compressed)."""


def compress(prompt: str, options: Options, scorers: Scorers) -> Compressed:
    original = scorers.count(prompt)
    skip = skip_reason(original, options)
    if skip:
        return Compressed(prompt, options.policy, original, original, skip)
    lay = layout(prompt, scorers.count, options.system_chars, options.question_chars, options.protected)
    budget = math.ceil(original / options.target_ratio)
    if lay.protected_tokens * options.min_ratio > original:
        return Compressed(prompt, options.policy, original, original, "protected spans cap the ratio")
    text = join(lay, _select(lay, budget, options, scorers))
    sent = scorers.count(text)
    if sent >= original:
        return Compressed(prompt, options.policy, original, original, "no gain")
    return Compressed(text, options.policy, original, sent)


def skip_reason(original: int, options: Options) -> str:
    """Why a prompt of `original` tokens is sent unchanged before any scoring ("" if not)."""
    if options.policy == NONE:
        return "policy is none"
    if original < options.min_prompt_tokens:
        return f"prompt has {original} tokens; min_prompt_tokens is {options.min_prompt_tokens}"
    return ""


def _select(lay, budget: int, options: Options, scorers: Scorers) -> set[int]:
    if options.policy == TRUNCATE_MIDDLE:
        return truncate.select(lay, budget)
    if options.policy == EXTRACTIVE:
        if scorers.embed is None:
            raise ValueError("extractive compression needs an embedder")
        return extractive.select(lay, budget, scorers.embed, options.mmr_lambda)
    if options.policy == SELF_INFORMATION:
        if scorers.token_nll is None:
            raise ValueError("self_information compression needs prompt token scores")
        return selfinfo.select(lay, budget, scorers.token_nll)
    raise ValueError(f"unknown compression policy {options.policy!r}; known: {', '.join(COMPRESSION_POLICIES)}")
