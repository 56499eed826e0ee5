"""The engine protocol: what a replica needs from an inference engine.

The replica (serve/llm_server.py) talks only to this protocol; `vllm_engine.py` is
the one implementation that imports vLLM. The types here cross Ray (router ->
replica -> router), so they are small, plain and picklable.

Contract:
- `start()` loads the model; no other method may be called before it returns.
- `generate()` yields `GenerationDelta`s: new text and token ids since the last
  delta. Exactly the last delta has `finish_reason` set and carries usage. Bad
  requests raise `InvalidArgument` before the first delta.
- Cancelling the consumer of `generate()` (or closing the iterator) aborts the
  request in the engine; `abort()` does the same by id.
- `check_health()` runs a real generation and raises if the engine cannot serve.
- A dead engine (it never recovers) raises `ReplicaLost` from `generate()` and
  `check_health()`, so the caller can retry elsewhere and the replica can leave.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol


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
        )


@dataclass(frozen=True, slots=True)
class EngineStats:
    """What the engine itself reports, so tests observe aborts instead of assuming them."""

    unfinished_requests: int
    aborted_requests: int
    started_requests: int


@dataclass(frozen=True, slots=True)
class EngineInfo:
    model: str
    max_model_len: int
    tensor_parallel_size: int
    pipeline_parallel_size: int
    expert_parallel_size: int
    extra: dict[str, str] = field(default_factory=dict)


class Engine(Protocol):
    async def start(self) -> None: ...

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]: ...

    async def abort(self, request_id: str) -> None: ...

    async def check_health(self) -> None: ...

    def stats(self) -> EngineStats: ...

    def info(self) -> EngineInfo: ...

    def shutdown(self) -> None: ...
