"""Overload drill: offer a multiple of what a model can serve, and see who waits.

Three phases on one model:
1. unloaded: requests one at a time (the latency floor);
2. at capacity: `slots` concurrent streams, closed loop (the latency and
   throughput the model gives when exactly full);
3. overload: open-loop arrivals, evenly spaced, at `factor` x the phase-2
   throughput for `duration_s`. Open loop, because a client that is rejected
   does not slow the others down: arrivals keep coming as in production.

Bounded queues mean the excess of phase 3 is REJECTED_RETRYABLE (RESOURCE_EXHAUSTED)
within milliseconds, and accepted requests take at most about what they take at
capacity plus one queue's worth of waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import grpc

from shardline.outcomes import Plan, Record, Verdict, drive, percentile, tally
from shardline.v1 import inference_pb2 as pb

MakeRequest = Callable[[str], pb.GenerateRequest]
"""request_id -> the request to send (same shape every time, so latencies compare)."""


@dataclass
class OverloadResult:
    unloaded: dict
    at_capacity: dict
    overload: dict
    capacity_rps: float
    """Finished requests per second at capacity (phase 2)."""
    offered_rps: float
    accepted_rps: float
    records: dict[str, list[Record]] = field(default_factory=dict)

    @property
    def accepted_p99_vs_unloaded(self) -> float:
        return self.overload["e2e_p99_s"] / self.unloaded["e2e_p99_s"]

    @property
    def accepted_p99_vs_capacity(self) -> float:
        return self.overload["e2e_p99_s"] / self.at_capacity["e2e_p99_s"]


async def overload(
    channel: grpc.aio.Channel,
    make: MakeRequest,
    slots: int,
    factor: float = 3.0,
    duration_s: float = 10.0,
    unloaded_n: int = 4,
    capacity_n: int | None = None,
    deadline_s: float = 60.0,
    metadata: tuple[tuple[str, str], ...] = (),
) -> OverloadResult:
    """Run the three phases. `slots` is how many requests the model serves at once
    (ready replicas x max_ongoing_requests); `capacity_n` requests (default 3 x slots)
    measure phase 2."""
    unloaded = await drive(channel, Plan(_batch(make, "unloaded", unloaded_n), 1, deadline_s, metadata=metadata))
    began = time.perf_counter()
    capacity_n = capacity_n or 3 * slots
    full = await drive(channel, Plan(_batch(make, "capacity", capacity_n), slots, deadline_s, metadata=metadata))
    capacity_rps = sum(_accepted(r) for r in full) / (time.perf_counter() - began)
    offered = factor * capacity_rps
    began = time.perf_counter()
    loaded = await open_loop(channel, make, offered, duration_s, deadline_s, metadata)
    elapsed = time.perf_counter() - began
    return OverloadResult(
        unloaded=tally(unloaded),
        at_capacity=tally(full),
        overload=_with_reject_p50(tally(loaded), loaded),
        capacity_rps=capacity_rps,
        offered_rps=offered,
        accepted_rps=sum(_accepted(r) for r in loaded) / elapsed,
        records={"unloaded": unloaded, "at_capacity": full, "overload": loaded},
    )


async def open_loop(
    channel: grpc.aio.Channel,
    make: MakeRequest,
    rate_per_s: float,
    duration_s: float,
    deadline_s: float,
    metadata: tuple[tuple[str, str], ...] = (),
) -> list[Record]:
    """One request every 1 / `rate_per_s` seconds for `duration_s`, each on its own,
    whatever happened to the ones before."""
    count = max(1, round(rate_per_s * duration_s))
    began = time.perf_counter()

    async def one(i: int) -> Record:
        await asyncio.sleep(max(0.0, began + i / rate_per_s - time.perf_counter()))
        start = time.perf_counter() - began
        [record] = await drive(channel, Plan([make(f"overload-{i}")], 1, deadline_s, metadata=metadata))
        return replace(record, start_s=start)

    return list(await asyncio.gather(*(one(i) for i in range(count))))


def _batch(make: MakeRequest, name: str, n: int) -> list[pb.GenerateRequest]:
    return [make(f"{name}-{i}") for i in range(n)]


def _accepted(record: Record) -> bool:
    return record.verdict in (Verdict.OK, Verdict.OK_AFTER_RETRY)


def _with_reject_p50(counts: dict, records: list[Record]) -> dict:
    rejected = [r.e2e_s for r in records if r.verdict is Verdict.REJECTED_RETRYABLE]
    return {**counts, "reject_p50_s": percentile(rejected, 50)}
