"""The spec's kernel and quantization choices, as the engine and our plugin read them."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from builders import make_spec
from shardline.engine.kernels import check_cpu_support, kernel_env, quantization_kwargs
from shardline.engine.vllm_engine import engine_kwargs
from shardline.errors import EngineFailure, SpecError


def model(**fields):
    return make_spec(model=fields).models[0]


def test_moe_kernel_choice_reaches_the_plugin_environment():
    assert kernel_env(model(kernels={"moe": "shardline"})) == {"SHARDLINE_KERNELS": "moe=shardline"}
    assert kernel_env(model()) == {"SHARDLINE_KERNELS": ""}


def test_expert_parallel_on_cpu_without_our_moe_kernel_is_refused():
    spec = model(parallelism={"tensor": 2, "expert": 2})
    with pytest.raises(EngineFailure, match=r"parallelism.expert \(2\) on CPU needs kernels.moe: shardline"):
        check_cpu_support(spec)
    check_cpu_support(model(parallelism={"tensor": 2, "expert": 2}, kernels={"moe": "shardline"}))


def test_expert_parallel_reaches_the_engine_arguments():
    kwargs = engine_kwargs(model(parallelism={"tensor": 2, "expert": 2}, kernels={"moe": "shardline"}))
    assert (kwargs["tensor_parallel_size"], kwargs["enable_expert_parallel"]) == (2, True)


def test_float_checkpoint_is_quantized_online(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    kwargs = quantization_kwargs(model(path=str(tmp_path), quantization="shardline-int8"))
    assert kwargs == {
        "quantization": "shardline-int8",
        "hf_overrides": {"quantization_config": {"quant_method": "shardline-int8"}},
    }


def test_prequantized_checkpoint_keeps_its_own_quantization_config(tmp_path):
    config = {"quantization_config": {"quant_method": "shardline-int8", "prequantized": True}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert quantization_kwargs(model(path=str(tmp_path), quantization="shardline-int8")) == {
        "quantization": "shardline-int8"
    }
    assert quantization_kwargs(model(path=str(tmp_path))) == {}


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"quantization": "int4"}, "quantization"),
        ({"kernels": {"moe": "fast"}}, "kernels.moe"),
        ({"engine_args": {"quantization": "fp8"}}, "'quantization' is set by the spec's quantization"),
    ],
    ids=["unknown-method", "unknown-moe-kernel", "engine-args-quantization"],
)
def test_bad_kernel_settings_are_rejected(fields, message):
    with pytest.raises((ValidationError, SpecError), match=message):
        make_spec(model=fields)
