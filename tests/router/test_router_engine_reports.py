"""ListModels reports what the replicas' engines run, not what the spec asked for.

Over fakes: the fake engine's `reports` stands for what a vLLM engine would say
(vllm_engine.engine_info), so a setting the engine did not take shows as such.
"""

import asyncio

from builders import make_request, make_spec
from fakes import FakeEngine, ReplicaSetBackend, fake_stack, start_llm_server
from shardline.engine.protocol import EngineInfo
from shardline.router import engine_reports
from shardline.router.engine_reports import EngineReports
from shardline.v1 import inference_pb2 as pb
from waiting import eventually_async


def engine_says(**fields) -> EngineInfo:
    base = {"model": "tiny-llama", "max_model_len": 512, "tensor_parallel_size": 1, "pipeline_parallel_size": 1}
    return EngineInfo(**{**base, **fields})


async def list_models(stack) -> dict[str, pb.ModelInfo]:
    return {m.name: m for m in (await stack.stub.ListModels(pb.ListModelsRequest())).models}


async def test_list_models_shows_the_engines_report_not_the_spec():
    async with fake_stack(model={"parallelism": {"tensor": 2, "expert": 2}}) as stack:
        # The spec asked TP=2 x EP=2; this engine runs one worker and no expert parallelism.
        stack.engine.reports = engine_says(worker_pids=(41,), quantization="shardline-int8")
        (model,) = (await list_models(stack)).values()
    assert model.reported and (model.tensor_parallel_size, model.expert_parallel_size, model.workers) == (1, 1, 1)
    assert (model.expert_parallel, model.quantization, model.ready_replicas) == (False, "shardline-int8", 1)


async def test_list_models_carries_experts_per_rank_and_every_parallel_size():
    async with fake_stack() as stack:
        stack.engine.reports = engine_says(
            tensor_parallel_size=2,
            pipeline_parallel_size=1,
            data_parallel_size=1,
            expert_parallel=True,
            expert_parallel_size=2,
            worker_pids=(7, 8),
            experts=4,
            experts_per_rank=(2, 2),
        )
        (model,) = (await list_models(stack)).values()
    assert (model.tensor_parallel_size, model.data_parallel_size, model.workers) == (2, 1, 2)
    assert (model.expert_parallel, model.expert_parallel_size, model.experts) == (True, 2, 4)
    assert list(model.experts_per_rank) == [2, 2]


async def test_a_cold_replica_is_unknown_within_the_bound_not_the_spec(monkeypatch):
    monkeypatch.setattr(engine_reports, "LIST_WAIT_S", 0.2)
    spec = make_spec(model={"parallelism": {"tensor": 2}})
    engine = FakeEngine(spec.models[0])
    engine.info_s = 60.0  # a replica that does not answer
    async with fake_stack(spec, engines={"tiny-llama": engine}) as stack:
        loop = asyncio.get_running_loop()
        began = loop.time()
        (model,) = (await list_models(stack)).values()
        waited = loop.time() - began
        # Generation still works meanwhile: the report never blocks a request.
        reply = await stack.stub.Generate(make_request(prompt="a b", max_tokens=2))
    assert waited < 5.0 and reply.usage.completion_tokens == 2
    assert not model.reported and (model.tensor_parallel_size, model.workers, model.ready_replicas) == (0, 0, 1)
    assert model.name == "tiny-llama" and model.max_model_len == 512


async def test_a_model_without_ready_replicas_is_unknown():
    async with fake_stack() as stack:
        stack.backend.ready["tiny-llama"] = 0
        await stack.router.refresh_health()
        (model,) = (await list_models(stack)).values()
    assert not model.reported and model.ready_replicas == 0


async def test_the_report_is_kept_and_asked_again_when_replicas_change():
    async with fake_stack() as stack:
        engine = stack.engine
        engine.reports = engine_says(worker_pids=(1,))
        await list_models(stack)
        await list_models(stack)
        asked = engine.info_calls
        engine.reports = engine_says(worker_pids=(1, 2), tensor_parallel_size=2)
        assert (await list_models(stack))["tiny-llama"].workers == 1  # kept: no replica change
        stack.backend.ready["tiny-llama"] = 2
        await stack.router.refresh_health()
        await eventually_async(lambda: two_workers(stack), 5.0, message="the report asked again")
    assert asked == 1


async def two_workers(stack) -> bool:
    return (await list_models(stack))["tiny-llama"].workers == 2


async def test_a_failed_ask_leaves_the_model_unknown_and_the_next_call_asks_again():
    spec = make_spec()
    engine = FakeEngine(spec.models[0])
    backend = ReplicaSetBackend("tiny-llama", [await start_llm_server(spec.models[0], engine)])
    backend.dead.add(0)  # asks find no live replica
    reports = EngineReports(backend)
    reports.update({"tiny-llama": 1})
    assert await reports.get("tiny-llama", wait_s=1.0) is None
    backend.dead.clear()
    assert (await reports.get("tiny-llama", wait_s=1.0)).workers == 1
    reports.close()
