"""Overload, cancel storms and deadlines on the real stack (router replica -> Serve ->
vLLM with the trained kv-small model), driven by the drills of shardline.faults and
scored by shardline.outcomes: LOST, CORRUPT and untyped statuses are 0 everywhere.

One app of its own (1 replica; 8 ongoing + 4 queued; an 8 s default deadline), so
the numbers mean something: what one replica holds, what it rejects, how fast it
lets go. Each test prints its figures (`pytest -s`); bench/faults.py runs the
same drills at larger sizes.

Machines of this kind differ about 3x in speed, and CI's may be busy: every time
bound here is a multiple of `baseline`, one short request's latency measured on
this app in the same run, or an ordering between two figures of the same drill.
"""

from __future__ import annotations

import asyncio
import json
import time

import grpc
import httpx
import pytest
from ray import serve

from live import ROOT, deployed
from shardline.client import make_request
from shardline.faults.cancel_storm import cancel_storm
from shardline.faults.deadlines import deadlines
from shardline.faults.overload import overload
from shardline.faults.probes import serve_probe, until_idle
from shardline.outcomes import Plan, Verdict, drive, percentile
from shardline.serve.app import ROUTER_DEPLOYMENT
from shardline.v1 import inference_pb2_grpc as pb_grpc
from shardline.wire import RETRY_PUSHBACK_TRAILER
from waiting import eventually_async

pytestmark = pytest.mark.integration

APP = "faults-load"
MODEL = "kv-small"
ONGOING, QUEUED = 8, 4
LIMIT = ONGOING + QUEUED
# The cap must outlast what an accepted call takes at 3x overload on a slow, busy
# machine (measured up to 2 s), and LONG must outlast the cap on a fast one (about
# 2 ms a token there): 8 s and 12000 tokens leave 3x on both sides.
DEFAULT_CAP_S = 8.0
TOKENS = 32
LONG = 12000
MAX_MODEL_LEN = 12288
PROMPT = "The code of amber is 4 8 2 1 . Question : what is the code of amber ? Answer :"


@pytest.fixture(scope="module")
def app(ray_cluster):
    data = {
        "name": APP,
        "models": [
            {
                "name": MODEL,
                "path": str(ROOT / "models/trained/kv-small"),
                "dtype": "float32",
                "max_model_len": MAX_MODEL_LEN,
                "engine_args": {"enforce_eager": True, "gpu_memory_utilization": 0.3},
                "replicas": {
                    "max_ongoing_requests": ONGOING,
                    "max_queued_requests": QUEUED,
                    "target_ongoing_requests": 1,
                },
            }
        ],
        "router": {"http_port": 0, "limits": {"default_deadline_s": DEFAULT_CAP_S, "max_tokens": LONG}},
        # Spans and metrics cost CPU that these 2-core timings would rather not share.
        "telemetry": {"exporter": "off", "metrics": False},
    }
    with deployed(data) as d:
        yield d


@pytest.fixture(scope="module")
def baseline(app) -> float:
    """Seconds one TOKENS-token request takes alone on this app (median of 5): the
    unit of every time bound in this module."""

    async def measure():
        async with grpc.aio.insecure_channel(app.target) as ch:
            records = await drive(ch, Plan([stream(f"baseline-{i}") for i in range(5)], concurrency=1))
        assert all(r.verdict is Verdict.OK for r in records), records
        return percentile([r.e2e_s for r in records], 50)

    seconds = asyncio.run(measure())
    figures("baseline", e2e_p50_s=seconds)
    return seconds


@pytest.fixture
async def channel(app):
    async with grpc.aio.insecure_channel(app.target) as ch:
        yield ch


@pytest.fixture
def probe(app):
    return serve_probe(APP, MODEL)


def stream(request_id, tokens=TOKENS):
    return make_request(MODEL, PROMPT, max_tokens=tokens, temperature=0.0, ignore_eos=True, request_id=request_id)


def figures(name, **values):
    print(f"\n{name}: {json.dumps(values, default=str)}")


