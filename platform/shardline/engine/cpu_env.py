"""Environment vLLM's CPU backend needs before an engine starts.

vLLM CPU binds each worker's OpenMP threads to the cores named in
`VLLM_CPU_OMP_THREADS_BIND` ("0|1" = rank 0 on core 0, rank 1 on core 1). Its
"auto" mode reserves cores per NUMA node and fails for TP=2 on a one-node,
two-core machine, so we split the cores this process may use between the ranks.
Values already in the environment win: operators can pin cores themselves.

The split is per engine, not per node: Ray pins no actor to cores, so every
replica on a node sees the same affinity and computes the same split. Ranks of
one engine get disjoint cores; co-located replicas share them (docs/using.md,
"CPU vs GPU"). A node-wide allocation would need the replicas to agree on who
holds which cores (Ray reports no core ids for a bundle), which we do not do.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

# KV cache per worker, GiB. vLLM CPU otherwise sizes it from a fraction of node
# memory (GiBs per worker), which crowds out the rest of a small machine.
DEFAULT_KV_CACHE_GIB = "1"


def configure_cpu_environment(world_size: int, env: MutableMapping[str, str] = os.environ) -> None:
    env.setdefault("VLLM_CPU_OMP_THREADS_BIND", omp_bind_for(world_size, sorted(os.sched_getaffinity(0))))
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", DEFAULT_KV_CACHE_GIB)


def omp_bind_for(world_size: int, cores: list[int]) -> str:
    """Split `cores` into `world_size` contiguous ranges; ranks share cores when too few."""
    per_rank = max(1, len(cores) // world_size)
    ranges = []
    for rank in range(world_size):
        start = (rank * per_rank) % len(cores)
        chunk = cores[start : start + per_rank]
        ranges.append(_as_range(chunk))
    return "|".join(ranges)


def _as_range(chunk: list[int]) -> str:
    if len(chunk) > 1 and chunk[-1] - chunk[0] == len(chunk) - 1:
        return f"{chunk[0]}-{chunk[-1]}"
    return ",".join(map(str, chunk))
