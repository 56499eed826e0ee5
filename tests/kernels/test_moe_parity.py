"""Expert-parallel fused MoE: the CPU kernel against the reference loop (Triton: interpreted/)."""

from __future__ import annotations

import pytest
import torch

from kernel_cases import EXPERT_MAPS, NUM_EXPERTS, make_moe_case, moe_gold_and_reference
from parity import assert_parity
from shardline_kernels.moe import cpu

SHAPES = {"decode-1x128x64": (1, 128, 64), "odd-63x769x95": (63, 769, 95)}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("pattern", ["random", "one-expert", "two-experts"])
@pytest.mark.parametrize("map_name", EXPERT_MAPS)
@pytest.mark.parametrize("strided", [False, True], ids=["contiguous", "strided"])
def test_cpu_moe_matches_reference(dtype, shape, pattern, map_name, strided):
    args = make_moe_case(*SHAPES[shape], pattern, map_name, dtype, strided)
    gold, ref = moe_gold_and_reference(args)
    assert_parity(cpu.fused_moe(*args), ref, gold)


def test_expert_parallel_ranks_sum_to_the_unsharded_result():
    x, w13, w2, weights, ids, _ = make_moe_case(33, 64, 32, "random", "all-local", torch.float32, False)
    partial = []
    for rank in range(2):
        owned = range(4 * rank, 4 * rank + 4)
        expert_map = torch.tensor([e - 4 * rank if e in owned else -1 for e in range(NUM_EXPERTS)], dtype=torch.int32)
        partial.append(
            cpu.fused_moe(x, w13[4 * rank : 4 * rank + 4], w2[4 * rank : 4 * rank + 4], weights, ids, expert_map)
        )
    torch.testing.assert_close(partial[0] + partial[1], cpu.fused_moe(x, w13, w2, weights, ids), rtol=1e-5, atol=1e-5)


def test_tokens_routed_only_to_remote_experts_are_skipped_not_zero_weighted():
    x, w13, w2, weights, ids, expert_map = make_moe_case(24, 64, 32, "random", "ep-rank0-of-2", torch.float32, False)
    remote_only = (ids >= 4).all(dim=1)
    assert remote_only.any()
    x[remote_only] = float("nan")  # computing them, even with weight 0, would leak NaN
    out = cpu.fused_moe(x, w13, w2, weights, ids, expert_map)
    assert (out[remote_only] == 0).all()
    assert torch.isfinite(out).all()


def test_unknown_activation_is_refused_with_the_supported_list():
    args = make_moe_case(2, 32, 16, "random", "all-local", torch.float32, False)
    with pytest.raises(
        ValueError, match=r"activation 'relu2' is not supported; supported: \['gelu', 'gelu_tanh', 'silu'\]"
    ):
        cpu.fused_moe(*args, activation="relu2")
