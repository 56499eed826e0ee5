"""Replica health over fake engines that die or hang, through the real grpc.aio
router, scored by the outcome-accounting harness (shardline.outcomes).

A replica whose engine died or stalled goes out of service and exits; here its
exit is `ReplicaSetBackend.kill`, which ends its streams the way Ray does when a
replica process dies. tests/integration/test_faults_replicas.py does the same to
real vLLM engine processes (SIGKILL, SIGSTOP).
"""

import asyncio
import contextlib

import pytest

from builders import make_request, make_spec
from fakes import FakeEngine, ReplicaSetBackend, fake_stack, start_llm_server
from shardline.errors import EngineFailure, ReplicaLost
from shardline.generation import GenerationRequest
from shardline.outcomes import Plan, Verdict, drive, tally
from waiting import eventually_async

PROMPT = "a b c d e f g h"
TOKENS = 24
FAST_HEALTH = {"period_s": 0.2, "probe_timeout_s": 0.15, "timeout_s": 1.0}


@contextlib.asynccontextmanager
async def replica_set(replicas=2, step_s=0.004, health=None, **spec_overrides):
    """Replicas whose out-of-service exit kills them in the backend, and Serve's
    health checks simulated: each replica's check_health every `health.period_s`."""
    spec = make_spec(model={"health": health or FAST_HEALTH}, **spec_overrides)
    model = spec.models[0]
    backend = ReplicaSetBackend(model.name)
    engines = [FakeEngine(model, step_s=step_s) for _ in range(replicas)]
    for i, engine in enumerate(engines):
        backend.servers.append(await start_llm_server(model, engine, leave=lambda reason, i=i: backend.kill(i)))
    backend.ready = replicas
    checks = asyncio.create_task(_serve_health_checks(backend, model.health.period_s))
    try:
        async with fake_stack(spec, backend=backend) as s:
            backend.router = s.router
            yield backend, engines, s.channel
    finally:
        checks.cancel()
        for engine in engines:
            engine.resume()


async def _serve_health_checks(backend: ReplicaSetBackend, period_s: float) -> None:
    while True:
        await asyncio.sleep(period_s)
        live = [s for i, s in enumerate(backend.servers) if i not in backend.dead]
        await asyncio.gather(*(s.check_health() for s in live), return_exceptions=True)


def requests(n, tokens=TOKENS):
    return [make_request(prompt=PROMPT, max_tokens=tokens, request_id=f"r{i}") for i in range(n)]


def reference(n, tokens=TOKENS):
    return {f"r{i}": list(range(tokens)) for i in range(n)}


def after_tokens(tokens_seen, fault):
    """An on_token hook: run `fault()` once `tokens_seen` tokens arrived in all."""
    seen = [0]

    def hook(_record):
        seen[0] += 1
        if seen[0] == tokens_seen:
            fault()

    return hook


def assert_nothing_lost(counts, n):
    assert counts["verdicts"]["LOST"] == counts["verdicts"]["CORRUPT"] == 0, counts["corrupt"]
    assert counts["untyped"] == 0, counts["codes"]
    assert counts["verdicts"]["OK"] + counts["verdicts"]["OK_AFTER_RETRY"] == n, counts


async def test_streams_on_a_replica_whose_engine_dies_are_resumed_on_the_other():
    async with replica_set() as (backend, engines, channel):
        plan = Plan(requests(40), concurrency=16, reference=reference(40))
        records = await drive(channel, plan, on_token=after_tokens(100, engines[0].die))
        server = backend.servers[0]
    counts = tally(records)
    assert_nothing_lost(counts, 40)
    assert any(r.verdict is Verdict.OK_AFTER_RETRY and r.resumed_tokens for r in records)
    assert backend.dead == {0}  # out of service: it left at once
    assert "died" in server.failure


