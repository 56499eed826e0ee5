"""What a GPU engine needs before it starts, and the check that the node can run the spec's device.

On GPU vLLM's Ray executor (RayExecutorV2 in vLLM 0.32) creates one worker actor
per rank in the replica's placement group, which vLLM's engine args pick up in a
Ray actor. We name each rank's bundle (`VLLM_RAY_BUNDLE_INDICES`) instead of
letting vLLM take "the first bundles that hold a GPU", and give each worker one
GPU (`VLLM_RAY_PER_WORKER_GPUS`): Ray then hands the worker the GPU its bundle
reserved. The engine core, a child of the replica, inherits these variables.
"""

from __future__ import annotations

from typing import Any

from shardline.errors import EngineFailure
from shardline.spec.deployment import ModelSpec
from shardline.spec.placement import GPUS_PER_WORKER, device, worker_bundle_indices


def gpu_worker_env(m: ModelSpec) -> dict[str, str]:
    return {
        "VLLM_RAY_BUNDLE_INDICES": ",".join(map(str, worker_bundle_indices(m))),
        "VLLM_RAY_PER_WORKER_GPUS": f"{GPUS_PER_WORKER:g}",
    }


def check_platform(m: ModelSpec, platform: Any) -> None:
    """Refuse a spec whose device this node's vLLM build cannot honour. `platform` is
    vLLM's `current_platform` (which build is installed, found through NVML on GPU
    builds: not a question of which GPUs this process can see)."""
    wanted = device(m)
    has = "cpu" if platform.is_cpu() else "gpu" if platform.ray_device_key == "GPU" else None
    if wanted == has:
        return
    if wanted == "gpu":
        raise EngineFailure(
            f"model {m.name!r}: resources.gpu is {m.resources.gpu:g} but vLLM on this node runs on "
            f"{platform.device_name!r}, not on GPUs (install the gpu extra, or set resources.gpu: 0)"
        )
    raise EngineFailure(
        f"model {m.name!r}: resources.gpu is 0 (a CPU engine) but vLLM on this node is built for "
        f"{platform.device_name!r}; it would use whatever GPUs the replica sees. Set resources.gpu: 1 "
        "so each worker gets the GPU of its own bundle, or run the CPU image"
    )
