"""Scenario: stop a deployment (`shardline down`, SIGTERM of `shardline up`) while
streams run through its router.

Long greedy streams start; once every one has its first token, `stop` runs (in a
thread). From then on a health Watch records when the router turns NOT_SERVING,
and a prober sends a new short call every `probe_every_s` until `stop` returns.
Scored: the live streams (every one must finish, intact), the seconds until
NOT_SERVING, the new calls (REJECTED_RETRYABLE, and how fast), and how long the
drain took.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shardline.client import channel_options, make_request
from shardline.outcomes import Plan, Record, drive, percentile, tally

START_TIMEOUT_S = 120.0
PROBE_TOKENS = 4


def prompts(n: int) -> list[str]:
    return [f"k{i % 89} = v{(i * 31) % 83} ; k{i % 47} = ?" for i in range(n)]


async def drain_under_load(
    target: str,
    model: str,
    stop: Callable[[], object],
    *,
    streams: int = 16,
    max_tokens: int = 256,
    probe_every_s: float = 0.1,
) -> dict:
    """`stop()` (blocking: e.g. `lifecycle.undeploy`, or SIGTERM and wait) runs once all
    `streams` have a token. Returns the live streams' tally and the drain figures."""
    batch = [
        make_request(model, p, max_tokens=max_tokens, temperature=0.0, ignore_eos=True, request_id=f"live{i}")
        for i, p in enumerate(prompts(streams))
    ]
    started: set[str] = set()
    all_started = asyncio.Event()

    def on_token(record: Record) -> None:
        started.add(record.request_id)
        if len(started) == streams:
            all_started.set()

    async with grpc.aio.insecure_channel(target) as channel:
        watch = _NotServingWatch(channel)
        live = asyncio.create_task(drive(channel, Plan(batch, concurrency=streams), on_token=on_token))
        await asyncio.wait_for(all_started.wait(), START_TIMEOUT_S)
        began = time.monotonic()
        stopping = asyncio.create_task(_timed(stop))
        probes = asyncio.create_task(_probe(target, model, stopping, probe_every_s, began))
        records = await live
        ended = time.monotonic()
        stop_s = await stopping
        probe_records = await probes
        watch.cancel()
    return {
        "live": tally(records),
        "live_streams": streams,
        "not_serving_s": watch.seconds_after(began),
        "drain_s": ended - began,
        "stop_s": stop_s,
        "probes": tally(probe_records),
        "probe_reject_p50_s": percentile([r.e2e_s for r in probe_records if r.code == "UNAVAILABLE"], 50),
        "probe_slowest": [
            f"sent at {r.start_s:.2f} s: {r.code} after {r.e2e_s:.2f} s {r.message[:100]}"
            for r in sorted(probe_records, key=lambda r: -r.e2e_s)[:5]
        ],
    }


async def _timed(blocking: Callable[[], object]) -> float:
    began = time.monotonic()
    await asyncio.to_thread(blocking)
    return time.monotonic() - began


async def _probe(target: str, model: str, stopping: asyncio.Task, every_s: float, began: float) -> list[Record]:
    """New calls while the deployment stops, on a client channel without retries (a
    retry would hide how fast the refusal came). `start_s`: seconds after the stop."""
    calls: list[tuple[float, asyncio.Task]] = []
    async with grpc.aio.insecure_channel(target, options=channel_options(None)) as channel:
        n = 0
        while not stopping.done():
            request = make_request(model, "k1 = v2 ; k1 = ?", max_tokens=PROBE_TOKENS, request_id=f"new{n}")
            calls.append(
                (time.monotonic() - began, asyncio.create_task(drive(channel, Plan([request], lost_after_s=60.0))))
            )
            n += 1
            await asyncio.sleep(every_s)
        records = []
        for sent_at, call in calls:
            (record,) = await call
            record.start_s = sent_at
            records.append(record)
    return records


class _NotServingWatch:
    """grpc.health.v1 Watch on the whole router: notes when NOT_SERVING arrives."""

    def __init__(self, channel: grpc.aio.Channel):
        self.at: float | None = None
        self._task = asyncio.create_task(self._watch(channel))

    async def _watch(self, channel: grpc.aio.Channel) -> None:
        stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
        try:
            async for reply in stream:
                if reply.status == health_pb2.HealthCheckResponse.NOT_SERVING and self.at is None:
                    self.at = time.monotonic()
        except grpc.aio.AioRpcError:
            pass  # the router closed the stream as it went away

    def seconds_after(self, began: float) -> float | None:
        return None if self.at is None else self.at - began

    def cancel(self) -> None:
        self._task.cancel()