async def peak_admitted(router, stop: asyncio.Event) -> int:
    """The most calls the router held for MODEL at once, sampled until `stop`."""
    peak = 0
    while not stop.is_set():
        peak = max(peak, (await router.endpoint.remote())["model_in_flight"][MODEL])
        await asyncio.sleep(0.02)
    return peak


async def all_admitted(router) -> bool:
    return (await router.endpoint.remote())["in_flight"] >= LIMIT


def clean(counts):
    return counts["verdicts"]["LOST"] == counts["verdicts"]["CORRUPT"] == counts["untyped"] == 0


async def test_overload_at_3x_is_rejected_fast_and_accepted_latency_stays_bounded(channel):
    router = serve.get_deployment_handle(ROUTER_DEPLOYMENT, app_name=APP)
    stop = asyncio.Event()
    peak = asyncio.create_task(peak_admitted(router, stop))
    try:
        result = await overload(
            channel,
            stream,
            slots=ONGOING,
            factor=3.0,
            duration_s=6.0,
            unloaded_n=4,
            capacity_n=3 * ONGOING,
            deadline_s=60.0,
        )
    finally:
        stop.set()
    loaded = result.overload
    accepted = sorted((r for r in result.records["overload"] if r.verdict is Verdict.OK), key=lambda r: r.start_s)
    half = len(accepted) // 2
    early, late = (percentile([r.e2e_s for r in part], 99) for part in (accepted[:half], accepted[half:]))
    figures(
        "overload",
        verdicts=loaded["verdicts"],
        untyped=loaded["untyped"],
        offered_rps=result.offered_rps,
        capacity_rps=result.capacity_rps,
        accepted_rps=result.accepted_rps,
        peak_admitted=await peak,
        e2e_p99_unloaded_s=result.unloaded["e2e_p99_s"],
        e2e_p99_at_capacity_s=result.at_capacity["e2e_p99_s"],
        e2e_p50_accepted_s=loaded["e2e_p50_s"],
        e2e_p99_accepted_s=loaded["e2e_p99_s"],
        e2e_p99_first_half_s=early,
        e2e_p99_second_half_s=late,
        ttft_p50_s=loaded["ttft_p50_s"],
        ttft_p99_s=loaded["ttft_p99_s"],
        reject_p50_s=loaded["reject_p50_s"],
        reject_p99_s=loaded["reject_p99_s"],
    )
    assert clean(loaded) and clean(result.at_capacity), loaded
    assert result.at_capacity["verdicts"]["OK"] == result.at_capacity["requests"]  # capacity itself is served
    rejected = [r for r in result.records["overload"] if r.verdict is Verdict.REJECTED_RETRYABLE]
    assert len(rejected) > loaded["requests"] / 3 and {r.code for r in rejected} == {"RESOURCE_EXHAUSTED"}
    assert all(f"its limit is {LIMIT}" in r.message and "retry after" in r.message for r in rejected)
    # Every accepted call is served in full: the queue in front of the replica is short.
    assert loaded["verdicts"]["OK"] + len(rejected) == loaded["requests"]
    # No backlog builds: the router never held more than the limit (a count, read from
    # the router while the drill ran), whatever the CPU did to the latencies.
    assert await peak == LIMIT, await peak
    # A refusal costs less than a service, in the same phase on the same CPU
    # (measured: milliseconds against about a second).
    assert loaded["reject_p99_s"] < loaded["e2e_p50_s"], (loaded["reject_p99_s"], loaded["e2e_p50_s"])


