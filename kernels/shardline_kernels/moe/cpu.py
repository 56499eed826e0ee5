"""Expert-parallel fused MoE for CPU: tokens grouped per local expert, one GEMM pair each.

Same signature as `reference.fused_moe`; `fused_moe_experts` takes the expert
weights as `experts.Experts` instead, e.g. prepacked once at load
(`experts.prepack`, used by the vLLM wiring). Pairs routed to experts of other
ranks are never gathered or computed (the stock vLLM CPU kernel writes out of
bounds on them, see kernels/README.md). The kept pairs' rows are gathered once,
sorted by expert, so each expert multiplies a contiguous slice:
`act(x @ w13.T) @ w2.T` (the gate and up halves in one GEMM), then every pair's
output is scaled by its router weight and scattered into an fp32 output in one
`index_add_`, so the top-k sum rounds once.
"""

from __future__ import annotations

import torch

from shardline_kernels.moe.activation import gated
from shardline_kernels.moe.experts import Experts
from shardline_kernels.moe.routing import group_by_expert


def fused_moe(
    hidden_states: torch.Tensor,
    w13: torch.Tensor,
    w2: torch.Tensor,
    topk_weights: torch.Tensor,
    topk_ids: torch.Tensor,
    expert_map: torch.Tensor | None = None,
    activation: str = "silu",
) -> torch.Tensor:
    return fused_moe_experts(hidden_states, Experts(w13, w2), topk_weights, topk_ids, expert_map, activation)


def fused_moe_experts(
    hidden_states: torch.Tensor,
    experts: Experts,
    topk_weights: torch.Tensor,
    topk_ids: torch.Tensor,
    expert_map: torch.Tensor | None = None,
    activation: str = "silu",
) -> torch.Tensor:
    groups = group_by_expert(topk_weights, topk_ids, expert_map, experts.count)
    rows = hidden_states.index_select(0, groups.tokens).to(experts.dtype)
    outputs, start = [], 0
    for expert, count in enumerate(groups.counts.tolist()):
        if count:
            x = rows[start : start + count]
            outputs.append(experts.down(expert, gated(experts.gate_up(expert, x), activation)))
            start += count
    out = torch.zeros(hidden_states.shape, dtype=torch.float32, device=hidden_states.device)
    if outputs:
        weighted = torch.cat(outputs).float().mul_(groups.weights[:, None])
        out.index_add_(0, groups.tokens, weighted)
    return out.to(hidden_states.dtype)
