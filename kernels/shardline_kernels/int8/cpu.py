"""W8A16 linear on CPU: PyTorch's int8-weight GEMM (`_weight_int8pack_mm`).

Same signature as `reference.linear_w8a16`. The int8 weights are read as they are
(a quarter of fp32's, half of bf16's bytes) and widened inside the kernel, which is
what makes decode-time GEMV faster: it is memory-bound.
"""

from __future__ import annotations

import torch

from shardline_kernels.int8 import reference

# torch 2.13's bf16 int8pack kernel crashes (SIGSEGV) when K is not a multiple of
# 16 (seen at K = 40 and 769); such layers take the dequantizing path instead.
BF16_K_MULTIPLE = 32


def linear_w8a16(
    x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    if x.dtype == torch.bfloat16 and x.shape[-1] % BF16_K_MULTIPLE:
        return reference.linear_w8a16(x, qweight, scales, bias)
    rows = x.reshape(-1, x.shape[-1]).contiguous()
    if bias is None:
        out = torch._weight_int8pack_mm(rows, qweight.contiguous(), scales.to(x.dtype))
    else:
        # The bias is added before the one rounding to x's dtype, as F.linear does.
        out = (torch._weight_int8pack_mm(rows.float(), qweight.contiguous(), scales.float()) + bias.float()).to(x.dtype)
    return out.reshape(*x.shape[:-1], qweight.shape[0])
