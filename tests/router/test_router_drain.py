"""Draining the router (what Serve does when it stops a router replica: `shardline
down`, SIGTERM of `shardline up`, a rolling update) on a real grpc.aio server over
fake replicas, scored by the outcome-accounting harness.

tests/integration/test_faults_drain.py drains real deployments on vLLM.
"""

import asyncio
from collections import Counter

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from builders import make_request, make_spec
from fakes import start_fake_stack
from shardline.outcomes import Plan, Verdict, drive, tally
from shardline.router.server import RouterServer
from shardline.v1 import inference_pb2_grpc as pb_grpc
from waiting import eventually_async

NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
PROMPT = "a b c d e f g h"
DRAIN_TIMEOUT_S = 30.0
"""Drains that must end on their own get this long: a drain that ends well before it
was not held by its timeout, on any machine."""


async def start_router(step_s=0.01, **overrides):
    s = await start_fake_stack(step_s=step_s, **overrides)
    await s.channel.close()  # these tests open their own channels
    return s.router, s.engine, s.target


def streams(n, tokens, prefix="r"):
    return [make_request(prompt=PROMPT, max_tokens=tokens, request_id=f"{prefix}{i}") for i in range(n)]


async def started(records_by_id, n):
    await eventually_async(lambda: len(records_by_id) >= n, message=f"{n} streams have a first token")


async def test_drain_reports_not_serving_first_then_live_streams_finish_and_new_calls_are_unavailable():
    router, engine, target = await start_router(step_s=0.01)
    async with grpc.aio.insecure_channel(target) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        seen = {}
        live = asyncio.create_task(
            drive(channel, Plan(streams(8, 100), concurrency=8), on_token=lambda r: seen.setdefault(r.request_id, r))
        )
        await started(seen, 8)
        draining = asyncio.create_task(router.drain(DRAIN_TIMEOUT_S))
        assert (await watch.read()).status == NOT_SERVING
        tokens_at_not_serving = sorted(r.tokens for r in seen.values())
        newcomers = await drive(channel, Plan(streams(4, 4, prefix="new")))
        tokens_at_newcomers_end = sorted(r.tokens for r in seen.values())
        records = await live
        report = await draining
    # Orderings, not clock readings: NOT_SERVING came, and the newcomers were refused,
    # while every live stream (100 tokens) was still running.
    assert max(tokens_at_not_serving) < 100 and max(tokens_at_newcomers_end) < 100, tokens_at_newcomers_end
    counts = tally(records)
    assert counts["verdicts"]["OK"] == 8, counts
    assert [(r.verdict, r.code) for r in newcomers] == [(Verdict.REJECTED_RETRYABLE, "UNAVAILABLE")] * 4
    assert (report.in_flight, report.cut) == (8, 0)
    # The drain lasted about as long as the streams it waited for (measured here), not its timeout.
    longest_s = max(r.e2e_s for r in records)
    assert report.seconds < 2 * longest_s + 1.0, (report.seconds, longest_s)
    assert engine.unfinished == set()


async def test_drain_cuts_what_is_left_at_the_timeout():
    step_s, tokens = 0.05, 1000  # each stream needs 50 s of engine steps at least
    router, engine, target = await start_router(step_s=step_s)
    async with grpc.aio.insecure_channel(target) as channel:
        seen = {}
        live = asyncio.create_task(
            drive(channel, Plan(streams(4, tokens), concurrency=4), on_token=lambda r: seen.setdefault(r.request_id, r))
        )
        await started(seen, 4)
        report = await router.drain(0.5)
        records = await live
    assert (report.in_flight, report.cut) == (4, 4)
    assert report.seconds < tokens * step_s / 5  # ended at its timeout, long before the streams could
    counts = tally(records)
    assert counts["verdicts"]["LOST"] == counts["untyped"] == 0, counts
    assert all(0 < r.tokens < tokens and r.verdict is not Verdict.OK for r in records)
    # Cut streams abort their engine requests.
    await eventually_async(lambda: not engine.unfinished, message="engine requests of cut streams aborted")


async def test_an_idle_router_drains_at_once_even_with_a_health_watch_open():
    """A Watch call never ends by itself: it must not hold the drain for its timeout."""
    router, _, target = await start_router()
    async with grpc.aio.insecure_channel(target) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
        await watch.read()
        report = await router.drain(DRAIN_TIMEOUT_S)
    assert (report.in_flight, report.cut) == (0, 0)
    assert report.seconds < DRAIN_TIMEOUT_S / 3, report


async def test_client_retries_unavailable_until_the_router_serves():
    from shardline.client import AsyncClient

    router, _, target = await start_router(router={"port": 0, "health_period_s": 0.02})
    backend = router._backend
    backend.ready = {"tiny-llama": 0}
    await router.refresh_health()
    try:
        async with AsyncClient(target, retry=None) as client:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                [c async for c in client.stream("tiny-llama", PROMPT, max_tokens=4)]
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        asyncio.get_running_loop().call_later(0.05, backend.ready.update, {"tiny-llama": 1})
        async with AsyncClient(target) as client:  # the default RetryPolicy
            chunks = [c async for c in client.stream("tiny-llama", PROMPT, max_tokens=4)]
        assert chunks[-1].finish_reason == "length"
    finally:
        await router.stop(0)


