"""The engine protocol: what a replica needs from an inference engine.

The replica (serve/llm_server.py) talks only to this protocol; `vllm_engine.py` is
the one implementation that imports vLLM. The request and delta types it speaks
live in `shardline.generation`; the engine's own reports (stats, info) cross Ray
too, so they are small, plain and picklable.

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

from shardline.generation import GenerationDelta, GenerationRequest


@dataclass(frozen=True, slots=True)
class EngineStats:
    """What the engine itself reports, so tests observe aborts instead of assuming them."""

    unfinished_requests: int
    aborted_requests: int
    started_requests: int
    prefix_cache_queries: int = 0
    """Prompt tokens looked up in the engine's prefix cache (vLLM's own counter)."""
    prefix_cache_hits: int = 0
    """Of those, tokens found there (hit rate = hits / queries)."""


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
