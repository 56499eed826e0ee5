"""Groups routed (token, slot) pairs by local expert, dropping remote experts.

Shared by the CPU and Triton implementations: both compute only the pairs whose
expert lives on this rank, so an EP rank's work shrinks with its share of experts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Groups:
    tokens: torch.Tensor
    """[P] token row of each kept pair, sorted by local expert."""
    weights: torch.Tensor
    """[P] router weight of each kept pair (fp32)."""
    counts: torch.Tensor
    """[E_local] kept pairs per local expert; `tokens` holds them expert by expert."""


def group_by_expert(
    topk_weights: torch.Tensor,
    topk_ids: torch.Tensor,
    expert_map: torch.Tensor | None,
    num_local_experts: int,
) -> Groups:
    ids = topk_ids.reshape(-1).long()
    local = ids if expert_map is None else expert_map.to(ids.device).long()[ids]
    # One sort groups the pairs by expert and puts the remote ones (-1) first;
    # one count of local + 1 says how many of those to drop. Few ops, as at
    # decode sizes each op's fixed cost is what a MoE layer mostly pays.
    experts, order = local.sort(stable=True)
    counts = torch.bincount(experts + 1, minlength=num_local_experts + 1)
    pairs = order[int(counts[0]) :]
    return Groups(
        tokens=pairs // topk_ids.shape[1],
        weights=topk_weights.reshape(-1)[pairs].float(),
        counts=counts[1:],
    )
