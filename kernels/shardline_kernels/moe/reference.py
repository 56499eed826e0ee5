"""Plain PyTorch reference for the expert-parallel fused MoE: one token, one slot at a time.

Shapes: hidden_states [T, H]; w13 [E_local, 2I, H] (gate rows, then up rows);
w2 [E_local, H, I]; topk_weights / topk_ids [T, k] with *global* expert ids;
expert_map [E_global] maps a global id to this rank's local index, or -1 when
another rank owns the expert (None: every expert is local). Slots routed to a
remote expert contribute nothing here; the TP/EP all-reduce adds the owner's part.
"""

from __future__ import annotations

import torch

from shardline_kernels.moe.activation import gated


def fused_moe(
    hidden_states: torch.Tensor,
    w13: torch.Tensor,
    w2: torch.Tensor,
    topk_weights: torch.Tensor,
    topk_ids: torch.Tensor,
    expert_map: torch.Tensor | None = None,
    activation: str = "silu",
) -> torch.Tensor:
    out = torch.zeros_like(hidden_states)
    for t in range(hidden_states.shape[0]):
        for slot in range(topk_ids.shape[1]):
            expert = int(topk_ids[t, slot])
            local = expert if expert_map is None else int(expert_map[expert])
            if local < 0:
                continue
            h = gated(hidden_states[t] @ w13[local].t(), activation)
            out[t] += (h @ w2[local].t()) * topk_weights[t, slot].to(out.dtype)
    return out
