"""W8A16 linear: quantization error bound, CPU and Triton kernels against the reference."""

from __future__ import annotations

import pytest
import torch
from parity import assert_parity, device, triton_kernels

from shardline_kernels.int8 import cpu, reference
from shardline_kernels.int8.quantize import quantize_per_channel


@pytest.fixture(scope="module")
def triton_linear():
    with triton_kernels("shardline_kernels.int8.triton_linear") as module:
        yield module

SHAPES = {  # (tokens, in K, out N)
    "gemv-1x768x256": (1, 768, 256),
    "odd-63x769x257": (63, 769, 257),
    "batch-16x64x96": (16, 64, 96),
}


def make_case(tokens, k, n, dtype, strided, with_bias, seed=0):
    gen = torch.Generator().manual_seed(seed)
    qweight, scales = quantize_per_channel(torch.randn(n, k, generator=gen) / k**0.5)
    x = torch.randn(k, tokens, generator=gen).t() if strided else torch.randn(tokens, k, generator=gen)
    bias = torch.randn(n, generator=gen).to(dtype) if with_bias else None
    return x.to(dtype), qweight, scales, bias


def gold_and_reference(args):
    x, qweight, scales, bias = args
    gold = reference.linear_w8a16(x.double(), qweight, scales.double(), None if bias is None else bias.double())
    return gold, reference.linear_w8a16(*args)


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
    args = make_case(*SHAPES[shape], dtype, strided, with_bias)
    gold, ref = gold_and_reference(args)
    assert_parity(cpu.linear_w8a16(*args), ref, gold)


def test_cpu_int8_linear_keeps_leading_dimensions():
    x, qweight, scales, bias = make_case(12, 64, 32, torch.bfloat16, False, True)
    out = cpu.linear_w8a16(x.reshape(3, 4, 64), qweight, scales, bias)
    assert out.shape == (3, 4, 32)
    torch.testing.assert_close(out.reshape(12, 32), cpu.linear_w8a16(x, qweight, scales, bias))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("shape", [(1, 96, 40), (19, 77, 45)], ids=["gemv-1x96x40", "odd-19x77x45"])
@pytest.mark.parametrize("strided", [False, True], ids=["contiguous", "strided"])
def test_triton_int8_linear_matches_reference(triton_linear, dtype, shape, strided):
    args = make_case(*shape, dtype, strided, with_bias=True)
    gold, ref = gold_and_reference(args)
    on_device = [a.to(device()) for a in args]
    assert_parity(triton_linear.linear_w8a16(*on_device).cpu(), ref, gold)
