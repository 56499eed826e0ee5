import pytest
from hypothesis import given, settings
from pydantic import ValidationError

from builders import make_spec, spec_dict
from fuzzing import mutated_specs
from shardline.errors import SpecError
from shardline.spec import DeploymentSpec, parse_spec, validate_spec


def errors_of(text: str) -> str:
    with pytest.raises(SpecError) as info:
        parse_spec(text, source="s.yaml")
    return str(info.value)


def test_minimal_spec_gets_defaults():
    spec = make_spec()
    assert spec.router.port == 0
    assert spec.models[0].parallelism.world_size == 1
    assert spec.models[0].replicas.min == 1


def test_spec_is_frozen():
    spec = make_spec()
    with pytest.raises(ValidationError):
        spec.name = "other"


def test_relative_model_path_becomes_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = make_spec(model={"path": "models/x"})
    assert spec.models[0].path == str(tmp_path / "models" / "x")


def test_error_quotes_line_path_value_and_limit():
    text = "models:\n  - name: m\n    path: p\n    parallelism:\n      tensor: 0\n"
    assert "s.yaml:5 models[0].parallelism.tensor: Input should be greater than or equal to 1 (got 0)" in errors_of(
        text
    )


def test_unknown_key_lists_allowed_keys():
    text = "models:\n  - name: m\n    path: p\n    parallelism: {tensr: 2}\n"
    msg = errors_of(text)
    assert "s.yaml:4 models[0].parallelism.tensr: unknown key 'tensr'; allowed: tensor, pipeline, expert" in msg


def test_strict_types_refuse_strings_for_numbers():
    msg = errors_of("models:\n  - {name: m, path: p}\nrouter:\n  port: '80'\n")
    assert "s.yaml:4 router.port: Input should be a valid integer (got '80')" in msg


def test_every_problem_is_reported_at_once():
    msg = errors_of("models:\n  - name: m\n    path: p\n    max_model_len: 1\n    dtype: fp8\nrouter: {port: 70000}\n")
    assert "(3 problems)" in msg
    assert "max_model_len" in msg and "dtype" in msg and "router.port" in msg


def test_duplicate_yaml_key_is_an_error():
    assert "s.yaml:3 models[0].name: key appears twice" in errors_of("models:\n  - name: a\n    name: b\n    path: p\n")


def test_expert_parallel_must_match_tensor():
    msg = errors_of("models:\n  - name: m\n    path: p\n    parallelism: {tensor: 2, expert: 4}\n")
    assert "expert (4) must be 1 or equal to tensor (2)" in msg


def test_a_gpu_worker_holds_one_whole_gpu():
    assert make_spec(model={"resources": {"gpu": 1}}).models[0].resources.bundle() == {"CPU": 1.0, "GPU": 1.0}
    with pytest.raises(SpecError, match=r"gpu \(0.5\) must be 0 or 1: each engine worker is one vLLM worker"):
        make_spec(model={"resources": {"gpu": 0.5}})
    with pytest.raises(SpecError, match=r"resources.gpu: Input should be less than or equal to 1"):
        make_spec(model={"resources": {"gpu": 2}})


def test_shardline_moe_on_gpu_is_refused_not_ignored():
    make_spec(model={"parallelism": {"tensor": 2, "expert": 2}, "kernels": {"moe": "shardline"}})  # CPU: ours
    with pytest.raises(SpecError, match=r"kernels.moe \('shardline'\) runs on CPU only, but resources.gpu is 1"):
        make_spec(model={"resources": {"gpu": 1}, "kernels": {"moe": "shardline"}})


def test_replica_bounds_are_checked():
    with pytest.raises(SpecError, match=r"min \(3\) is greater than max \(2\)"):
        validate_spec(spec_dict(model={"replicas": {"min": 3, "max": 2}}))


def test_router_default_max_tokens_within_cap():
    with pytest.raises(SpecError, match=r"default_max_tokens \(100\) is greater than max_tokens \(10\)"):
        make_spec(limits={"max_tokens": 10, "default_max_tokens": 100})


def test_rollout_defaults_and_bounds():
    rollout = make_spec().rollout
    assert (rollout.drain_timeout_s, rollout.surge_percent) == (30.0, 100)
    msg = errors_of("models:\n  - {name: m, path: p}\nrollout: {drain_timeout_s: 0, surge_percent: 101}\n")
    assert "rollout.drain_timeout_s: Input should be greater than 0 (got 0)" in msg
    assert "rollout.surge_percent: Input should be less than or equal to 100 (got 101)" in msg


def test_model_names_must_be_unique():
    data = spec_dict()
    data["models"].append(dict(data["models"][0]))
    with pytest.raises(SpecError, match="repeated: tiny-llama"):
        validate_spec(data)


def test_engine_args_typo_suggests_the_field():
    with pytest.raises(
        SpecError, match="'enforce_eagr' is not a vLLM EngineArgs field \\(did you mean 'enforce_eager'\\?\\)"
    ):
        make_spec(model={"engine_args": {"enforce_eagr": True}})


def test_engine_args_cannot_override_what_the_spec_owns():
    with pytest.raises(SpecError, match="'tensor_parallel_size' is set by the spec's parallelism.tensor"):
        make_spec(model={"engine_args": {"tensor_parallel_size": 2}})


def test_empty_and_non_mapping_documents_are_rejected():
    assert "the spec is empty" in errors_of("")
    assert "(top level)" in errors_of("- 1\n- 2\n")


def test_invalid_yaml_is_reported():
    assert "not valid YAML" in errors_of("models: [\n")


def test_spec_round_trips_through_json():
    spec = make_spec(model={"parallelism": {"tensor": 2}})
    assert DeploymentSpec.model_validate_json(spec.model_dump_json()) == spec


@settings(max_examples=300, deadline=None)
@given(mutated_specs())
def test_any_spec_is_valid_or_a_spec_error_never_a_crash(data):
    try:
        validate_spec(data)
    except SpecError as exc:
        assert str(exc).strip()
