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
- `info()` asks the running engine what it runs (its config, its live workers).
- `cpu_seconds()` is the CPU time its processes have used so far (None when it
  cannot tell): a long prefill yields no token for seconds, yet computes.
- `load()` says how loaded it is now (waiting, running, KV cache, recent TTFT);
  cheap, called several times a second for the autoscaler.
- A dead engine (it never recovers) raises `ReplicaLost` from `generate()` and
  `check_health()`, so the caller can retry elsewhere and the replica can leave.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from shardline.engine.load import EngineLoad
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
    """What the engine runs, read after start from the engine itself (vLLM's resolved
    config, its worker processes and what their loaded model holds), never copied
    from the spec: a setting dropped on the way to vLLM shows here."""

    model: str
    max_model_len: int
    tensor_parallel_size: int
    pipeline_parallel_size: int
    data_parallel_size: int = 1
    expert_parallel: bool = False
    """vLLM's `enable_expert_parallel`: MoE layers shard experts instead of their weights."""
    expert_parallel_size: int = 1
    """Ranks the experts are spread over (1 without expert parallelism or without MoE layers)."""
    quantization: str = ""
    """vLLM's quantization method ("" = none), e.g. `shardline-int8`."""
    int8_weights: int = 0
    """Weight tensors held as int8 (summed over workers)."""
    worker_pids: tuple[int, ...] = ()
    """The live worker processes (one per TP x PP rank)."""
    experts: int = 0
    """Experts per MoE layer in the model (0: no MoE layers)."""
    experts_per_rank: tuple[int, ...] = ()
    """Experts each worker holds weights for, in rank order (first MoE layer)."""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def workers(self) -> int:
        return len(self.worker_pids)


class Engine(Protocol):
    async def start(self) -> None: ...

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationDelta]: ...

    async def abort(self, request_id: str) -> None: ...

    async def check_health(self) -> None: ...

    def stats(self) -> EngineStats: ...

    def load(self) -> EngineLoad: ...

    async def info(self) -> EngineInfo: ...

    def cpu_seconds(self) -> float | None: ...

    def shutdown(self) -> None: ...
