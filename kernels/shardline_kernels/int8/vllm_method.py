"""`shardline-int8`: our W8A16 linear as a vLLM quantization method.

Two ways in, told apart by the checkpoint's `quantization_config`:
- online (a float checkpoint; the engine passes the method through `hf_overrides`):
  float weights load as usual and are quantized in `process_weights_after_loading`;
- prequantized (written by `shardline quantize`, `"prequantized": true`): int8
  `weight` and fp32 `weight_scale` load directly, sharded like the float weight.
Only linear layers are quantized; embeddings, the LM head and MoE experts stay float.
Imported only inside vLLM processes (by the plugin); classes live at module level
because vLLM pickles the config into its engine processes.
"""

from __future__ import annotations

from typing import Any

import torch
from vllm.model_executor.layers.linear import (
    LinearBase,
    LinearMethodBase,
    register_weight_loader_v2_supported_method,
)
from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS, register_quantization_config
from vllm.model_executor.layers.quantization.base_config import QuantizationConfig
from vllm.model_executor.parameter import ChannelQuantScaleParameter, ModelWeightParameter

from shardline_kernels.int8.quantize import quantize_per_channel

METHOD = "shardline-int8"


def install() -> None:
    """Idempotent registration (vLLM calls plugins once per process, sometimes more)."""
    if METHOD not in QUANTIZATION_METHODS:
        register_quantization_config(METHOD)(ShardlineInt8Config)


class ShardlineInt8Config(QuantizationConfig):
    def __init__(self, prequantized: bool = False) -> None:
        super().__init__()
        self.prequantized = prequantized

    def get_name(self) -> str:
        return METHOD

    def get_supported_act_dtypes(self) -> list[torch.dtype]:
        return [torch.bfloat16, torch.float16, torch.float32]

    @classmethod
    def get_min_capability(cls) -> int:
        return 0

    @staticmethod
    def get_config_filenames() -> list[str]:
        return []

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ShardlineInt8Config:
        return cls(prequantized=bool(config.get("prequantized", False)))

    def get_quant_method(self, layer: torch.nn.Module, prefix: str) -> LinearMethodBase | None:
        return ShardlineInt8LinearMethod(self.prequantized) if isinstance(layer, LinearBase) else None


@register_weight_loader_v2_supported_method
class ShardlineInt8LinearMethod(LinearMethodBase):
    def __init__(self, prequantized: bool) -> None:
        self.prequantized = prequantized

    def create_weights(
        self, layer, input_size_per_partition, output_partition_sizes, input_size, output_size, params_dtype, **extra
    ) -> None:
        loader, rows = extra["weight_loader"], sum(output_partition_sizes)
        dtype = torch.int8 if self.prequantized else params_dtype
        weight = torch.empty(rows, input_size_per_partition, dtype=dtype)
        layer.register_parameter(
            "weight", ModelWeightParameter(data=weight, input_dim=1, output_dim=0, weight_loader=loader)
        )
        if self.prequantized:
            scale = torch.empty(rows, dtype=torch.float32)
            layer.register_parameter(
                "weight_scale", ChannelQuantScaleParameter(data=scale, output_dim=0, weight_loader=loader)
            )

    def process_weights_after_loading(self, layer: torch.nn.Module) -> None:
        if self.prequantized:
            qweight, scales = layer.weight.data, layer.weight_scale.data
        else:
            qweight, scales = quantize_per_channel(layer.weight.data)
        layer.weight = torch.nn.Parameter(qweight.contiguous(), requires_grad=False)
        layer.weight_scale = torch.nn.Parameter(scales.float().contiguous(), requires_grad=False)

    def apply(self, layer: torch.nn.Module, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        return linear(x, layer.weight, layer.weight_scale, bias)


def linear(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    if x.is_cuda:
        from shardline_kernels.int8 import triton_linear

        return triton_linear.linear_w8a16(x, qweight, scales, bias)
    from shardline_kernels.int8 import cpu

    return cpu.linear_w8a16(x, qweight, scales, bias)
