"""W8A16 linear: quantization error bound, the CPU kernel against the reference (Triton: interpreted/)."""

from __future__ import annotations

import pytest
import torch

from kernel_cases import int8_gold_and_reference, make_int8_case
from parity import assert_parity
from shardline_kernels.int8 import cpu
from shardline_kernels.int8.quantize import quantize_per_channel

SHAPES = {  # (tokens, in K, out N)
    "gemv-1x768x256": (1, 768, 256),
    "odd-63x769x257": (63, 769, 257),
    "batch-16x64x96": (16, 64, 96),
}


def test_quantization_error_is_at_most_half_a_step_per_channel():
    weight = torch.randn(37, 769) * torch.logspace(-3, 1, 37)[:, None]
    qweight, scales = quantize_per_channel(weight)
    assert qweight.dtype == torch.int8 and scales.shape == (37,)
    err = (qweight.float() * scales[:, None] - weight).abs()
    assert (err <= scales[:, None] / 2 + 1e-7).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("strided", [False, True], ids=["contiguous", "strided"])
@pytest.mark.parametrize("with_bias", [False, True], ids=["no-bias", "bias"])
def test_cpu_int8_linear_matches_reference(dtype, shape, strided, with_bias):
    args = make_int8_case(*SHAPES[shape], dtype, strided, with_bias)
    gold, ref = int8_gold_and_reference(args)
    assert_parity(cpu.linear_w8a16(*args), ref, gold)


def test_cpu_int8_linear_keeps_leading_dimensions():
    x, qweight, scales, bias = make_int8_case(12, 64, 32, torch.bfloat16, False, True)
    out = cpu.linear_w8a16(x.reshape(3, 4, 64), qweight, scales, bias)
    assert out.shape == (3, 4, 32)
    torch.testing.assert_close(out.reshape(12, 32), cpu.linear_w8a16(x, qweight, scales, bias))
