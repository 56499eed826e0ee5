"""The `vllm.general_plugins` entry point: runs in every vLLM process.

vLLM calls it in the process that builds the engine, in the engine core and in
each worker, possibly more than once, so every step is idempotent. First, a child
process binds its life to its parent's (`lifetime.py`: no engine outlives its
replica). The int8 quantization method is always registered (it only acts when an
engine asks for `shardline-int8`); the MoE kernel replaces vLLM's CPU experts only
when the deployment selected it (`SHARDLINE_KERNELS=moe=shardline`).
"""

from __future__ import annotations

from shardline_kernels import lifetime, selection


def register() -> None:
    lifetime.bind_to_parent()
    from shardline_kernels.int8 import vllm_method

    vllm_method.install()
    if selection.active("moe") == "shardline":
        from shardline_kernels.moe import vllm_experts

        vllm_experts.install()