async def test_a_replica_whose_engine_died_fails_its_health_check_at_once():
    async with replica_set(health={"period_s": 60, "probe_timeout_s": 5, "timeout_s": 10}) as (
        backend,
        engines,
        _channel,
    ):
        server = backend.servers[0]
        engines[0].die()
        with pytest.raises(EngineFailure, match="died"):
            await server.check_health()
        probes = engines[0].probes
        with pytest.raises(EngineFailure, match="out of service"):
            await server.check_health()
        assert engines[0].probes == probes  # remembered: no probe sent
        with pytest.raises(ReplicaLost, match="out of service"):
            await anext(server.generate(GenerationRequest("late", PROMPT, max_tokens=4)))  # refused, retryable
        await eventually_async(lambda: backend.dead == {0}, message="the out-of-service replica left")


async def test_a_stalled_engine_is_detected_by_the_health_probe_and_its_streams_resumed():
    async with replica_set() as (backend, engines, channel):
        plan = Plan(requests(40), concurrency=16, reference=reference(40))
        records = await drive(channel, plan, on_token=after_tokens(100, engines[0].hang))
        server = backend.servers[0]
    counts = tally(records)
    # Undetected, the streams on the hung replica would hang until LOST: none is.
    assert_nothing_lost(counts, 40)
    assert backend.dead == {0} and "stalled" in server.failure
    assert any(r.verdict is Verdict.OK_AFTER_RETRY and r.resumed_tokens for r in records)


async def test_a_slow_probe_on_a_busy_engine_passes():
    spec = make_spec(model={"health": {"period_s": 1, "probe_timeout_s": 0.05, "timeout_s": 1}})
    engine = FakeEngine(spec.models[0], step_s=0.002, probe_s=0.2)
    exits = []
    server = await start_llm_server(spec.models[0], engine, leave=exits.append)
    stream = server.generate(GenerationRequest("busy", PROMPT, max_tokens=500))
    consumer = asyncio.create_task(_drain(stream))
    await server.check_health()  # timed out, but tokens flowed meanwhile: busy, not stuck
    consumer.cancel()
    assert server.failure is None and exits == []


async def test_a_slow_probe_on_an_idle_engine_means_stalled():
    spec = make_spec(model={"health": {"period_s": 1, "probe_timeout_s": 0.05, "timeout_s": 1}})
    exits = []
    server = await start_llm_server(spec.models[0], FakeEngine(spec.models[0], probe_s=0.2), leave=exits.append)
    with pytest.raises(EngineFailure, match=r"stalled: no token for any request in 0.05 s"):
        await server.check_health()
    await eventually_async(lambda: exits, message="the stalled replica left")
    assert len(exits) == 1 and "stalled" in exits[0]


async def test_a_slow_probe_on_an_engine_that_computes_without_tokens_passes():
    """One long prefill: no token for anyone during the probe, but the engine's
    processes use CPU (vLLM CPU runs an 8k-token prompt as one step of 10+ s)."""
    spec = make_spec(model={"health": {"period_s": 1, "probe_timeout_s": 0.05, "timeout_s": 1}})
    engine = FakeEngine(spec.models[0], probe_s=0.2)
    engine.cpu_used = 3.0
    exits = []
    server = await start_llm_server(spec.models[0], engine, leave=exits.append)

    async def compute():
        await asyncio.sleep(0.02)
        engine.cpu_used += 0.05  # 0.05 CPU s in a 0.05 s probe: a busy core

    computing = asyncio.create_task(compute())
    await server.check_health()
    await computing
    assert server.failure is None and exits == []


async def test_a_slow_probe_on_an_engine_that_neither_computes_nor_yields_means_stalled():
    spec = make_spec(model={"health": {"period_s": 1, "probe_timeout_s": 0.05, "timeout_s": 1}})
    engine = FakeEngine(spec.models[0], probe_s=0.2)
    engine.cpu_used = 3.0  # known, and frozen (a SIGSTOPped engine process)
    exits = []
    server = await start_llm_server(spec.models[0], engine, leave=exits.append)
    with pytest.raises(EngineFailure, match="stalled"):
        await server.check_health()
    await eventually_async(lambda: exits, message="the stalled replica left")


