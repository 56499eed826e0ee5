"""Cancel storms and deadlines through the real grpc.aio router over a fake replica,
driven by the drills of shardline.faults: engine requests are aborted, router
in-flight and engine unfinished counts return to 0, and no request outlives its
deadline, the router's default cap included, even on a replica that never answers.

tests/integration/test_faults_load.py runs the same drills on real vLLM.
"""

import contextlib

from builders import make_request
from fakes import HungBackend, LocalBackend, fake_stack
from shardline.faults.cancel_storm import cancel_storm
from shardline.faults.deadlines import deadlines
from shardline.faults.probes import Counts
from shardline.outcomes import Verdict

PROMPT = "a b c d e f g h"
STEP_S, TOKENS = 0.01, 4000
WORK_S = STEP_S * TOKENS
"""What a request of the deadline tests needs from the fake engine (40 s): bounds on
how soon work stops are fractions of it, so a busy machine does not fail them."""


@contextlib.asynccontextmanager
async def probed_stack(step_s, backend_of=LocalBackend, **spec_overrides):
    async with fake_stack(step_s=step_s, backend_of=backend_of, **spec_overrides) as s:

        async def probe():
            stats = s.engine.stats()
            return Counts(s.router.pipeline.in_flight, stats.unfinished_requests, stats.aborted_requests)

        yield s.channel, probe, s.engine


def streams(n, tokens, prefix="r"):
    return [
        make_request(prompt=PROMPT, max_tokens=tokens, ignore_eos=True, request_id=f"{prefix}{i}") for i in range(n)
    ]


async def test_cancel_storm_aborts_every_cancelled_stream_and_counts_return_to_zero():
    async with probed_stack(step_s=0.005) as (channel, probe, engine):
        result = await cancel_storm(channel, streams(200, 40), probe, fraction=0.5, concurrency=32)
    counts = result.tally
    assert counts["verdicts"]["LOST"] == counts["verdicts"]["CORRUPT"] == counts["untyped"] == 0, counts
    # Half, less any whose last chunk carried the chosen offset (the stream finished first).
    assert result.cancelled == counts["verdicts"]["CANCELLED"] >= 90
    assert counts["verdicts"]["OK"] == 200 - result.cancelled  # every stream not cancelled finished
    # Every cancel reached the engine, but one that lands after the engine's last token
    # (the replica drains the engine ahead of the client) has nothing left to abort.
    assert 0.9 * result.cancelled <= result.aborted <= result.cancelled
    assert engine.stats().unfinished_requests == 0
    # Router and engine went idle after the storm (a leaked slot or an orphan generation never would).
    assert result.idle_after_s is not None, result.after
    assert all(r.tokens < 40 for r in result.records if r.verdict is Verdict.CANCELLED)


async def test_client_deadline_stops_engine_work_and_ends_deadline_exceeded():
    async with probed_stack(step_s=STEP_S) as (channel, probe, engine):
        result = await deadlines(channel, streams(8, TOKENS), probe, deadline_s=0.5)
    assert result.tally["codes"] == {"DEADLINE_EXCEEDED": 8}, [(r.start_s, r.e2e_s) for r in result.records]
    assert result.tally["verdicts"]["FAILED_TYPED"] == 8 and result.tally["untyped"] == 0
    # Engine work stopped long before the requests' own length (aborted, not run out).
    assert result.idle_after_s is not None and result.idle_after_s < WORK_S / 10, result.idle_after_s
    assert result.after.engine_aborted == 8


async def test_without_a_deadline_the_default_cap_ends_the_request():
    async with probed_stack(step_s=STEP_S, limits={"default_deadline_s": 0.3}) as (channel, probe, engine):
        result = await deadlines(channel, streams(4, TOKENS), probe, deadline_s=0.3, client_deadline=False)
    assert result.tally["codes"] == {"DEADLINE_EXCEEDED": 4}
    # The router's own cap ended them (its message), long before their own length.
    assert all("passed its deadline of 0.3 s" in r.message for r in result.records)
    assert result.status_after_deadline_p99_s < WORK_S / 10, result.status_after_deadline_p99_s
    assert result.idle_after_s is not None and result.idle_after_s < WORK_S / 10, result.idle_after_s


async def test_the_default_cap_holds_even_when_the_replica_never_answers():
    async with probed_stack(step_s=STEP_S, backend_of=HungBackend, limits={"default_deadline_s": 0.3}) as (
        channel,
        probe,
        engine,
    ):
        result = await deadlines(channel, streams(4, TOKENS), probe, deadline_s=0.3, client_deadline=False)
    assert result.tally["codes"] == {"DEADLINE_EXCEEDED": 4}
    assert all("passed its deadline of 0.3 s" in r.message for r in result.records)
    assert result.after.router_in_flight == 0
