"""The router's gRPC surface on a real grpc.aio server (port 0) over fake replicas.

No Ray here: LLMServer objects with a fake engine stand behind the router, so the
router's own behaviour (admission, streaming, health, reflection, cancellation,
limits) is tested fast. tests/integration repeats the essentials on real vLLM.
"""

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from builders import make_request
from fakes import fake_stack
from shardline.v1 import inference_pb2 as pb
from waiting import eventually_async

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
async def stack():
    async with fake_stack(refresh=False) as s:
        yield s


async def rpc_error(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


async def test_stream_delivers_every_delta_then_usage(stack):
    chunks = [c async for c in stack.stub.GenerateStream(make_request(prompt="a b c", max_tokens=4, request_id="r1"))]
    assert "".join(c.text for c in chunks) == " a b c a"
    assert [t for c in chunks for t in c.token_ids] == [0, 1, 2, 3]
    assert [c.finish_reason for c in chunks][-1] == "length"
    assert not any(c.finish_reason for c in chunks[:-1])
    assert chunks[-1].usage == pb.Usage(prompt_tokens=3, completion_tokens=4)
    assert {c.request_id for c in chunks} == {"r1"}


async def test_unary_generate_joins_the_stream(stack):
    reply = await stack.stub.Generate(make_request(prompt="x y", max_tokens=3))
    assert (reply.text, list(reply.token_ids), reply.finish_reason) == (" x y x", [0, 1, 2], "length")
    assert reply.usage.completion_tokens == 3 and reply.request_id


async def test_list_models_reports_parallelism_and_readiness(stack):
    await stack.router.refresh_health()
    (model,) = (await stack.stub.ListModels(pb.ListModelsRequest())).models
    assert (model.name, model.max_model_len, model.tensor_parallel_size, model.ready_replicas) == (
        "tiny-llama",
        512,
        1,
        1,
    )


@pytest.mark.parametrize(
    "overrides, code, message",
    [
        ({"model": "gpt-9"}, grpc.StatusCode.NOT_FOUND, "model 'gpt-9' is not served"),
        ({"temperature": 3.0}, grpc.StatusCode.INVALID_ARGUMENT, "temperature must be in [0, 2.0] (got 3.0)"),
        ({"max_tokens": 10**6}, grpc.StatusCode.INVALID_ARGUMENT, "max_tokens is 1000000; the limit is 4096"),
        ({"prompt": "w " * 2000}, grpc.StatusCode.INVALID_ARGUMENT, "prompt has 2000 tokens; limit 1000"),
    ],
)
async def test_bad_requests_get_typed_statuses(stack, overrides, code, message):
    for call in (stack.stub.Generate, stack.stub.GenerateStream):
        response = call(make_request(**overrides))
        error = await rpc_error(response if call is stack.stub.Generate else _drain(response))
        assert error.code() == code
        assert message in error.details()


async def _drain(stream):
    return [c async for c in stream]


async def test_health_is_not_serving_until_replicas_are_ready():
    async with fake_stack(refresh=False) as s:
        s.backend.ready = {"tiny-llama": 0}
        await s.router.refresh_health()
        assert await s.health_of() == NOT_SERVING
        assert await s.health_of("shardline.v1.Inference/tiny-llama") == NOT_SERVING
        error = await rpc_error(s.stub.Generate(make_request()))
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        s.backend.ready = {"tiny-llama": 1}
        await s.router.refresh_health()
        assert await s.health_of() == SERVING
        assert await s.health_of("shardline.v1.Inference") == SERVING


async def test_reflection_lists_the_services(stack):
    db = ProtoReflectionDescriptorDatabase(grpc.insecure_channel(f"127.0.0.1:{stack.router.port}"))
    services = await asyncio.to_thread(db.get_services)
    assert "shardline.v1.Inference" in services and "grpc.health.v1.Health" in services
    method = await asyncio.to_thread(db.FindFileContainingSymbol, "shardline.v1.Inference")
    assert method.package == "shardline.v1"


async def test_client_cancel_aborts_the_engine_request():
    async with fake_stack(refresh=False, step_s=0.01) as s:
        call = s.stub.GenerateStream(make_request(max_tokens=4000))
        async for _ in call:
            break
        call.cancel()
        await eventually_async(
            lambda: s.engine.aborted and not s.engine.unfinished and s.router.pipeline.in_flight == 0,
            message="the engine request aborted and the router idle",
        )
        assert len(s.engine.aborted) == 1 and not s.engine.unfinished
        assert s.router.pipeline.in_flight == 0


async def test_client_deadline_aborts_the_engine_request():
    async with fake_stack(refresh=False, step_s=0.01) as s:
        error = await rpc_error(s.stub.Generate(make_request(max_tokens=4000), timeout=0.3))
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        await eventually_async(lambda: s.engine.aborted, message="the engine request aborted")
        assert len(s.engine.aborted) == 1 and not s.engine.unfinished


async def test_requests_without_deadline_get_the_default_cap():
    async with fake_stack(refresh=False, step_s=0.01, limits={"default_deadline_s": 0.2}) as s:
        error = await rpc_error(s.stub.Generate(make_request(max_tokens=4000)))
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "passed its deadline of 0.2 s" in error.details()
        assert len(s.engine.aborted) == 1


async def test_in_flight_limit_rejects_with_resource_exhausted():
    async with fake_stack(refresh=False, step_s=0.01, limits={"max_concurrent_requests": 2}) as s:
        calls = [s.stub.GenerateStream(make_request(max_tokens=1000)) for _ in range(2)]
        for call in calls:
            await call.read()
        error = await rpc_error(s.stub.Generate(make_request()))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "router has 2 requests in flight; max_concurrent_requests is 2" in error.details()
        for call in calls:
            call.cancel()


async def test_unexpected_replica_errors_become_internal_not_a_crash(stack):
    async def broken(model, request):
        raise ZeroDivisionError("replica bug")
        yield  # an async generator

    stack.backend.stream = broken
    error = await rpc_error(stack.stub.Generate(make_request()))
    assert error.code() == grpc.StatusCode.INTERNAL
    assert "ZeroDivisionError: replica bug" in error.details()
    assert stack.router.pipeline.in_flight == 0
