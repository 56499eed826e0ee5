"""What each vLLM worker really holds, for the engine's own report.

`WorkerReport` is a vLLM worker extension (`parallel_config.worker_extension_cls`):
vLLM mixes it into every worker class, so `collective_rpc("shardline_report")`
runs `shardline_report` on each worker (every TP x PP rank) and returns one dict
per worker. The engine (platform/shardline/engine/vllm_engine.py) sums them into
what it reports: how many workers answered, from which processes, and what their
model holds, read from the loaded modules rather than the configuration:

- `experts`: per MoE layer, the experts this rank holds weights for (the expert
  weight tensor's first dimension) and how many the expert map makes local
  (entries >= 0; no map: all of them), and vLLM's expert-parallel group size;
- `int8_weights`: weight tensors stored as int8 (our `shardline-int8` method).
"""

from __future__ import annotations

import os
from typing import Any

EXTENSION = f"{__name__}.WorkerReport"
"""The qualified name vLLM's `worker_extension_cls` takes."""
METHOD = "shardline_report"


class WorkerReport:
    """Mixed into vLLM's worker class: `self` is the worker."""

    def shardline_report(self) -> dict[str, Any]:
        from vllm.distributed import parallel_state

        return {
            "pid": os.getpid(),
            "rank": getattr(self, "rank", -1),
            "tp_rank": parallel_state.get_tp_group().rank_in_group,
            "pp_rank": parallel_state.get_pp_group().rank_in_group,
            **model_report(self.get_model()),
        }


def model_report(model: Any) -> dict[str, Any]:
    """Experts per MoE layer and int8 weight tensors of a loaded (torch) model."""
    import torch

    experts = [moe_layer_experts(m) for m in model.modules() if hasattr(m, "expert_map_manager")]
    int8 = sum(1 for name, p in model.named_parameters() if name.endswith("weight") and p.dtype == torch.int8)
    return {"experts": experts, "int8_weights": int8}


def moe_layer_experts(layer: Any) -> dict[str, int]:
    """One MoE layer: experts whose weights this rank holds, local per the expert map, in
    all, and the size of the expert-parallel group they are spread over."""
    manager = layer.expert_map_manager
    total = manager.global_num_experts
    expert_map = manager.expert_map
    mapped = total if expert_map is None else int((expert_map >= 0).sum())
    weights = getattr(layer, "w13_weight", None)
    held = int(weights.shape[0]) if weights is not None else manager.local_num_experts
    return {"held": held, "mapped": mapped, "total": total, "ep_size": manager.ep_size}
