"""Coalesces a stream of deltas so each request sends at most one message per interval.

Every message costs CPU at each hop (replica -> router -> client): on a busy
machine that cost, not the engine, bounds throughput. Merging the tokens that
arrive within `interval_s` keeps the per-token cost down while the first delta
and the last one still go out at once (TTFT and end-to-end latency unchanged).
A pump task drains the engine stream so it never waits on the consumer; with
`interval_s` 0 deltas go out as soon as the consumer takes them, merged only
when they piled up meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from shardline.generation import GenerationDelta


async def coalesce(
    stream: AsyncIterator[GenerationDelta], interval_s: float, deadline: float | None = None
) -> AsyncIterator[GenerationDelta]:
    """Yield merged deltas from `stream`; raise TimeoutError past `deadline` (loop time)."""
    loop = asyncio.get_running_loop()
    pending: list[GenerationDelta | None] = [None]
    arrived, finished = asyncio.Event(), asyncio.Event()
    pump = asyncio.create_task(_pump(stream, pending, arrived, finished))
    next_send = loop.time()  # the first delta goes out immediately
    try:
        while True:
            async with asyncio.timeout_at(deadline):
                await arrived.wait()
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
                next_send = loop.time() + interval_s
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
