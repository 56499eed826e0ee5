"""Expert-parallel fused MoE: the Triton kernel against the reference loop.

Small shapes: on CPU this runs in Triton's interpreter (see ../test_triton_interpreted.py).
"""

from __future__ import annotations

import pytest
import torch

from kernel_cases import NUM_EXPERTS, make_moe_case, moe_gold_and_reference
from parity import assert_parity, device
from shardline_kernels.moe import triton_moe


def on_device(args):
    return [a.to(device()) if a is not None else None for a in args]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("pattern", ["random", "one-expert", "two-experts"])
@pytest.mark.parametrize("map_name", ["all-local", "ep-rank1-of-2"])
@pytest.mark.parametrize("strided", [False, True], ids=["contiguous", "strided"])
def test_triton_moe_matches_reference(dtype, pattern, map_name, strided):
    # Small shapes: on CPU this runs in Triton's interpreter.
    args = make_moe_case(19, 77, 45, pattern, map_name, dtype, strided)
    gold, ref = moe_gold_and_reference(args)
    assert_parity(triton_moe.fused_moe(*on_device(args)).cpu(), ref, gold)


def test_triton_expert_parallel_ranks_sum_to_the_unsharded_result():
    x, w13, w2, weights, ids, _ = on_device(make_moe_case(33, 64, 32, "random", "all-local", torch.float32, False))
    partial = []
    for rank in range(2):
        owned = range(4 * rank, 4 * rank + 4)
        expert_map = torch.tensor(
            [e - 4 * rank if e in owned else -1 for e in range(NUM_EXPERTS)], dtype=torch.int32, device=device()
        )
        partial.append(
            triton_moe.fused_moe(x, w13[4 * rank : 4 * rank + 4], w2[4 * rank : 4 * rank + 4], weights, ids, expert_map)
        )
    torch.testing.assert_close(
        partial[0] + partial[1], triton_moe.fused_moe(x, w13, w2, weights, ids), rtol=1e-5, atol=1e-5
    )


def test_triton_tokens_routed_only_to_remote_experts_are_skipped_not_zero_weighted():
    x, w13, w2, weights, ids, expert_map = on_device(
        make_moe_case(24, 64, 32, "random", "ep-rank0-of-2", torch.float32, False)
    )
    remote_only = (ids >= 4).all(dim=1)
    assert remote_only.any()
    x[remote_only] = float("nan")  # computing them, even with weight 0, would leak NaN
    out = triton_moe.fused_moe(x, w13, w2, weights, ids, expert_map)
    assert (out[remote_only] == 0).all()
    assert torch.isfinite(out).all()
