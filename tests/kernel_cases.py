"""Inputs and gold outputs for the kernel parity tests (CPU and Triton alike)."""

from __future__ import annotations

import torch

from shardline_kernels.int8 import reference as int8_reference
from shardline_kernels.int8.quantize import quantize_per_channel
from shardline_kernels.moe import reference as moe_reference

NUM_EXPERTS, TOP_K = 8, 2
# name -> expert map (global id -> local index, -1 = owned by another rank)
EXPERT_MAPS = {
    "all-local": None,
    "ep-rank0-of-2": [0, 1, 2, 3, -1, -1, -1, -1],
    "ep-rank1-of-2": [-1, -1, -1, -1, 0, 1, 2, 3],
}


def routing(tokens: int, pattern: str, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.randn(tokens, NUM_EXPERTS, generator=gen)
    if pattern == "one-expert":  # every token's first choice is expert 5
        logits[:, 5] += 100.0
    if pattern == "two-experts":  # experts 2..7 get no tokens
        logits[:, 2:] -= 100.0
    weights, ids = logits.softmax(-1).topk(TOP_K, dim=-1)
    return weights / weights.sum(-1, keepdim=True), ids.int()


def make_moe_case(tokens, hidden, inter, pattern, map_name, dtype, strided, seed=0):
    gen = torch.Generator().manual_seed(seed)
    emap = EXPERT_MAPS[map_name]
    local = NUM_EXPERTS if emap is None else sum(e >= 0 for e in emap)
    x = torch.randn(tokens, 2 * hidden if strided else hidden, generator=gen)
    x = x[:, ::2] if strided else x  # strided: a non-contiguous view
    w13 = torch.randn(local, 2 * inter, hidden, generator=gen) / hidden**0.5
    w2 = torch.randn(local, hidden, inter, generator=gen) / inter**0.5
    weights, ids = routing(tokens, pattern, gen)
    if strided:
        weights, ids = weights.t().contiguous().t(), ids.t().contiguous().t()
    expert_map = None if emap is None else torch.tensor(emap, dtype=torch.int32)
    return (x.to(dtype), w13.to(dtype), w2.to(dtype), weights, ids, expert_map)


def moe_gold_and_reference(args):
    x, w13, w2, weights, ids, expert_map = args
    gold = moe_reference.fused_moe(x.double(), w13.double(), w2.double(), weights.double(), ids, expert_map)
    return gold, moe_reference.fused_moe(*args)


def make_int8_case(tokens, k, n, dtype, strided, with_bias, seed=0):
    gen = torch.Generator().manual_seed(seed)
    qweight, scales = quantize_per_channel(torch.randn(n, k, generator=gen) / k**0.5)
    x = torch.randn(k, tokens, generator=gen).t() if strided else torch.randn(tokens, k, generator=gen)
    bias = torch.randn(n, generator=gen).to(dtype) if with_bias else None
    return x.to(dtype), qweight, scales, bias


def int8_gold_and_reference(args):
    x, qweight, scales, bias = args
    gold = int8_reference.linear_w8a16(x.double(), qweight, scales.double(), None if bias is None else bias.double())
    return gold, int8_reference.linear_w8a16(*args)
