"""Expert-parallel fused MoE in Triton (GPUs; runs on CPU under TRITON_INTERPRET=1).

Same signature as `reference.fused_moe`. Routing is grouped as on CPU (remote
experts dropped), then one grouped-GEMM kernel runs twice: each program owns a
BLOCK_M slice of one local expert's rows and a BLOCK_N slice of outputs, gathers
its input rows by index (no copy of the activations) and accumulates in fp32.
The kernel writes fp32; the gated activation, the one rounding back to the input
dtype and the weighted top-k sum stay in PyTorch between and after the two GEMMs
(Triton's CPU interpreter truncates fp32 -> bf16 instead of rounding to nearest).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from shardline_kernels.moe.activation import gated
from shardline_kernels.moe.routing import group_by_expert
from shardline_kernels.triton_dot import dot_precision

BLOCK_M, BLOCK_N, BLOCK_K = 16, 32, 32


@triton.jit
def _grouped_gemm(
    a_ptr,
    rows_ptr,
    w_ptr,
    c_ptr,
    block_expert_ptr,
    block_start_ptr,
    block_end_ptr,
    N,
    K,
    stride_am,
    stride_ak,
    stride_we,
    stride_wn,
    stride_wk,
    stride_cm,
    stride_cn,
    PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    # C[p] = A[rows[p]] @ W[expert].T for the pairs p of this block (all one expert).
    expert = tl.load(block_expert_ptr + tl.program_id(0))
    end = tl.load(block_end_ptr + tl.program_id(0))
    offs_m = tl.load(block_start_ptr + tl.program_id(0)) + tl.arange(0, BLOCK_M)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_m, mask_n = offs_m < end, offs_n < N
    rows = tl.load(rows_ptr + offs_m, mask=mask_m, other=0)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        mask_k = offs_k < K
        a = tl.load(
            a_ptr + rows[:, None] * stride_am + offs_k[None, :] * stride_ak,
            mask=mask_m[:, None] & mask_k[None, :],
            other=0.0,
        )
        w = tl.load(
            w_ptr + expert * stride_we + offs_n[None, :] * stride_wn + offs_k[:, None] * stride_wk,
            mask=mask_n[None, :] & mask_k[:, None],
            other=0.0,
        )
        acc += tl.dot(a.to(tl.float32), w.to(tl.float32), input_precision=PRECISION)
    c = c_ptr + offs_m[:, None] * stride_cm + offs_n[None, :] * stride_cn
    tl.store(c, acc, mask=mask_m[:, None] & mask_n[None, :])


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
    blocks = _blocks(groups.counts)
    gate_up = _gemm(hidden_states, groups.tokens, w13, blocks)
    pairs = torch.arange(groups.tokens.numel(), device=hidden_states.device)
    down = _gemm(gated(gate_up, activation).to(hidden_states.dtype), pairs, w2, blocks)
    out = torch.zeros(hidden_states.shape, dtype=torch.float32, device=hidden_states.device)
    out.index_add_(0, groups.tokens, down * groups.weights[:, None])
    return out.to(hidden_states.dtype)


def _blocks(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(expert, start, end) per BLOCK_M slice of the expert-sorted pairs."""
    per_expert = (counts + BLOCK_M - 1) // BLOCK_M
    expert = torch.repeat_interleave(torch.arange(counts.numel(), device=counts.device), per_expert)
    first = torch.cumsum(per_expert, 0) - per_expert
    offsets = torch.cumsum(counts, 0) - counts
    start = offsets[expert] + (torch.arange(expert.numel(), device=counts.device) - first[expert]) * BLOCK_M
    return expert.int(), start.int(), (offsets + counts)[expert].int()


def _gemm(a: torch.Tensor, rows: torch.Tensor, w: torch.Tensor, blocks) -> torch.Tensor:
    expert, start, end = blocks
    n, k = w.shape[1], w.shape[2]
    c = torch.empty(rows.numel(), n, dtype=torch.float32, device=a.device)
    if expert.numel():
        grid = (expert.numel(), triton.cdiv(n, BLOCK_N))
        _grouped_gemm[grid](
            a,
            rows,
            w,
            c,
            expert,
            start,
            end,
            n,
            k,
            *a.stride(),
            *w.stride(),
            *c.stride(),
            PRECISION=dot_precision(a.dtype),
            BLOCK_M=BLOCK_M,
            BLOCK_N=BLOCK_N,
            BLOCK_K=BLOCK_K,
        )
    return c
