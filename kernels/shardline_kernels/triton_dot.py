"""How our Triton kernels multiply tiles.

Tiles are widened to fp32 before `tl.dot`: bf16/fp16 values are exact in tf32,
so a tf32 dot (tensor cores on GPUs) loses nothing against a bf16 dot, while
fp32 inputs need the full-precision "ieee" dot. Widening also keeps one code path
for the GPU and for Triton's CPU interpreter, whose bf16 `tl.dot` returns garbage
(triton 3.9, observed).
"""

from __future__ import annotations

import torch


def dot_precision(dtype: torch.dtype) -> str:
    return "ieee" if dtype == torch.float32 else "tf32"
