"""Spec section for replica choice: which replica of a model gets each request.

Per model, `routing.policy` picks how Serve's request router (serve/replica_set.py)
orders that model's replicas; the scoring itself is policies/routing/. Serve keeps
placement, health checks and restarts whatever the policy.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field

from shardline.spec.base import StrictModel

RoutingPolicyName = Literal["default", "least_loaded", "prefix_affinity", "session"]
ROUTING_POLICIES: tuple[str, ...] = get_args(RoutingPolicyName)
"""Every routing policy by name: the one list the spec, the router and Serve's request router share."""

CPU_ENGINE_BLOCK_TOKENS = 128
"""vLLM's default KV block size on CPU (vllm/platforms/cpu.py)."""
GPU_ENGINE_BLOCK_TOKENS = 16
"""vLLM's default KV block size on CUDA."""


class LoadGuard(StrictModel):
    """When affinity yields to load: the replica affinity picked is skipped for the least
    loaded one when its queue is longer than the least loaded replica's by more than
    `max_queue_gap` requests AND more than `max_queue_ratio` times it (both, as in
    SGLang's cache-aware router). The absolute gap keeps affinity on small queues, where
    one request more costs a continuously batched engine little and a cache miss costs
    a whole prefill; the ratio keeps it from piling onto one replica once queues are
    long. Queues are Serve's own count of requests each replica holds."""

    max_queue_gap: int = Field(4, ge=0, le=100_000)
    """Requests the affine replica may hold beyond the least loaded one. Default 4:
    a hot prefix under a burst of N requests on two replicas splits at most
    about (N + 4) / 2 to (N - 4) / 2 once the ratio also trips."""
    max_queue_ratio: float = Field(1.5, ge=1.0, le=1000.0)
    """How many times the least loaded replica's queue the affine replica may hold.
    Default 1.5: no replica ends a burst with more than 1.5x the least loaded one's
    queue (plus the gap), well inside the 2x-the-mean bound the bench checks."""


class RoutingSpec(StrictModel):
    """How the router chooses a replica of this model for each request."""

    policy: RoutingPolicyName = "default"
    """`default`: Serve's power of two choices (two random replicas, the shorter queue).
    `least_loaded`: the replica with the shortest queue. `prefix_affinity`: the replica
    that was recently sent the longest run of this prompt's leading blocks (its prefix
    cache likely holds them), unless the load guard says it is too busy. `session`:
    the replica that served the request's session key (gRPC metadata / HTTP header
    `x-shardline-session`) last time, else as `prefix_affinity`."""
    block_tokens: int | None = Field(None, ge=1, le=4096)
    """Tokens per prompt block the router hashes and matches. Unset: the engine's KV
    block size (`engine_args.block_size`, else vLLM's default: 16 on GPU, 128 on
    CPU), since vLLM caches and reuses only whole blocks."""
    max_blocks_per_replica: int = Field(16_384, ge=1, le=10_000_000)
    """Prompt blocks remembered per replica; the least recently sent are forgotten
    first (LRU). Set it near the engine's KV capacity in blocks (vLLM logs it at start):
    remembering more predicts hits the engine has already evicted. About 100 bytes per
    block in the router."""
    min_matched_blocks: int = Field(1, ge=1, le=100_000)
    """A replica counts as holding the prompt only from this many matched leading
    blocks; below it the request goes to the least loaded replica."""
    max_sessions: int = Field(100_000, ge=1, le=10_000_000)
    """`session`: session keys remembered (least recently used forgotten first)."""
    load_guard: LoadGuard = Field(default_factory=LoadGuard)

    @property
    def by_prompt(self) -> bool:
        """Whether the router must hash the prompt's blocks for this policy."""
        return self.policy in ("prefix_affinity", "session")


def engine_block_tokens(engine_args: dict, on_gpu: bool) -> int:
    """The engine's KV block size: `block_size` if the spec sets it, else vLLM's default."""
    size = engine_args.get("block_size")
    if isinstance(size, int) and size > 0:
        return size
    return GPU_ENGINE_BLOCK_TOKENS if on_gpu else CPU_ENGINE_BLOCK_TOKENS
