"""Overload through the real grpc.aio router over fake replicas that admit like Ray
Serve (a fixed number of slots, an unbounded queue behind them), driven by the
overload drill (shardline.faults.overload): per-model admission rejects the excess
at once with retry advice and keeps accepted latency bounded. The negative control
(a queue too large to matter) shows what the drill catches: latency that grows
with the backlog.

tests/integration/test_faults_load.py runs the drill on real vLLM.
"""

import contextlib

import grpc
import httpx
import pytest

from builders import make_request, make_spec
from fakes import SlottedBackend, fake_stack
from shardline.faults.overload import overload
from shardline.outcomes import Verdict
from shardline.v1 import inference_pb2_grpc as pb_grpc
from shardline.wire import RETRY_PUSHBACK_TRAILER
from waiting import eventually_async

PROMPT = "a b c d e f g h"
TOKENS = 20
STEP_S = 0.01  # 20 tokens: 0.2 s a request, long next to a loop hiccup


@contextlib.asynccontextmanager
async def slotted_stack(ongoing, queued, step_s=STEP_S, http=False):
    replicas = {"max_ongoing_requests": ongoing, "max_queued_requests": queued, "target_ongoing_requests": 1}
    spec = make_spec(model={"replicas": replicas}, router={"port": 0, **({"http_port": 0} if http else {})})
    async with fake_stack(spec, step_s=step_s, backend_of=lambda servers: SlottedBackend(servers, slots=ongoing)) as s:
        yield s.router, s.backend, s.channel


def make(request_id):
    return make_request(prompt=PROMPT, max_tokens=TOKENS, request_id=request_id)


async def test_overload_is_rejected_fast_and_accepted_latency_stays_bounded():
    async with slotted_stack(ongoing=4, queued=2) as (router, backend, channel):
        result = await overload(channel, make, slots=4, factor=3.0, duration_s=1.5, unloaded_n=3, capacity_n=24)
        assert router.pipeline.in_flight == 0 and router.pipeline.capacity.in_flight["tiny-llama"] == 0
    loaded = result.overload
    assert loaded["verdicts"]["LOST"] == loaded["verdicts"]["CORRUPT"] == loaded["untyped"] == 0, loaded
    assert result.at_capacity["verdicts"]["OK"] == result.at_capacity["requests"]  # capacity itself is never refused
    rejected = [r for r in result.records["overload"] if r.verdict is Verdict.REJECTED_RETRYABLE]
    assert len(rejected) > loaded["requests"] / 3, loaded  # about 2 in 3 at 3x
    assert {r.code for r in rejected} == {"RESOURCE_EXHAUSTED"}
    assert all(
        "its limit is 6 (1 ready replica(s) x (max_ongoing_requests 4 + max_queued_requests 2))" in r.message
        and "retry after" in r.message
        for r in rejected
    )
    assert loaded["verdicts"]["OK"] + len(rejected) == loaded["requests"]
    assert backend.most_active == 6  # 4 running + at most max_queued_requests (2) waiting, ever
    # So an accepted request waits at most once for the requests ahead of it (2 queued
    # behind 4 slots: 2x the time at capacity); the rest is slack for a loop that
    # client, router and replica share.
    assert result.accepted_p99_vs_capacity < 4.0, (result.overload["e2e_p99_s"], result.at_capacity["e2e_p99_s"])
    assert loaded["reject_p99_s"] < result.at_capacity["e2e_p50_s"] / 2  # typically a few ms


async def test_negative_control_an_unbounded_queue_lets_latency_grow_with_the_backlog():
    async with slotted_stack(ongoing=4, queued=10_000) as (router, backend, channel):
        result = await overload(channel, make, slots=4, factor=3.0, duration_s=1.5, unloaded_n=3)
    assert result.overload["verdicts"]["REJECTED_RETRYABLE"] == 0
    assert backend.most_active > 20
    assert result.accepted_p99_vs_capacity > 5.0, (result.overload["e2e_p99_s"], result.at_capacity["e2e_p99_s"])


async def test_a_full_model_answers_with_the_retry_pushback_trailer():
    async with slotted_stack(ongoing=1, queued=0, step_s=0.01) as (router, backend, channel):
        stub = pb_grpc.InferenceStub(channel)
        busy = stub.GenerateStream(make_request(prompt=PROMPT, max_tokens=1000))
        await busy.read()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Generate(make_request(prompt=PROMPT))
        busy.cancel()
    error = info.value
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "model 'tiny-llama' has 1 requests in flight at this router; its limit is 1" in error.details()
    assert dict(error.trailing_metadata())[RETRY_PUSHBACK_TRAILER] == "1000"  # no request finished yet: 1 s


async def test_the_http_door_shares_the_limit_and_answers_429_with_retry_after():
    async with slotted_stack(ongoing=1, queued=1, step_s=0.01, http=True) as (router, backend, channel):
        stub = pb_grpc.InferenceStub(channel)
        busy = [stub.GenerateStream(make_request(prompt=PROMPT, max_tokens=1000)) for _ in range(2)]
        capacity = router.pipeline.capacity
        await eventually_async(lambda: capacity.in_flight["tiny-llama"] == 2, message="one call streams, one waits")
        async with httpx.AsyncClient() as http:
            reply = await http.post(
                f"http://127.0.0.1:{router.http_port}/v1/completions",
                json={"model": "tiny-llama", "prompt": PROMPT, "max_tokens": 4},
            )
        for call in busy:
            call.cancel()
        await eventually_async(
            lambda: capacity.in_flight["tiny-llama"] == 0, message="cancelled calls give their slots back"
        )
    assert reply.status_code == 429 and reply.headers["Retry-After"] == "1"
    error = reply.json()["error"]
    assert error["type"] == "rate_limit_error" and "its limit is 2" in error["message"]
