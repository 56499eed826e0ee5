"""Cancel storm: cancel a fraction of many streams at random token offsets.

Every cancelled stream must abort its engine request, and once the storm is over
the router's in-flight count and the engine's unfinished count must be back at 0
(the capacity leak of ray#44644 and the orphan generation of vllm#54947 are what
this catches). Streams not cancelled must all finish OK.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc

from shardline.faults.probes import Counts, Probe, until_idle
from shardline.outcomes import Plan, Record, Verdict, drive, tally
from shardline.v1 import inference_pb2 as pb


@dataclass
class CancelStormResult:
    tally: dict
    cancelled: int
    """Streams the client cancelled (one whose last chunk carried the chosen offset
    finished instead, and counts as OK)."""
    aborted: int
    """Engine aborts during the storm (the probe's count after minus before)."""
    idle_after_s: float | None
    """From the last stream's end to router in-flight and engine unfinished both 0
    (None: not within the timeout)."""
    before: Counts
    after: Counts
    records: list[Record] = field(default_factory=list)


async def cancel_storm(
    channel: grpc.aio.Channel,
    requests: Sequence[pb.GenerateRequest],
    probe: Probe,
    fraction: float = 0.5,
    concurrency: int = 16,
    seed: int = 7,
    deadline_s: float = 120.0,
    idle_timeout_s: float = 10.0,
) -> CancelStormResult:
    """Cancel `fraction` of `requests` (chosen with `seed`), each after a random number
    of tokens in [1, max_tokens - 1]; requests must set max_tokens (and ignore_eos, so
    they run that long)."""
    rng = random.Random(seed)
    chosen = rng.sample(list(requests), round(len(requests) * fraction))
    cancel_after = {r.request_id: rng.randint(1, r.sampling.max_tokens - 1) for r in chosen}
    before = await probe()
    records = await drive(channel, Plan(requests, concurrency, deadline_s, cancel_after=cancel_after))
    ended = time.perf_counter()
    idle_after, after = await until_idle(probe, ended, idle_timeout_s)
    return CancelStormResult(
        tally=tally(records),
        cancelled=sum(r.verdict is Verdict.CANCELLED for r in records),
        aborted=after.engine_aborted - before.engine_aborted,
        idle_after_s=idle_after,
        before=before,
        after=after,
        records=records,
    )
