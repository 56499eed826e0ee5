"""A model scaled to zero (`replicas.min: 0`): the router holds its requests while
the first replica starts, up to `replicas.autoscaling.hold_timeout_s`, then answers
UNAVAILABLE with retry advice. The backend here plays Serve's handle: a call made
while no replica runs waits until one is ready."""

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2

from builders import make_request, make_spec
from fakes import FakeEngine, LocalBackend, fake_stack, start_llm_server
from shardline.generation import GenerationRequest
from shardline.outcomes import Plan, Verdict, drive, tally
from shardline.serve import autoscaling
from shardline.v1 import inference_pb2_grpc as pb_grpc
from shardline.wire import RETRY_PUSHBACK_TRAILER
from waiting import eventually_async

PROMPT = "a b c d"
MODEL = "tiny-llama"


class ColdBackend(LocalBackend):
    """No replica until `start_replica()`; calls made before it wait for it, as
    Serve's handle holds them while the controller starts the first replica."""

    def __init__(self, servers):
        super().__init__(servers)
        self.ready = dict.fromkeys(servers, 0)
        self.calls = 0
        self._up = asyncio.Event()

    def start_replica(self) -> None:
        self.ready = dict.fromkeys(self.servers, 1)
        self._up.set()

    async def stream(self, model, request):
        self.calls += 1
        await self._up.wait()
        async for delta in self.servers[model].generate(request):
            yield delta


def cold_spec(min_replicas=0, hold_timeout_s=30.0):
    replicas = {"min": min_replicas, "max": 2, "autoscaling": {"hold_timeout_s": hold_timeout_s}}
    return make_spec(model={"replicas": replicas}, router={"health_period_s": 0.05})


async def test_a_request_is_held_until_the_first_replica_is_ready_then_served():
    async with fake_stack(cold_spec(), backend_of=ColdBackend) as stack:
        backend = stack.backend
        assert await stack.health_of() == health_pb2.HealthCheckResponse.SERVING  # it can hold
        plan = Plan([make_request(prompt=PROMPT, max_tokens=6, request_id=f"r{i}") for i in range(3)])
        run = asyncio.create_task(drive(stack.channel, plan))
        await eventually_async(lambda: backend.calls == 3, message="every call reached Serve's handle")
        assert not run.done()  # held, not refused
        backend.start_replica()
        counts = tally(await run)
    assert counts["verdicts"][Verdict.OK.value] == 3, counts


async def test_past_the_hold_timeout_the_request_ends_unavailable_with_retry_advice():
    async with fake_stack(cold_spec(hold_timeout_s=0.2), backend_of=ColdBackend) as stack:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await pb_grpc.InferenceStub(stack.channel).Generate(make_request(prompt=PROMPT))
        assert stack.router.pipeline.capacity.in_flight[MODEL] == 0  # its slot was given back
    error = info.value
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "no replica became ready within 0.2 s (replicas.autoscaling.hold_timeout_s)" in error.details()
    assert dict(error.trailing_metadata())[RETRY_PUSHBACK_TRAILER] == "200"


async def test_a_model_with_min_replicas_is_refused_at_once_without_one():
    async with fake_stack(cold_spec(min_replicas=1), backend_of=ColdBackend) as stack:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await pb_grpc.InferenceStub(stack.channel).Generate(make_request(prompt=PROMPT))
        assert stack.backend.calls == 0
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "has no ready replica yet" in info.value.details()


async def test_a_replica_reports_a_request_still_waiting_for_its_first_token_as_ttft():
    """The TTFT signal (serve/autoscaling.py) must see a queue that yields nothing."""
    model = make_spec().models[0]
    engine = FakeEngine(model)
    server = await start_llm_server(model, engine)
    engine.hang()
    stream = server.generate(GenerationRequest("stuck", PROMPT, max_tokens=2))
    first = asyncio.ensure_future(anext(stream))
    try:
        await eventually_async(
            lambda: server.record_autoscaling_stats()[autoscaling.TTFT_S] > 0.05, message="the stuck request's age"
        )
        stats = server.record_autoscaling_stats()
        assert stats[autoscaling.RUNNING] == 1  # the fake engine's unfinished request
    finally:
        engine.resume()
        await first
        await stream.aclose()
    assert server.record_autoscaling_stats()[autoscaling.TTFT_S] == 0.0  # answered: no longer waiting
