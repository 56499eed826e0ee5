import pytest
from builders import make_spec

from shardline.engine.vllm_engine import VLLMEngine, engine_kwargs
from shardline.errors import EngineFailure


async def test_missing_model_directory_fails_fast_with_the_path(tmp_path):
    spec = make_spec(model={"path": str(tmp_path / "nope")})
    with pytest.raises(EngineFailure, match=r"no Hugging Face model at .*/nope \(no config.json\)"):
        await VLLMEngine(spec.models[0]).start()


def test_engine_kwargs_come_from_the_spec_and_the_spec_wins():
    spec = make_spec(model={"parallelism": {"tensor": 2, "expert": 2}, "engine_args": {"enforce_eager": True}})
    kwargs = engine_kwargs(spec.models[0], on_gpu=False)
    assert kwargs["tensor_parallel_size"] == 2 and kwargs["enable_expert_parallel"] is True
    assert kwargs["distributed_executor_backend"] == "mp" and kwargs["enforce_eager"] is True
    assert engine_kwargs(spec.models[0], on_gpu=True)["distributed_executor_backend"] == "ray"
