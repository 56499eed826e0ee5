"""The real stack: gRPC -> router replica -> LLMServer replica -> vLLM (TP=2)."""

import subprocess
import sys

import grpc
import psutil
import pytest
import yaml
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from live import ROOT, deployed
from waiting import eventually

pytestmark = pytest.mark.integration

GREEDY = {"temperature": 0.0, "ignore_eos": True}


def test_health_is_serving_for_the_router_and_the_model(deployment):
    with deployment.client() as client:
        assert client.health() == "SERVING"
        assert client.health("shardline.v1.Inference") == "SERVING"
        assert client.health(f"shardline.v1.Inference/{deployment.model}") == "SERVING"


def test_reflection_lists_the_inference_service(deployment):
    db = ProtoReflectionDescriptorDatabase(grpc.insecure_channel(deployment.target))
    assert "shardline.v1.Inference" in db.get_services()


def test_replica_runs_a_tensor_parallel_two_engine_with_two_live_workers(deployment):
    info = deployment.replica().info.remote().result()
    assert (info.tensor_parallel_size, info.pipeline_parallel_size, info.data_parallel_size) == (2, 1, 1)
    # The engine counts its workers; the process tree here must agree: two vLLM
    # worker processes, children of one vLLM engine core.
    assert info.workers == 2
    workers = [psutil.Process(pid) for pid in info.worker_pids]
    assert all(w.name().startswith("VLLM::Worker") for w in workers)
    assert {w.parent().name() for w in workers} == {"VLLM::EngineCore"} and len({w.ppid() for w in workers}) == 1
    with deployment.client() as client:
        models = {m.name: m for m in client.list_models()}
    assert set(models) == set(deployment.models)
    large, small = models[deployment.model], models["kv-small"]
    assert large.reported and (large.tensor_parallel_size, large.workers, large.ready_replicas) == (2, 2, 1)
    assert small.reported and (small.tensor_parallel_size, small.workers) == (1, 1)
    assert (large.expert_parallel, large.experts, large.quantization) == (False, 0, "")


def test_stream_returns_tokens_text_finish_reason_and_usage(deployment):
    with deployment.client() as client:
        chunks = list(
            client.stream(deployment.model, "The code of amber is", max_tokens=12, request_id="it-1", **GREEDY)
        )
    token_ids = [t for c in chunks for t in c.token_ids]
    assert len(token_ids) == 12 and len(chunks) > 1
    assert chunks[-1].finish_reason == "length"
    assert chunks[-1].usage.completion_tokens == 12 and chunks[-1].usage.prompt_tokens > 1
    assert {c.request_id for c in chunks} == {"it-1"}
    assert "".join(c.text for c in chunks)


def test_unary_and_stream_agree_under_greedy_decoding(deployment):
    with deployment.client() as client:
        reply = client.generate(deployment.model, "Once upon a time", max_tokens=10, **GREEDY)
        streamed = [
            t for c in client.stream(deployment.model, "Once upon a time", max_tokens=10, **GREEDY) for t in c.token_ids
        ]
    assert list(reply.token_ids) == streamed


def test_stop_string_ends_generation(deployment):
    with deployment.client() as client:
        free = client.generate(deployment.model, "Hello", max_tokens=16, **GREEDY).text
        stop = free[3:6]
        stopped = client.generate(deployment.model, "Hello", max_tokens=16, stop=[stop], **GREEDY)
    assert stopped.finish_reason == "stop"
    assert stop not in stopped.text and free.startswith(stopped.text)


def _engine_stats(deployment):
    return deployment.replica().stats.remote().result()


def _engine_aborted_once(deployment, before: int) -> None:
    """The engine aborted exactly one more request than `before`, and holds none."""
    eventually(
        lambda: _engine_stats(deployment).aborted_requests == before + 1,
        interval_s=0.1,
        message="the engine aborted the request",
    )
    eventually(
        lambda: _engine_stats(deployment).unfinished_requests == 0,
        interval_s=0.1,
        message="no unfinished engine request",
    )


def test_client_cancel_aborts_the_engine_request(deployment):
    before = _engine_stats(deployment).aborted_requests
    with deployment.client() as client:
        call = client.stream(deployment.model, "Tell a long story", max_tokens=2000, **GREEDY)
        next(call), next(call)
        call.cancel()
    _engine_aborted_once(deployment, before)