async def _drain(stream):
    async for _ in stream:
        pass


async def test_the_router_stall_guard_resumes_a_stream_whose_replica_sends_nothing():
    """No health checks here: the router alone notices that a replica went quiet."""
    health = {"period_s": 600, "probe_timeout_s": 10, "timeout_s": 60, "stall_timeout_s": 0.2}
    async with replica_set(health=health) as (backend, engines, channel):
        engines[0].hang()
        # One at a time: round-robin sends each first to the hung replica, its retry to the other.
        records = await drive(channel, Plan(requests(4), concurrency=1, reference=reference(4)))
    counts = tally(records)
    assert_nothing_lost(counts, 4)
    # Each retried once: the stall guard ended its wait (without it, each would wait
    # for the default cap and end DEADLINE_EXCEEDED, as the next test shows).
    assert counts["verdicts"]["OK_AFTER_RETRY"] == 4
    assert all(r.retries == 1 and r.resumed_tokens == 0 for r in records)
    assert backend.dead == set()  # the router does not kill replicas; Serve's checks do


async def test_without_a_stall_guard_a_quiet_replica_is_waited_for():
    health = {"period_s": 600, "probe_timeout_s": 10, "timeout_s": 60}
    async with replica_set(health=health) as (backend, engines, channel):
        engines[0].hang()
        records = await drive(channel, Plan(requests(1), deadline_s=0.5))
    assert records[0].code == "DEADLINE_EXCEEDED"


async def test_a_retry_waiting_for_a_replica_ends_typed_when_the_model_has_none_left():
    """Serve holds a call while no replica is up (until one is replaced: tens of
    seconds). A retry waiting so ends as soon as the health loop sees the model's
    last replica go: UNAVAILABLE before any token."""
    health = {"period_s": 600, "probe_timeout_s": 10, "timeout_s": 60}
    async with replica_set(health=health, router={"port": 0, "retry": {"backoff_s": 0}}) as (backend, engines, channel):
        engines[0].hang()
        engines[1].hang()  # takes the retry, never answers: like Serve's queue with no replica

        async def last_replica_gone():
            await eventually_async(lambda: backend.calls == [0], message="the call reached replica 0")
            backend.kill(0)
            await eventually_async(lambda: backend.calls == [0, 1], message="its retry reached replica 1")
            backend.ready = 0
            await backend.router.refresh_health()

        _, records = await asyncio.gather(last_replica_gone(), drive(channel, Plan(requests(1))))
    # Ended by the health loop's news, not by a deadline (it has none but the default cap,
    # and the replica never answers): no ready replica left, UNAVAILABLE.
    assert (records[0].verdict, records[0].code) == (Verdict.REJECTED_RETRYABLE, "UNAVAILABLE")
    assert "no ready replica left" in records[0].message


async def test_a_cut_stream_with_nowhere_to_resume_ends_aborted_with_its_tokens():
    health = {"period_s": 600, "probe_timeout_s": 10, "timeout_s": 60}
    async with replica_set(health=health, router={"port": 0, "retry": {"backoff_s": 0}}) as (backend, engines, channel):
        engines[1].hang()  # the survivor takes the resumed call but never answers

        def replica_0_dies_and_none_is_left():
            backend.kill(0)
            backend.ready = 0
            asyncio.get_running_loop().call_later(0.2, asyncio.ensure_future, backend.router.refresh_health())

        plan = Plan(requests(1), reference=reference(1))
        records = await drive(channel, plan, on_token=after_tokens(5, replica_0_dies_and_none_is_left))
    assert (records[0].verdict, records[0].code) == (Verdict.FAILED_TYPED, "ABORTED")
    assert records[0].tokens == 5 and "after 5 tokens" in records[0].message
