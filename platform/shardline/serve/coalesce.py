"""Coalesces a stream of deltas so each request sends at most one message per interval.

Every message costs CPU at each hop (replica -> router -> client): on a busy
machine that cost, not the engine, bounds throughput. Merging the tokens that
arrive within `interval_s` keeps the per-token cost down while the first delta
and the last one still go out at once (TTFT and end-to-end latency unchanged).
A pump task drains the engine stream so it never waits on the consumer; with
`interval_s` 0 deltas go out as soon as the consumer takes them, merged only
when they piled up meanwhile.

The interval may be a function, read before each wait: the replica scales its
`stream_interval_ms` with the streams it has in flight (`load_scaled`), so that
coalescing costs inter-token latency only when the message rate it saves is high.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Callable

from shardline.generation import GenerationDelta

# Streams in flight at which a replica coalesces over its whole `stream_interval_ms`;
# with fewer, the interval shrinks in proportion. Measured on the 2-core bench machine
# (bench/README.md, "Where the time goes"): each message costs the router and the
# replica about 1 ms of CPU each, so the replica's rate is what to bound. At 16 streams
# and 50 ms that is 320 messages/s; one stream then waits 3 ms, about one engine step
# of the tiny Llama, i.e. its tokens go out as they come.
FULL_AT_STREAMS = 16


def load_scaled(max_interval_s: float, streams: int) -> float:
    """The coalescing interval for a replica with `streams` requests in flight."""
    return max_interval_s * min(1.0, streams / FULL_AT_STREAMS)


async def coalesce(
    stream: AsyncIterator[GenerationDelta],
    interval_s: float | Callable[[], float],
    deadline: float | None = None,
) -> AsyncIterator[GenerationDelta]:
    """Yield merged deltas from `stream`; raise TimeoutError past `deadline` (loop time)."""
    loop = asyncio.get_running_loop()
    interval = interval_s if callable(interval_s) else lambda: interval_s
    pending: list[GenerationDelta | None] = [None]
    arrived, finished = asyncio.Event(), asyncio.Event()
    pump = asyncio.create_task(_pump(stream, pending, arrived, finished))
    last_sent = -math.inf  # the first delta goes out immediately
    try:
        while True:
            async with asyncio.timeout_at(deadline):
                await arrived.wait()
                next_send = last_sent + interval()
                if not finished.is_set() and loop.time() < next_send:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout_at(next_send):
                            await finished.wait()  # the last delta never waits
            arrived.clear()
            if pump.done() and pump.exception():
                raise pump.exception()
            delta, pending[0] = pending[0], None
            if delta is not None:
                yield delta
                last_sent = loop.time()
            if finished.is_set() and pending[0] is None:
                return
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump


async def _pump(
    stream: AsyncIterator[GenerationDelta],
    pending: list[GenerationDelta | None],
    arrived: asyncio.Event,
    finished: asyncio.Event,
) -> None:
    try:
        async for delta in stream:
            pending[0] = delta if pending[0] is None else pending[0].merge(delta)
            arrived.set()
    finally:
        finished.set()
        arrived.set()
        await stream.aclose()  # aborts the engine request if it had not finished
