"""Retry and resume when a replica dies, through the real grpc.aio router over fake
replicas, scored by the outcome-accounting harness (shardline.outcomes).

tests/integration/test_faults_replicas.py kills real replica processes under vLLM.
"""

import contextlib

import pytest

from builders import make_request, make_spec
from fakes import FakeEngine, ReplicaSetBackend, fake_stack, start_llm_server
from shardline.outcomes import Plan, Verdict, drive, tally

PROMPT = "a b c d e f g h"
TOKENS = 24


@contextlib.asynccontextmanager
async def replica_set(replicas=2, step_s=0.004, **spec_overrides):
    spec = make_spec(**spec_overrides)
    servers = [
        await start_llm_server(spec.models[0], FakeEngine(spec.models[0], step_s=step_s)) for _ in range(replicas)
    ]
    backend = ReplicaSetBackend("tiny-llama", servers)
    async with fake_stack(spec, backend=backend) as s:
        yield backend, s.router, s.channel


def requests(n, tokens=TOKENS):
    return [make_request(prompt=PROMPT, max_tokens=tokens, request_id=f"r{i}") for i in range(n)]


def reference(n, tokens=TOKENS):
    return {f"r{i}": list(range(tokens)) for i in range(n)}


def kill_when(backend, index, tokens_seen):
    """An on_token hook: kill replica `index` once `tokens_seen` tokens arrived in all."""
    seen = [0]

    def hook(_record):
        seen[0] += 1
        if seen[0] == tokens_seen:
            backend.kill(index)

    return hook


async def test_a_replica_dying_mid_stream_is_resumed_on_the_survivor():
    async with replica_set() as (backend, router, channel):
        plan = Plan(requests(40), concurrency=16, reference=reference(40))
        records = await drive(channel, plan, on_token=kill_when(backend, 0, 100))
    counts = tally(records)
    assert counts["verdicts"]["LOST"] == counts["verdicts"]["CORRUPT"] == 0, counts["corrupt"]
    assert counts["verdicts"]["OK"] + counts["verdicts"]["OK_AFTER_RETRY"] == 40, counts
    resumed = [r for r in records if r.verdict is Verdict.OK_AFTER_RETRY]
    assert resumed and all(r.resumed_tokens > 0 for r in resumed)  # mid-stream: continued, not restarted
    assert router.pipeline.in_flight == 0


async def test_without_resume_a_cut_stream_ends_aborted_with_the_tokens_sent():
    async with replica_set(router={"port": 0, "retry": {"resume": False}}) as (backend, router, channel):
        plan = Plan(requests(16), concurrency=16, reference=reference(16))
        records = await drive(channel, plan, on_token=kill_when(backend, 0, 40))
    counts = tally(records)
    assert counts["verdicts"]["LOST"] == counts["verdicts"]["CORRUPT"] == 0, counts["corrupt"]
    aborted = [r for r in records if r.verdict is Verdict.FAILED_TYPED]
    assert aborted and {r.code for r in aborted} == {"ABORTED"}
    assert all(r.tokens > 0 and f"after {r.tokens} tokens" in r.message for r in aborted)


async def test_a_call_that_finds_no_live_replica_is_unavailable_after_its_attempts():
    async with replica_set(replicas=1, router={"port": 0, "retry": {"attempts": 2, "backoff_s": 0}}) as (
        backend,
        router,
        channel,
    ):
        backend.kill(0)
        records = await drive(channel, Plan(requests(1)))
    assert (records[0].verdict, records[0].code) == (Verdict.REJECTED_RETRYABLE, "UNAVAILABLE")
    assert "2 replica call(s)" in records[0].message
    assert backend.calls == []  # ReplicaSetBackend refused both before picking a replica


async def test_retries_stop_at_the_deadline():
    attempts, backoff_s = 10, 0.2
    async with replica_set(replicas=1, router={"port": 0, "retry": {"attempts": attempts, "backoff_s": backoff_s}}) as (
        backend,
        router,
        channel,
    ):
        backend.kill(0)
        records = await drive(channel, Plan(requests(1), deadline_s=0.5))
    assert records[0].code in ("UNAVAILABLE", "DEADLINE_EXCEEDED")
    # Every attempt's backoff would take 102 s: the deadline ended the retries long before.
    all_backoffs_s = sum(backoff_s * 2**n for n in range(attempts - 1))
    assert records[0].e2e_s < all_backoffs_s / 10, records[0]


@pytest.mark.parametrize("tokens_before_kill", [1, 10])
async def test_harness_flags_a_stream_that_repeats_tokens(tokens_before_kill, monkeypatch):
    """The harness must be able to fail: a router that restarted streams instead of
    resuming them would repeat tokens, and that is CORRUPT."""
    from shardline.router import replica_call

    monkeypatch.setattr(replica_call, "_resumed", lambda request, sent, deadline: request)
    monkeypatch.setattr(replica_call, "_continued", lambda delta, already: delta)
    async with replica_set() as (backend, router, channel):
        plan = Plan(requests(16), concurrency=16, reference=reference(16))
        records = await drive(channel, plan, on_token=kill_when(backend, 0, 16 * tokens_before_kill))
    assert tally(records)["verdicts"]["CORRUPT"] > 0