def test_deadline_aborts_the_engine_request(deployment):
    before = _engine_stats(deployment).aborted_requests
    with deployment.client() as client, pytest.raises(grpc.RpcError) as info:
        client.generate(deployment.model, "Tell a long story", max_tokens=2000, timeout=0.5, **GREEDY)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    _engine_aborted_once(deployment, before)


@pytest.mark.parametrize(
    "model, prompt, sampling, code, message",
    [
        ("nope", "hi", {}, grpc.StatusCode.NOT_FOUND, "model 'nope' is not served"),
        (None, "hi", {"top_p": 0.0}, grpc.StatusCode.INVALID_ARGUMENT, "top_p must be in (0, 1] (got 0.0)"),
        (None, "hi", {"max_tokens": 0}, grpc.StatusCode.INVALID_ARGUMENT, "max_tokens must be at least 1 (got 0)"),
        (None, "hi", {"stop": [""]}, grpc.StatusCode.INVALID_ARGUMENT, "stop[0] is empty"),
        (None, "amber " * 3000, {}, grpc.StatusCode.INVALID_ARGUMENT, "accepts at most 2047 (max_model_len 2048"),
    ],
    ids=["unknown-model", "top_p", "max_tokens", "empty-stop", "prompt-too-long"],
)
def test_bad_input_gets_a_typed_status(deployment, model, prompt, sampling, code, message):
    with deployment.client() as client, pytest.raises(grpc.RpcError) as info:
        list(client.stream(model or deployment.model, prompt, **sampling))
    assert info.value.code() == code
    assert message in info.value.details()


def test_cli_status_and_generate_against_the_running_cluster(deployment):
    cli = [sys.executable, "-m", "shardline.cli.main"]
    status = subprocess.run(cli + ["status", "--name", "shardline-it"], capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    assert (
        "llm-kv-large" in status.stdout
        and "llm-kv-small" in status.stdout
        and "HEALTHY" in status.stdout
        and "1/1" in status.stdout
    )
    gen = subprocess.run(
        cli
        + [
            "generate",
            "--target",
            deployment.target,
            "--model",
            deployment.model,
            "--max-tokens",
            "5",
            "--temperature",
            "0",
            "Hi",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert gen.returncode == 0, gen.stderr
    assert "completion 5 tokens" in gen.stderr


def test_trained_tiers_answer_the_retrieval_task_above_chance(deployment):
    """Through the real gRPC path. Chance is 1 in 10,000 (four random digits)."""
    from shardline.models.evaluate import evaluate

    cells = {c.model: c for c in evaluate(deployment.target, deployment.models, [100], items=20)}
    assert all(c.correct >= 2 for c in cells.values()), {m: c.correct for m, c in cells.items()}


def test_pipeline_parallel_two_answers_with_the_pp1_greedy_tokens(deployment):
    """kv-small split into two pipeline stages (two worker processes on CPU) against the
    session's one-worker kv-small: same weights, so the same greedy tokens over gRPC."""
    data = yaml.safe_load((ROOT / "deployments" / "kv-tiers.yaml").read_text())
    small = next(m for m in data["models"] if m["name"] == "kv-small")
    small.pop("compression")
    model = {**small, "name": "kv-small-pp2", "path": str(ROOT / small["path"]), "parallelism": {"pipeline": 2}}
    prompts = ["The code of amber is", "Once upon a time", "a b c d e f g"]
    with deployment.client() as client:
        reference = [list(client.generate("kv-small", p, max_tokens=12, **GREEDY).token_ids) for p in prompts]
    with deployed({"name": "shardline-pp2-it", "models": [model], "router": {}}) as pp2:
        with pp2.client() as client:
            (info,) = client.list_models()
            staged = [list(client.generate("kv-small-pp2", p, max_tokens=12, **GREEDY).token_ids) for p in prompts]
    assert info.reported and (info.pipeline_parallel_size, info.tensor_parallel_size, info.workers) == (2, 1, 2)
    assert all(len(tokens) == 12 for tokens in reference)
    assert staged == reference


def test_cli_down_removes_the_deployment(deployment):
    """Runs last in this module (and this module last): it deletes the shared app."""
    cli = [sys.executable, "-m", "shardline.cli.main"]
    down = subprocess.run(cli + ["down", "--name", "shardline-it"], capture_output=True, text=True, timeout=180)
    assert down.returncode == 0, down.stderr
    status = subprocess.run(cli + ["status", "--name", "shardline-it"], capture_output=True, text=True, timeout=120)
    assert status.returncode == 1 and "no application named 'shardline-it'" in status.stderr
