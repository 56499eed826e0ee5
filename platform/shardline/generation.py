"""What one generation is on every hop: the request, its stream of deltas, token logprobs.

A leaf of the package (it imports nothing of shardline), so the router, the
replica, the engine, the policies and telemetry all share these types without
importing each other. They cross Ray (router -> replica -> router), so they are
small, plain and picklable.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    request_id: str
    prompt: str
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    """0 disables top-k."""
    stop: tuple[str, ...] = ()
    seed: int | None = None
    ignore_eos: bool = False
    timeout_s: float | None = None
    """Seconds the replica may spend on this request, counted from when it arrives
    (relative, so clocks on different nodes need not agree)."""
    logprobs: int = 0
    """Top-k logprobs to return per generated token (0: none; 2 gives the margin)."""
    prompt_logprobs: bool = False
    """Return each prompt token's negative log-likelihood (`GenerationDelta.prompt_nll`).
    vLLM skips the prefix cache for such requests: every one is a full prefill."""
    continuation: tuple[int, ...] = ()
    """Token ids an earlier attempt already generated (and the client received): the
    engine appends them to the tokenized prompt and generates what follows, so a
    stream cut by a dying replica resumes on another. Usage counts them as prompt."""
    trace_context: dict[str, str] = field(default_factory=dict)
    """W3C trace headers (`traceparent`, `tracestate`) naming the caller's span, so
    the trace continues across Ray (see shardline.telemetry)."""
    prefix_blocks: tuple[int, ...] = ()
    """The prompt's leading blocks as chained hashes (policies/routing/blocks.py), filled
    by the router when the model routes by prompt: Serve's request router reads them."""
    session: str = ""
    """The client's session key (`x-shardline-session`), for session affinity."""


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    logprob: float
    """Of the sampled token (a raw logit when the engine runs with raw logits)."""
    top: tuple[float, ...] = ()
    """The top-k values at this step, best first."""


@dataclass(slots=True)
class GenerationDelta:
    text: str
    token_ids: list[int]
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    logprobs: list[TokenLogprob] = field(default_factory=list)
    """One per token in `token_ids` when the request asked for logprobs."""
    prompt_nll: list[tuple[int, int, float]] = field(default_factory=list)
    """(start char, end char, NLL) per prompt token; first delta only, when asked."""
    raw_logits: bool = False
    """`logprobs` hold raw logits (engine run with logprobs_mode raw_logits)."""
    cached_tokens: int = 0
    """Prompt tokens the engine found in its prefix cache (not recomputed)."""
    replica: str = ""
    """The Serve replica that produced this delta (set on the final one)."""

    def merge(self, later: GenerationDelta) -> GenerationDelta:
        """One delta covering `self` then `later` (usage and finish come from `later`)."""
        return GenerationDelta(
            text=self.text + later.text,
            token_ids=self.token_ids + later.token_ids,
            finish_reason=later.finish_reason,
            prompt_tokens=later.prompt_tokens,
            completion_tokens=later.completion_tokens,
            logprobs=self.logprobs + later.logprobs,
            prompt_nll=self.prompt_nll + later.prompt_nll,
            raw_logits=later.raw_logits,
            cached_tokens=later.cached_tokens,
            replica=later.replica or self.replica,
        )
