"""Writes an int8 (`shardline-int8`, prequantized) copy of a Hugging Face checkpoint.

Quantized: the 2-D `.weight` tensors of the layers vLLM builds as linear layers
(attention and MLP projections, the MoE router). Kept in the source dtype:
embeddings, the LM head, norms (1-D) and MoE expert weights (vLLM's fused-MoE
layer is not a linear layer, so the method leaves it float). Each quantized
`X.weight` becomes int8 `X.weight` plus fp32 `X.weight_scale`, which vLLM loads
and shards like the float weight.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file

from shardline_kernels.int8.quantize import quantize_per_channel

METHOD = "shardline-int8"
FLOAT_KEPT = ("embed_tokens", "lm_head", ".experts.")


class CheckpointError(ValueError):
    """The source is not a checkpoint we can quantize (the message says why)."""


def quantize_checkpoint(src: str | Path, dst: str | Path) -> dict[str, int]:
    """Returns {"quantized": n, "kept": m} tensor counts."""
    src, dst = Path(src), Path(dst)
    config = _read_config(src)
    files = sorted(src.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{src}: no *.safetensors files")
    dst.mkdir(parents=True, exist_ok=True)
    counts = {"quantized": 0, "kept": 0}
    for file in files:
        save_file(_quantized(load_file(file), counts), dst / file.name)
    for other in src.iterdir():
        if other.is_file() and other.suffix != ".safetensors" and other.name != "config.json":
            shutil.copy2(other, dst / other.name)
    config["quantization_config"] = {
        "quant_method": METHOD,
        "prequantized": True,
        "bits": 8,
        "scales": "per-output-channel",
    }
    (dst / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return counts


def _read_config(src: Path) -> dict:
    path = src / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{src}: no config.json (not a Hugging Face checkpoint)")
    config = json.loads(path.read_text())
    if "quantization_config" in config:
        method = config["quantization_config"].get("quant_method")
        raise CheckpointError(f"{src}: already quantized (quant_method {method!r})")
    return config


def _quantized(tensors: dict, counts: dict[str, int]) -> dict:
    out = {}
    for name, tensor in tensors.items():
        if _is_linear_weight(name, tensor):
            out[name], out[name + "_scale"] = quantize_per_channel(tensor)
            counts["quantized"] += 1
        else:
            out[name] = tensor.contiguous()
            counts["kept"] += 1
    return out


def _is_linear_weight(name: str, tensor) -> bool:
    return name.endswith(".weight") and tensor.dim() == 2 and not any(k in name for k in FLOAT_KEPT)