def test_retry_policy_is_checked_and_becomes_a_service_config():
    import json

    from shardline.client import RetryPolicy, channel_options

    config = json.loads(dict(channel_options(RetryPolicy(attempts=3)))["grpc.service_config"])
    (method,) = config["methodConfig"]
    assert method["name"] == [{"service": "shardline.v1.Inference"}]
    assert method["retryPolicy"]["maxAttempts"] == 3
    assert method["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert channel_options(None) == []
    with pytest.raises(ValueError, match=r"attempts is 6; gRPC allows 2 to 5"):
        RetryPolicy(attempts=6)


async def test_the_next_call_of_a_client_whose_call_ends_as_the_drain_begins_is_unavailable_not_cancelled():
    """The drain race (server.py's docstring, grpc/grpc#41785): a client's call ends just
    as the router begins to drain and its next call follows at once. Before the drain
    held the end of every call until the GOAWAY had gone out, about one such next call
    in five ended CANCELLED (gRPC core killed it unhandled); now it is refused
    UNAVAILABLE, or served."""
    codes = Counter()
    for attempt in range(20):
        router, _, target = await start_router(step_s=0.001)
        async with grpc.aio.insecure_channel(target) as channel:
            draining = None
            first = make_request(prompt=PROMPT, max_tokens=3, request_id=f"first{attempt}")
            async for chunk in pb_grpc.InferenceStub(channel).GenerateStream(first):
                if chunk.finish_reason:
                    draining = asyncio.create_task(router.drain(DRAIN_TIMEOUT_S))
            (record,) = await drive(
                channel, Plan([make_request(prompt=PROMPT, max_tokens=3, request_id=f"next{attempt}")])
            )
            codes[record.code] += 1
            await draining
    assert set(codes) <= {"OK", "UNAVAILABLE"}, codes


@pytest.mark.parametrize("surge", [True, False], ids=["surge", "stop-first"])
async def test_a_router_replaced_on_the_same_port_loses_no_call(surge):
    """A rolling update of the router under two clients that each send one call after
    another, one with the client's RetryPolicy and one without. Surge: the new router
    binds the port (SO_REUSEPORT) while the old one serves, then the old one drains.
    Stop-first (`surge_percent: 0`): the old one drains, and the port is closed until
    the new one has started. Either way every call of both clients ends OK or
    UNAVAILABLE (refused before anything was generated: safe to retry), never
    CANCELLED or worse; the retry policy rides out the switch, so its client usually
    sees only OK, while the client without one sees UNAVAILABLE for the calls that
    met the draining router or the closed port."""
    from shardline.client import RetryPolicy, channel_options

    old, engine, target = await start_router(step_s=0.002)
    port = int(target.rsplit(":", 1)[1])
    new = RouterServer(make_spec(router={"port": port}), old._backend)
    stop = asyncio.Event()
    records = {"retry": [], "no_retry": []}

    async def load(name, options):
        async with grpc.aio.insecure_channel(target, options=options) as channel:
            n = 0
            while not stop.is_set():
                batch = await drive(channel, Plan([make_request(prompt=PROMPT, max_tokens=8, request_id=f"{name}{n}")]))
                records[name] += batch
                n += 1
                if batch[0].code != "OK":
                    await asyncio.sleep(0.05)  # a client that got an error does not spin

    async def each_client_served(more, by):
        """Until each client has `more` OK calls beyond what it had now."""
        had = {name: oks(batch) for name, batch in records.items()}
        await eventually_async(
            lambda: all(oks(records[n]) >= had[n] + more for n in records),
            message=f"each client has {more} more OK calls ({by})",
        )

    loads = [
        asyncio.create_task(load("retry", channel_options(RetryPolicy()))),
        asyncio.create_task(load("no_retry", channel_options(None))),
    ]
    await each_client_served(3, by="the old router")
    if not surge:
        await old.drain(5.0)
        await eventually_async(
            lambda: any(r.code == "UNAVAILABLE" for r in records["no_retry"]),
            message="the client without retries found the port closed",
        )
    await new.start()
    await new.refresh_health()
    if surge:
        await each_client_served(3, by="both routers")
        await old.drain(5.0)
    await each_client_served(3, by="the new router")
    stop.set()
    await asyncio.gather(*loads)
    await new.stop(0)
    for name, batch in records.items():
        counts = tally(batch)
        assert counts["verdicts"]["LOST"] == counts["verdicts"]["CORRUPT"] == counts["untyped"] == 0, (name, counts)
        assert {r.code for r in batch} <= {"OK", "UNAVAILABLE"}, (
            name,
            counts["codes"],
            [(r.code, r.message) for r in batch if r.code != "OK"],
        )


def oks(batch):
    return sum(r.code == "OK" for r in batch)
