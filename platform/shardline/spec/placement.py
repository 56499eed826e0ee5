"""Where one engine replica runs: its placement-group bundles and its device.

The spec decides, never the replica process. A model runs on GPU exactly when
`resources.gpu` is 1 (the spec allows only 0 or 1 per worker). The replica's
placement group (STRICT_PACK, one node) is laid out as:

    bundle 0         the replica process (LLMServer, vLLM's engine core): 1 CPU, no GPU
    bundles 1..N     one per engine worker (N = tensor x pipeline): `resources`

On GPU every worker, TP=1 included, is an actor of vLLM's Ray executor pinned to
its own bundle (`worker_bundle_indices`, passed to vLLM as VLLM_RAY_BUNDLE_INDICES),
so it runs on the GPU that bundle reserved. Why not let the replica hold the GPU
for TP=1 (a GPU in bundle 0, the in-process executor)? Ray 2.60 leaves
CUDA_VISIBLE_DEVICES unset in an actor that reserved no GPU, so a GPU-less
replica sees every GPU of its node, and an engine running in (a child of) it
takes GPU 0 whichever GPU its bundle reserved; holding the GPU in bundle 0 would
fix TP=1 only, with a second layout, while one layout for every world size keeps
"a worker's GPU is its bundle's GPU" true by construction. On CPU the workers are
the engine's child processes (stock vLLM refuses its Ray executor on CPU); the
worker bundles reserve their CPUs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from shardline.spec.deployment import ModelSpec

REPLICA_BUNDLE: dict[str, float] = {"CPU": 1.0}
"""Bundle 0: the replica process. It never holds a GPU: no engine work runs in it."""
GPUS_PER_WORKER = 1.0
"""Each GPU worker's share of its bundle (vLLM's VLLM_RAY_PER_WORKER_GPUS)."""

Device = Literal["cpu", "gpu"]


def device(model: ModelSpec) -> Device:
    """The engine's device, from the spec's worker bundle alone."""
    return "gpu" if model.resources.gpu > 0 else "cpu"


def placement_bundles(model: ModelSpec) -> list[dict[str, float]]:
    return [dict(REPLICA_BUNDLE)] + [model.resources.bundle() for _ in range(model.parallelism.world_size)]


def worker_bundle_indices(model: ModelSpec) -> list[int]:
    """The bundle of each engine worker, in rank order (rank r -> bundle r + 1)."""
    return list(range(1, model.parallelism.world_size + 1))
