"""Expert-parallel fused MoE for CPU: tokens grouped per local expert, one GEMM pair each.

Same signature as `reference.fused_moe`. Pairs routed to experts of other ranks
are never gathered or computed (the stock vLLM CPU kernel writes out of bounds on
them, see kernels/README.md). Per local expert: gather its tokens,
`act(x @ w13.T) @ w2.T` as two dense matmuls (oneDNN/MKL do the heavy lifting in
bf16 or fp32), scale by the router weight and scatter-add into an fp32 output,
so the top-k sum rounds once.
"""

from __future__ import annotations

import torch

from shardline_kernels.moe.activation import gated
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
    groups = group_by_expert(topk_weights, topk_ids, expert_map, w13.shape[0])
    out = torch.zeros(hidden_states.shape, dtype=torch.float32, device=hidden_states.device)
    start = 0
    for expert, count in enumerate(groups.counts.tolist()):
        if count:
            rows = groups.tokens[start : start + count]
            y = _expert_mlp(hidden_states.index_select(0, rows), w13[expert], w2[expert], activation)
            out.index_add_(0, rows, y.float() * groups.weights[start : start + count, None])
            start += count
    return out.to(hidden_states.dtype)


def _expert_mlp(x: torch.Tensor, w13: torch.Tensor, w2: torch.Tensor, activation: str) -> torch.Tensor:
    return torch.mm(gated(torch.mm(x, w13.t()), activation), w2.t())
