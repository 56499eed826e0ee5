"""`shardline quantize`: an int8 checkpoint vLLM loads with the shardline-int8 method."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from shardline_kernels.int8.checkpoint import CheckpointError, quantize_checkpoint


@pytest.fixture
def float_checkpoint(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text(json.dumps({"architectures": ["MixtralForCausalLM"], "hidden_size": 8}))
    (src / "tokenizer.json").write_text("{}")
    save_file(
        {
            "model.embed_tokens.weight": torch.randn(16, 8),
            "model.layers.0.self_attn.q_proj.weight": torch.randn(8, 8),
            "model.layers.0.block_sparse_moe.gate.weight": torch.randn(4, 8),
            "model.layers.0.block_sparse_moe.experts.0.w1.weight": torch.randn(12, 8),
            "model.layers.0.input_layernorm.weight": torch.randn(8),
            "lm_head.weight": torch.randn(16, 8),
        },
        src / "model.safetensors",
    )
    return src


def test_linear_weights_become_int8_with_scales_and_the_rest_stays_float(float_checkpoint, tmp_path):
    counts = quantize_checkpoint(float_checkpoint, tmp_path / "dst")
    out = load_file(tmp_path / "dst" / "model.safetensors")
    quantized = ["model.layers.0.self_attn.q_proj.weight", "model.layers.0.block_sparse_moe.gate.weight"]
    assert {out[n].dtype for n in quantized} == {torch.int8}
    assert {out[n + "_scale"].dtype for n in quantized} == {torch.float32}
    kept = ["model.embed_tokens.weight", "model.layers.0.block_sparse_moe.experts.0.w1.weight", "lm_head.weight"]
    assert {out[n].dtype for n in kept} == {torch.float32}
    assert counts == {"quantized": 2, "kept": 4}
    config = json.loads((tmp_path / "dst" / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "shardline-int8"
    assert config["quantization_config"]["prequantized"] is True
    assert (tmp_path / "dst" / "tokenizer.json").is_file()


def test_an_already_quantized_checkpoint_is_refused(float_checkpoint, tmp_path):
    quantize_checkpoint(float_checkpoint, tmp_path / "once")
    with pytest.raises(CheckpointError, match="already quantized \\(quant_method 'shardline-int8'\\)"):
        quantize_checkpoint(tmp_path / "once", tmp_path / "twice")


def test_cli_names_a_missing_checkpoint_and_exits_2(tmp_path):
    cli = [sys.executable, "-m", "shardline.cli.main", "quantize", str(tmp_path / "nope"), str(tmp_path / "out")]
    run = subprocess.run(cli, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert f"{tmp_path / 'nope'}: no config.json (not a Hugging Face checkpoint)" in run.stderr
