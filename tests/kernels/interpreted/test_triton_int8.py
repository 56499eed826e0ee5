"""W8A16 linear: the Triton kernel against the reference.

Small shapes: on CPU this runs in Triton's interpreter (see ../test_triton_interpreted.py).
"""

from __future__ import annotations

import pytest
import torch

from kernel_cases import int8_gold_and_reference, make_int8_case
from parity import assert_parity, device
from shardline_kernels.int8 import triton_linear


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("shape", [(1, 96, 40), (19, 77, 45)], ids=["gemv-1x96x40", "odd-19x77x45"])
@pytest.mark.parametrize("strided", [False, True], ids=["contiguous", "strided"])
def test_triton_int8_linear_matches_reference(dtype, shape, strided):
    args = make_int8_case(*shape, dtype, strided, with_bias=True)
    gold, ref = int8_gold_and_reference(args)
    on_device = [a.to(device()) for a in args]
    assert_parity(triton_linear.linear_w8a16(*on_device).cpu(), ref, gold)
