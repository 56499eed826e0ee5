"""Expert-parallel fused MoE: CPU and Triton kernels against the reference loop."""

from __future__ import annotations

import pytest
import torch
from parity import assert_parity, device, triton_kernels

from shardline_kernels.moe import cpu, reference


@pytest.fixture(scope="module")
def triton_moe():
    with triton_kernels("shardline_kernels.moe.triton_moe") as module:
        yield module


@pytest.fixture(params=["cpu", "triton"])
def impl(request):
    return cpu if request.param == "cpu" else request.getfixturevalue("triton_moe")

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


def make_case(tokens, hidden, inter, pattern, map_name, dtype, strided, seed=0):
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


def gold_and_reference(args):
    x, w13, w2, weights, ids, expert_map = args
    gold = reference.fused_moe(x.double(), w13.double(), w2.double(), weights.double(), ids, expert_map)
    return gold, reference.fused_moe(*args)


SHAPES = {"decode-1x128x64": (1, 128, 64), "odd-63x769x95": (63, 769, 95)}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("pattern", ["random", "one-expert", "two-experts"])
@pytest.mark.parametrize("map_name", EXPERT_MAPS)
@pytest.mark.parametrize("strided", [False, True], ids=["contiguous", "strided"])
def test_cpu_moe_matches_reference(dtype, shape, pattern, map_name, strided):
    args = make_case(*SHAPES[shape], pattern, map_name, dtype, strided)
    gold, ref = gold_and_reference(args)
    assert_parity(cpu.fused_moe(*args), ref, gold)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("pattern", ["random", "one-expert", "two-experts"])
@pytest.mark.parametrize("map_name", ["all-local", "ep-rank1-of-2"])
@pytest.mark.parametrize("strided", [False, True], ids=["contiguous", "strided"])
def test_triton_moe_matches_reference(triton_moe, dtype, pattern, map_name, strided):
    # Small shapes: on CPU this runs in Triton's interpreter.
    args = make_case(19, 77, 45, pattern, map_name, dtype, strided)
    gold, ref = gold_and_reference(args)
    on_device = [a.to(device()) if a is not None else None for a in args]
    assert_parity(triton_moe.fused_moe(*on_device).cpu(), ref, gold)


def test_expert_parallel_ranks_sum_to_the_unsharded_result(impl):
    x, w13, w2, weights, ids, _ = make_case(33, 64, 32, "random", "all-local", torch.float32, False)
    partial = []
    for rank in range(2):
        owned = range(4 * rank, 4 * rank + 4)
        expert_map = torch.tensor([e - 4 * rank if e in owned else -1 for e in range(NUM_EXPERTS)], dtype=torch.int32)
        partial.append(impl.fused_moe(x, w13[4 * rank : 4 * rank + 4], w2[4 * rank : 4 * rank + 4], weights, ids, expert_map))
    torch.testing.assert_close(partial[0] + partial[1], impl.fused_moe(x, w13, w2, weights, ids), rtol=1e-5, atol=1e-5)


def test_tokens_routed_only_to_remote_experts_are_skipped_not_zero_weighted(impl):
    x, w13, w2, weights, ids, expert_map = make_case(24, 64, 32, "random", "ep-rank0-of-2", torch.float32, False)
    remote_only = (ids >= 4).all(dim=1)
    assert remote_only.any()
    x[remote_only] = float("nan")  # computing them, even with weight 0, would leak NaN
    out = impl.fused_moe(x, w13, w2, weights, ids, expert_map)
    assert (out[remote_only] == 0).all()
    assert torch.isfinite(out).all()


def test_unknown_activation_is_refused_with_the_supported_list():
    args = make_case(2, 32, 16, "random", "all-local", torch.float32, False)
    with pytest.raises(ValueError, match=r"activation 'relu2' is not supported; supported: \['gelu', 'gelu_tanh', 'silu'\]"):
        cpu.fused_moe(*args, activation="relu2")
