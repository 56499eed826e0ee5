import asyncio
import uuid

import pytest

from builders import make_spec
from fakes import FakeEngine, start_llm_server
from shardline.errors import InvalidArgument
from shardline.generation import GenerationDelta, GenerationRequest
from shardline.serve.coalesce import FULL_AT_STREAMS, coalesce, load_scaled

LONG_INTERVAL_S = 60.0


async def steps(n, gap_s, fail_at=None, log=None):
    try:
        for i in range(n):
            await asyncio.sleep(gap_s)
            if i == fail_at:
                raise InvalidArgument("bad")
            yield GenerationDelta(str(i), [i], "length" if i == n - 1 else None, 3, i + 1)
    finally:
        if log is not None:
            log.append("closed")


async def collect(stream):
    return [d async for d in stream]


async def test_merges_tokens_inside_the_interval_but_sends_the_first_at_once():
    # An interval far longer than the stream (20 steps of 5 ms): the first delta goes
    # at once, every other token merges into the last, which never waits.
    out = await collect(coalesce(steps(20, 0.005), interval_s=LONG_INTERVAL_S))
    assert [d.token_ids for d in out] == [[0], list(range(1, 20))]
    assert "".join(d.text for d in out) == "".join(map(str, range(20)))
    assert out[-1].finish_reason == "length" and out[-1].completion_tokens == 20


async def test_zero_interval_keeps_every_token_in_order():
    out = await collect(coalesce(steps(50, 0), interval_s=0))
    assert [t for d in out for t in d.token_ids] == list(range(50))


async def test_last_delta_does_not_wait_for_the_interval():
    loop = asyncio.get_running_loop()
    start = loop.time()
    await collect(coalesce(steps(3, 0.001), interval_s=LONG_INTERVAL_S))
    assert loop.time() - start < LONG_INTERVAL_S / 3  # three 1 ms steps, not the interval


async def test_errors_from_the_engine_propagate():
    with pytest.raises(InvalidArgument):
        await collect(coalesce(steps(5, 0, fail_at=2), interval_s=0))


async def test_deadline_raises_timeout_and_closes_the_engine_stream():
    log = []
    loop = asyncio.get_running_loop()
    with pytest.raises(TimeoutError):
        await collect(coalesce(steps(1000, 0.01, log=log), 0, deadline=loop.time() + 0.1))
    assert log == ["closed"]


async def test_consumer_closing_early_closes_the_engine_stream():
    log = []
    stream = coalesce(steps(1000, 0.001, log=log), interval_s=0)
    await anext(stream)
    await stream.aclose()
    assert log == ["closed"]


async def test_an_interval_function_is_read_before_each_wait():
    # 100 ms for the first wait, then 0: one merged delta, then the tokens one by one.
    calls = []

    def interval():
        calls.append(None)
        return 0.1 if len(calls) <= 2 else 0.0  # the first delta never waits

    out = await collect(coalesce(steps(40, 0.005), interval))
    assert [t for d in out for t in d.token_ids] == list(range(40))
    assert len(out[1].token_ids) > 1 and len(out) > 10
    assert [len(d.token_ids) for d in out[-5:]] == [1] * 5


def test_load_scaled_interval_grows_with_streams_up_to_the_spec_value():
    assert load_scaled(0.05, 0) == 0.0
    assert load_scaled(0.05, 1) == pytest.approx(0.05 / FULL_AT_STREAMS)
    assert load_scaled(0.05, FULL_AT_STREAMS // 2) == pytest.approx(0.025)
    assert load_scaled(0.05, FULL_AT_STREAMS) == load_scaled(0.05, 10 * FULL_AT_STREAMS) == 0.05


async def test_a_replica_coalesces_in_proportion_to_its_streams_in_flight():
    # 160 ms at full load: 16 streams of 20 tokens (2 ms apart) send first and last
    # only; one alone waits 10 ms per message, so it sends several in between.
    model = make_spec(model={"stream_interval_ms": 160}).models[0]
    server = await start_llm_server(model, FakeEngine(model, step_s=0.002))

    async def messages() -> int:
        request = GenerationRequest(request_id=uuid.uuid4().hex, prompt="a b c", max_tokens=20)
        return len([d async for d in server.generate(request)])

    alone = await messages()
    loaded = await asyncio.gather(*(messages() for _ in range(FULL_AT_STREAMS)))
    assert max(loaded) < alone
    assert server._streams == 0
