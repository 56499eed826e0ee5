"""W8A16 linear in Triton (GPUs; runs on CPU under TRITON_INTERPRET=1).

Same signature as `reference.linear_w8a16`. Each program computes a
BLOCK_M x BLOCK_N tile: int8 weight tiles are loaded (half of bf16's bytes),
widened to the activation dtype in registers, multiplied with fp32 accumulation,
and the per-channel scale is applied once to the accumulator. The kernel writes
fp32 and PyTorch rounds once to the activation dtype (Triton's CPU interpreter
truncates fp32 -> bf16 instead of rounding to nearest; the output is small).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from shardline_kernels.triton_dot import dot_precision

BLOCK_M, BLOCK_N, BLOCK_K = 16, 32, 64


@triton.jit
def _w8a16(
    x_ptr,
    w_ptr,
    s_ptr,
    b_ptr,
    y_ptr,
    M,
    N,
    K,
    stride_xm,
    stride_xk,
    stride_wn,
    stride_wk,
    stride_ym,
    stride_yn,
    HAS_BIAS: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_m, mask_n = offs_m < M, offs_n < N
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        mask_k = offs_k < K
        x = tl.load(
            x_ptr + offs_m[:, None] * stride_xm + offs_k[None, :] * stride_xk,
            mask=mask_m[:, None] & mask_k[None, :],
            other=0.0,
        )
        w = tl.load(
            w_ptr + offs_n[None, :] * stride_wn + offs_k[:, None] * stride_wk,
            mask=mask_n[None, :] & mask_k[:, None],
            other=0,
        )
        # int8 weights are exact in fp32 and tf32: widening loses nothing.
        acc += tl.dot(x.to(tl.float32), w.to(tl.float32), input_precision=PRECISION)
    acc *= tl.load(s_ptr + offs_n, mask=mask_n, other=0.0)[None, :]
    if HAS_BIAS:
        acc += tl.load(b_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)[None, :]
    y = y_ptr + offs_m[:, None] * stride_ym + offs_n[None, :] * stride_yn
    tl.store(y, acc, mask=mask_m[:, None] & mask_n[None, :])


def linear_w8a16(
    x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    rows = x.reshape(-1, x.shape[-1])
    m, (n, k) = rows.shape[0], qweight.shape
    y = torch.empty(m, n, dtype=torch.float32, device=x.device)
    grid = (triton.cdiv(m, BLOCK_M), triton.cdiv(n, BLOCK_N))
    _w8a16[grid](
        rows,
        qweight,
        scales.float(),
        scales if bias is None else bias,
        y,
        m,
        n,
        k,
        *rows.stride(),
        *qweight.stride(),
        *y.stride(),
        HAS_BIAS=bias is not None,
        PRECISION=dot_precision(x.dtype),
        BLOCK_M=BLOCK_M,
        BLOCK_N=BLOCK_N,
        BLOCK_K=BLOCK_K,
    )
    return y.to(x.dtype).reshape(*x.shape[:-1], n)