async def test_a_full_model_gives_retry_advice_over_grpc_and_http(app, channel, probe):
    stub = pb_grpc.InferenceStub(channel)
    router = serve.get_deployment_handle(ROUTER_DEPLOYMENT, app_name=APP)
    await router.endpoint.remote()  # the handle's first call is slow; not inside the window below
    busy = [stub.GenerateStream(stream(f"busy-{i}", LONG), timeout=30) for i in range(LIMIT)]
    try:
        # The app's default cap ends the busy calls within seconds: check while they are
        # admitted, without waiting for their first tokens on a busy CPU. (Asked of the
        # router: the replica, full, would answer a stats call only once a slot frees.)
        await eventually_async(lambda: all_admitted(router), timeout_s=60, message=f"{LIMIT} busy calls admitted")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Generate(stream("one-too-many"), timeout=30)
        async with httpx.AsyncClient(timeout=30) as http:
            reply = await http.post(app.http_url + "/completions", json={"model": MODEL, "prompt": PROMPT})
    finally:
        for call in busy:
            call.cancel()
        # Let their engine aborts land here, not in the next test's counts.
        await until_idle(probe, time.perf_counter(), 10.0)
    error = info.value
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"model '{MODEL}' has {LIMIT} requests in flight at this router; its limit is {LIMIT}" in error.details()
    assert int(dict(error.trailing_metadata())[RETRY_PUSHBACK_TRAILER]) >= 100
    assert reply.status_code == 429 and int(reply.headers["Retry-After"]) >= 1
    assert f"its limit is {LIMIT}" in reply.json()["error"]["message"]


async def test_cancel_storm_aborts_engine_requests_and_counts_return_to_zero(channel, probe, baseline):
    requests = [stream(f"storm-{i}") for i in range(200)]
    result = await cancel_storm(channel, requests, probe, fraction=0.5, concurrency=ONGOING, seed=7)
    counts = result.tally
    figures(
        "cancel storm",
        verdicts=counts["verdicts"],
        untyped=counts["untyped"],
        cancelled=result.cancelled,
        engine_aborted=result.aborted,
        idle_after_s=result.idle_after_s,
        ttft_p50_s=counts["ttft_p50_s"],
        ttft_p99_s=counts["ttft_p99_s"],
        e2e_p99_s=counts["e2e_p99_s"],
        after=result.after,
    )
    assert clean(counts), counts
    assert counts["verdicts"]["OK"] == 200 - result.cancelled and result.cancelled >= 90
    # A cancel that lands after the engine's last token has nothing left to abort.
    assert 0.8 * result.cancelled <= result.aborted <= result.cancelled
    # Idle within a few engine steps of the last stream's end (measured: about 10 ms).
    assert result.idle_after_s is not None and result.idle_after_s < 2 * baseline, (result.after, baseline)


async def test_client_deadline_stops_engine_work_shortly_after_it_passes(channel, probe, baseline):
    result = await deadlines(channel, [stream(f"deadline-{i}", LONG) for i in range(4)], probe, deadline_s=0.5)
    figures(
        "client deadline 0.5 s",
        codes=result.tally["codes"],
        untyped=result.tally["untyped"],
        status_after_deadline_p99_s=result.status_after_deadline_p99_s,
        idle_after_s=result.idle_after_s,
    )
    assert result.tally["codes"] == {"DEADLINE_EXCEEDED": 4} and clean(result.tally)
    assert result.idle_after_s is not None and result.idle_after_s < 2 * baseline, (result.after, baseline)


async def test_without_a_deadline_the_default_cap_stops_the_request(channel, probe, baseline):
    requests = [stream(f"cap-{i}", LONG) for i in range(4)]
    result = await deadlines(channel, requests, probe, deadline_s=DEFAULT_CAP_S, client_deadline=False)
    figures(
        f"default cap {DEFAULT_CAP_S:g} s",
        codes=result.tally["codes"],
        untyped=result.tally["untyped"],
        status_after_deadline_p99_s=result.status_after_deadline_p99_s,
        idle_after_s=result.idle_after_s,
    )
    assert result.tally["codes"] == {"DEADLINE_EXCEEDED": 4} and clean(result.tally)
    assert all(f"passed its deadline of {DEFAULT_CAP_S:g} s" in r.message for r in result.records)
    assert result.status_after_deadline_p99_s < 2 * baseline, (result.status_after_deadline_p99_s, baseline)
    assert result.idle_after_s is not None and result.idle_after_s < 2 * baseline, (result.after, baseline)
