"""Plain PyTorch reference for the W8A16 linear: dequantize, then a dense matmul.

x [..., K] (bf16/fp16/fp32); qweight int8 [N, K]; scales [N]; bias [N] or None.
Computes in x's dtype, like the float layer it replaces.
"""

from __future__ import annotations

import torch


def linear_w8a16(
    x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    weight = (qweight.float() * scales.float()[:, None]).to(x.dtype)
    return torch.nn.functional.linear(x, weight, None if bias is None else bias.to(x.dtype))
