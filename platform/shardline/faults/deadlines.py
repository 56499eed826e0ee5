"""Deadline drill: requests that cannot finish in time, with a client deadline or
with none (then the router's `router.limits.default_deadline_s` must cap them).

Every request must end DEADLINE_EXCEEDED close to its deadline, and engine work
must stop shortly after it: the drill polls the probe from the deadline on and
reports when router in-flight and engine unfinished were both back at 0.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc

from shardline.faults.probes import Counts, Probe, until_idle
from shardline.outcomes import Plan, Record, drive, percentile, tally
from shardline.v1 import inference_pb2 as pb

LOST_MARGIN_S = 30.0
"""Without a client deadline, a call still open this long after the cap is LOST."""


@dataclass
class DeadlineResult:
    tally: dict
    deadline_s: float
    """The deadline every request had: the client's, or the router's default cap."""
    client_deadline: bool
    """True: sent as the gRPC deadline; False: no deadline sent (the default cap)."""
    status_after_deadline_p99_s: float | None
    """How long after its deadline a DEADLINE_EXCEEDED reached the client (p99)."""
    idle_after_s: float | None
    """From the last request's deadline to router in-flight and engine unfinished
    both 0 (None: not within the timeout)."""
    after: Counts
    records: list[Record] = field(default_factory=list)


async def deadlines(
    channel: grpc.aio.Channel,
    requests: Sequence[pb.GenerateRequest],
    probe: Probe,
    deadline_s: float,
    client_deadline: bool = True,
    idle_timeout_s: float = 10.0,
) -> DeadlineResult:
    """Send all `requests` at once; each must need longer than `deadline_s`. With
    `client_deadline` False no deadline is sent and `deadline_s` must be the router's
    default cap."""
    plan = Plan(
        requests,
        concurrency=len(requests),
        deadline_s=deadline_s if client_deadline else None,
        lost_after_s=deadline_s + LOST_MARGIN_S,
    )
    await channel.channel_ready()  # a first connection inside the deadline would eat into it
    began = time.perf_counter()
    calls = asyncio.create_task(drive(channel, plan))
    await asyncio.sleep(deadline_s)  # nothing can be idle before the first deadline
    idle_at, after = await _idle_at(probe, idle_timeout_s + deadline_s)
    records = await calls
    last_deadline = began + max(r.start_s for r in records) + deadline_s
    late = [r.e2e_s - deadline_s for r in records if r.code == "DEADLINE_EXCEEDED"]
    return DeadlineResult(
        tally=tally(records),
        deadline_s=deadline_s,
        client_deadline=client_deadline,
        status_after_deadline_p99_s=percentile(late, 99),
        idle_after_s=None if idle_at is None else max(idle_at - last_deadline, 0.0),
        after=after,
        records=records,
    )


async def _idle_at(probe: Probe, timeout_s: float) -> tuple[float | None, Counts]:
    """The perf_counter time of the first idle reading (None: none within `timeout_s`)."""
    since = time.perf_counter()
    idle_after, counts = await until_idle(probe, since, timeout_s)
    return (None if idle_after is None else since + idle_after), counts
