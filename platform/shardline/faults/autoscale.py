"""Autoscaling drill: a model scaled to zero gets its first request, then load rises
until Serve adds replicas, then falls to a trickle until it removes them.

Phases (each bounded by its own timeout; figures in seconds from the phase's start):
- cold: one request while no replica runs; the router holds it while Serve starts
  the first replica. Figure: its time to first token.
- rise: `concurrency` closed-loop clients until `up_to` replicas are RUNNING, and
  `settle_s` more. Figures: time to Serve's scale-up decision (a replica beyond the
  running ones appears, starting), time to that replica RUNNING, TTFT while scaling
  and after.
- fall: a trickle of `trickle` clients (so streams are in flight when a replica
  stops: it must drain them) until one replica is RUNNING. Figure: time to it.
- idle (`to_zero`, for a model with `replicas.min` 0): no request at all until no
  replica runs. Figure: time from the last request's end to zero replicas.
Every request's verdict comes from shardline.outcomes: LOST and CORRUPT must be 0.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import grpc

from shardline.client import make_request
from shardline.faults.workload import prompts
from shardline.outcomes import Plan, Record, drive, percentile, tally

POLL_S = 0.25


@dataclass(frozen=True)
class Sample:
    t: float
    running: int
    starting: int
    stopping: int


@dataclass
class Timeline:
    """Replica states of one deployment, polled from `serve.status()`."""

    app: str
    deployment: str
    began: float = field(default_factory=time.perf_counter)
    samples: list[Sample] = field(default_factory=list)

    def poll(self) -> Sample:
        from ray import serve

        from shardline.serve.deployment_handles import enum_value

        app = serve.status().applications.get(self.app)
        status = app.deployments.get(self.deployment) if app else None
        states = {enum_value(s): n for s, n in (status.replica_states.items() if status else ())}
        sample = Sample(
            self.now(),
            states.get("RUNNING", 0),
            states.get("STARTING", 0) + states.get("PENDING_MIGRATION", 0),
            states.get("STOPPING", 0),
        )
        self.samples.append(sample)
        return sample

    async def until(self, condition, timeout_s: float) -> Sample:
        """Polls until `condition(sample)`; TimeoutError past `timeout_s`."""
        async with asyncio.timeout(timeout_s):
            while not condition(sample := await asyncio.to_thread(self.poll)):
                await asyncio.sleep(POLL_S)
        return sample

    def now(self) -> float:
        return time.perf_counter() - self.began

    def first(self, condition, after: float = 0.0) -> float | None:
        return next((s.t for s in self.samples if s.t >= after and condition(s)), None)


@dataclass
class DrillResult:
    cold: dict
    rise: dict
    fall: dict
    idle: dict | None
    outcomes: dict
    timeline: list[dict]


@dataclass(frozen=True)
class Timed:
    """A request's record, and when it started and ended on the timeline's clock."""

    start: float
    end: float
    record: Record


async def closed_loop(
    channel: grpc.aio.Channel,
    model: str,
    clients: int,
    max_tokens: int,
    stop: asyncio.Event,
    tag: str,
    clock=time.perf_counter,
    lost_after_s: float = 120.0,
) -> list[Timed]:
    """`clients` callers, each sending its next request as soon as the last ends, until
    `stop`. A request with no end after `lost_after_s` is LOST (keep it above the
    router's hold while a replica starts)."""
    done: list[Timed] = []
    texts = prompts(97)

    async def client(c: int) -> None:
        n = 0
        while not stop.is_set():
            text = texts[(c * 31 + n) % len(texts)]
            request = make_request(
                model, text, max_tokens=max_tokens, temperature=0.0, ignore_eos=True, request_id=f"{tag}-{c}-{n}"
            )
            start = clock()
            [record] = await drive(channel, Plan([request], concurrency=1, lost_after_s=lost_after_s))
            done.append(Timed(start, clock(), record))
            n += 1

    await asyncio.gather(*(client(c) for c in range(clients)))
    return done


async def autoscale_drill(
    target: str,
    app: str,
    deployment: str,
    model: str,
    *,
    concurrency: int = 8,
    trickle: int = 2,
    max_tokens: int = 64,
    up_to: int = 2,
    settle_s: float = 0.0,
    phase_timeout_s: float = 300.0,
    to_zero: bool = False,
) -> DrillResult:
    timeline = Timeline(app, deployment)
    async with grpc.aio.insecure_channel(target) as channel:
        cold = await _cold(channel, model, timeline, phase_timeout_s)
        rise, rise_records = await _rise(
            channel, model, timeline, concurrency, max_tokens, up_to, settle_s, phase_timeout_s
        )
        fall, fall_records = await _fall(channel, model, timeline, trickle, max_tokens, phase_timeout_s)
    idle = await _idle(timeline, max(t.end for t in fall_records), phase_timeout_s) if to_zero else None
    records = [cold.pop("record"), *(t.record for t in rise_records + fall_records)]
    return DrillResult(cold, rise, fall, idle, tally(records), [s.__dict__ for s in timeline.samples])


async def _cold(channel, model: str, timeline: Timeline, timeout_s: float) -> dict:
    before = await asyncio.to_thread(timeline.poll)
    request = make_request(model, "cold start", max_tokens=8, temperature=0.0, request_id="cold-0")
    # No client deadline (the spec's cap applies); counted LOST only well past the hold.
    [record] = await drive(channel, Plan([request], concurrency=1, lost_after_s=timeout_s + 60))
    return {"replicas_before": before.running, "ttft_s": record.ttft_s, "code": record.code, "record": record}


async def _rise(
    channel, model, timeline: Timeline, clients: int, max_tokens: int, up_to: int, settle_s: float, timeout_s: float
):
    start = timeline.now()
    base = (await asyncio.to_thread(timeline.poll)).running
    stop = asyncio.Event()
    load = asyncio.create_task(
        closed_loop(channel, model, clients, max_tokens, stop, "rise", timeline.now, timeout_s + 60)
    )
    try:
        await timeline.until(lambda s: s.running >= up_to, timeout_s)
        await asyncio.sleep(settle_s)
    finally:
        stop.set()
        records = await load
    decided = timeline.first(lambda s: s.running + s.starting > base, after=start)
    ready = timeline.first(lambda s: s.running > base, after=start)
    ready_at = ready if ready is not None else float("inf")
    scaling = [t.record.ttft_s for t in records if t.record.ttft_s is not None and t.start < ready_at]
    after = [t.record.ttft_s for t in records if t.record.ttft_s is not None and t.start >= ready_at]
    return {
        "replicas_before": base,
        "replicas_after": up_to,
        "decision_s": _since(decided, start),
        "ready_s": _since(ready, start),
        "ttft_while_scaling_p50_s": percentile(scaling, 50),
        "ttft_while_scaling_p99_s": percentile(scaling, 99),
        "ttft_after_p50_s": percentile(after, 50),
        "requests": len(records),
    }, records


async def _fall(channel, model, timeline: Timeline, clients: int, max_tokens: int, timeout_s: float):
    start = timeline.now()
    stop = asyncio.Event()
    load = asyncio.create_task(
        closed_loop(channel, model, clients, max_tokens, stop, "fall", timeline.now, timeout_s + 60)
    )
    try:
        await timeline.until(lambda s: s.running == 1 and s.starting == 0, timeout_s)
    finally:
        stop.set()
        records = await load
    down = timeline.first(lambda s: s.running == 1, after=start)
    return {
        "down_s": _since(down, start),
        "requests": len(records),
        "in_flight_at_scale_down": sum(1 for t in records if down is not None and t.start <= down <= t.end),
    }, records


async def _idle(timeline: Timeline, last_request_end: float, timeout_s: float) -> dict:
    await timeline.until(lambda s: s.running == s.starting == 0, timeout_s)
    zero = timeline.first(lambda s: s.running == s.starting == 0, after=last_request_end)
    return {"zero_s": _since(zero, last_request_end)}


def _since(t: float | None, start: float) -> float | None:
    return None if t is None else t - start
