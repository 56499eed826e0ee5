import time

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
    kwargs = engine_kwargs(spec.models[0])
    assert kwargs["tensor_parallel_size"] == 2 and kwargs["enable_expert_parallel"] is True
    assert kwargs["distributed_executor_backend"] == "mp" and kwargs["enforce_eager"] is True
    on_gpu = make_spec(model={"parallelism": {"tensor": 2, "expert": 2}, "resources": {"gpu": 1}})
    assert engine_kwargs(on_gpu.models[0])["distributed_executor_backend"] == "ray"


async def test_tampered_signed_model_is_refused_before_vllm_loads_it(tmp_path):
    import shutil
    from pathlib import Path

    from shardline.errors import IntegrityError
    from shardline.security.integrity import generate_key, sign_model

    model = tmp_path / "kv-small"
    shutil.copytree(Path(__file__).resolve().parents[2] / "models" / "trained" / "kv-small", model)
    public = generate_key(tmp_path / "k")
    sign_model(model, tmp_path / "k")
    (model / "generation_config.json").write_text("{}")
    spec = make_spec(model={"path": str(model), "integrity": {"public_key": public}})
    with pytest.raises(IntegrityError, match="unexpected file generation_config.json"):
        await VLLMEngine(spec.models[0]).start()


def test_signed_models_load_safetensors_only():
    from shardline.errors import SpecError

    public = "A" * 43 + "="
    spec = make_spec(model={"integrity": {"public_key": public}})
    assert engine_kwargs(spec.models[0])["load_format"] == "safetensors"
    with pytest.raises(SpecError, match=r"load_format \('pt'\) must be 'safetensors' when integrity is set"):
        make_spec(model={"integrity": {"public_key": public}, "engine_args": {"load_format": "pt"}})
    with pytest.raises(SpecError, match="decodes to 3 bytes; an Ed25519 key has 32"):
        make_spec(model={"integrity": {"public_key": "AAAA"}})


def test_pipeline_parallel_on_cpu_runs_vllms_warm_up_and_compiles_nothing():
    pp2 = make_spec(model={"parallelism": {"pipeline": 2}, "engine_args": {"enforce_eager": True}}).models[0]
    kwargs = engine_kwargs(pp2)
    assert kwargs["pipeline_parallel_size"] == 2 and kwargs["enforce_eager"] is False
    assert kwargs["compilation_config"] == {"mode": 2, "backend": "eager"}  # DYNAMO_TRACE_ONCE, eager backend
    pp2_gpu = make_spec(
        model={"parallelism": {"pipeline": 2}, "resources": {"gpu": 1}, "engine_args": {"enforce_eager": True}}
    ).models[0]
    assert "compilation_config" not in engine_kwargs(pp2_gpu)
    pp1 = make_spec(model={"engine_args": {"enforce_eager": True}}).models[0]
    assert engine_kwargs(pp1)["enforce_eager"] is True and "compilation_config" not in engine_kwargs(pp1)


def test_an_idle_engine_reports_no_load_whatever_its_last_step_said():
    """vLLM runs no step while idle: the last busy step's counts must not stand."""
    from types import SimpleNamespace

    from shardline.engine.load import EngineLoad

    engine = VLLMEngine(make_spec().models[0])
    engine._load.record(3, 2, 0.4, [0.5], now=time.monotonic())
    unfinished = [2]
    engine._llm = SimpleNamespace(output_processor=SimpleNamespace(get_num_unfinished_requests=lambda: unfinished[0]))
    assert engine.load() == EngineLoad(3, 2, 0.4, 0.5)
    unfinished[0] = 0
    assert engine.load() == EngineLoad(0, 0, 0.0, 0.5)  # recent first tokens still count
