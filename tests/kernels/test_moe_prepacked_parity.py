"""The CPU MoE kernel on prepacked expert weights (what vLLM runs) against the reference loop.

Three forms: `prepack` as vLLM calls it (on these small shapes: bf16 widened to
fp32 without native bf16, oneDNN's blocked layout with it; fp32 plain), `prepack`
as it treats large experts (the blocked layout from any size on), and the blocked
layout forced on the weights as given, in every dtype this CPU's oneDNN can reorder.
"""

from __future__ import annotations

import functools

import pytest
import torch

from kernel_cases import NUM_EXPERTS, make_moe_case, moe_gold_and_reference
from parity import assert_parity
from shardline_kernels.moe import cpu, experts

SHAPES = {"decode-1x128x64": (1, 128, 64), "odd-63x769x95": (63, 769, 95), "prefill-129x96x160": (129, 96, 160)}
FORMS = {
    "prepack": experts.prepack,
    "prepack-large": lambda w13, w2: experts.prepack(w13, w2, blocked_min_weights=0),
    "onednn-blocked": lambda w13, w2: experts.PackedExperts(w13, w2, batch_hint=16),
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@functools.cache
def case(shape: str, pattern: str, map_name: str, dtype: torch.dtype):
    """Inputs, fp64 gold and reference output, shared by the forms (the reference loop is slow)."""
    args = make_moe_case(*SHAPES[shape], pattern, map_name, dtype, strided=True)
    return (args, *moe_gold_and_reference(args))


def form(name: str, dtype: torch.dtype):
    if name == "onednn-blocked" and dtype in experts.NATIVE and not experts.native(dtype):
        pytest.skip(f"this CPU's oneDNN has no native {dtype} GEMM to reorder weights for")
    return FORMS[name]


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
@pytest.mark.parametrize("form_name", FORMS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("pattern", ["random", "one-expert"])
@pytest.mark.parametrize("map_name", ["all-local", "ep-rank0-of-2", "ep-rank1-of-2"])
def test_prepacked_moe_matches_reference(dtype, form_name, shape, pattern, map_name):
    pack = form(form_name, dtype)
    (x, w13, w2, weights, ids, expert_map), gold, ref = case(shape, pattern, map_name, dtype)
    assert_parity(cpu.fused_moe_experts(x, pack(w13, w2), weights, ids, expert_map), ref, gold)


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
@pytest.mark.parametrize("form_name", FORMS)
def test_two_prepacked_ep_ranks_sum_to_the_unsharded_result(dtype, form_name):
    pack = form(form_name, dtype)
    x, w13, w2, weights, ids, _ = args = make_moe_case(63, 769, 95, "random", "all-local", dtype, False)
    gold, ref = moe_gold_and_reference(args)
    half = NUM_EXPERTS // 2
    partial = []
    for rank in range(2):
        owned = range(half * rank, half * rank + half)
        local = [e - owned.start if e in owned else -1 for e in range(NUM_EXPERTS)]
        expert_map = torch.tensor(local, dtype=torch.int32)
        rank_experts = pack(w13[owned.start : owned.stop], w2[owned.start : owned.stop])
        partial.append(cpu.fused_moe_experts(x, rank_experts, weights, ids, expert_map))
    assert_parity(partial[0] + partial[1], ref, gold)


@pytest.mark.parametrize("form_name", FORMS)
def test_prepacked_ranks_never_compute_tokens_routed_only_to_remote_experts(form_name):
    pack = form(form_name, torch.float32)
    x, w13, w2, weights, ids, expert_map = make_moe_case(24, 64, 32, "random", "ep-rank0-of-2", torch.float32, False)
    remote_only = (ids >= NUM_EXPERTS // 2).all(dim=1)
    assert remote_only.any()
    x[remote_only] = float("nan")  # computing them, even with weight 0, would leak NaN
    out = cpu.fused_moe_experts(x, pack(w13, w2), weights, ids, expert_map)
    assert (out[remote_only] == 0).all()
    assert torch.isfinite(out).all()


def test_prepack_keeps_bf16_values_exactly_when_it_widens():
    _, w13, w2, *_ = make_moe_case(1, 64, 32, "random", "all-local", torch.bfloat16, False)
    packed = experts.prepack(w13, w2)
    if experts.native(torch.bfloat16):
        pytest.skip("native bf16: the weights stay bf16, in oneDNN's blocked layout")
    assert (packed.dtype, packed.w13.dtype, packed.w2.dtype) == (torch.float32,) * 3
    assert torch.equal(packed.w13.bfloat16(), w13) and torch.equal(packed.w2.bfloat16(), w2)


def test_vllm_wiring_prepacks_at_load_and_applies_the_expert_map():
    pytest.importorskip("vllm")
    from vllm.model_executor.layers.fused_moe.activation import MoEActivation

    from shardline_kernels.moe import vllm_experts

    x, w13, w2, weights, ids, expert_map = args = make_moe_case(
        17, 128, 96, "random", "ep-rank1-of-2", torch.bfloat16, False
    )
    gold, ref = moe_gold_and_reference(args)
    layer = torch.nn.Module()
    layer.w13_weight = torch.nn.Parameter(w13.clone(), requires_grad=False)
    layer.w2_weight = torch.nn.Parameter(w2.clone(), requires_grad=False)
    stock = type("StockExperts", (), {"w1_bias": None, "w2_bias": None})()
    vllm_experts._prepack_weights(stock, layer)
    # The layer still reports its experts (report.py reads the weights' first dimension).
    assert layer.w13_weight.shape[0] == w13.shape[0] == stock._shardline_experts.count
    output = torch.empty_like(x)
    vllm_experts._apply(
        stock, output, x, layer.w13_weight, layer.w2_weight, weights, ids, MoEActivation.SILU,
        NUM_EXPERTS, expert_map, None, None, None, None, None, False,
    )  # fmt: skip
    assert_parity(output, ref, gold)
