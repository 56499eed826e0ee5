"""Scenarios: a replica's engine dies, or stalls, while streams run through the router.

- `engine_death`: SIGKILL the vLLM EngineCore process of one of two replicas a
  quarter of the way into a batch of greedy streams. vLLM fails every request of
  that engine (EngineDeadError); the replica goes out of service and exits, the
  router resumes its streams on the other replica, Serve replaces it.
- `stuck_replica`: SIGSTOP that process instead (alive, no tokens). The replica's
  health probe gets no token and no other request does either: it is stalled, and
  goes the same way. The stopped process is always killed before returning.
- `all_engines_dead`: SIGKILL the engines of every replica of the model: the
  router's grpc.health for it turns NOT_SERVING, calls get UNAVAILABLE, and it is
  SERVING again once Serve has replaced them.

Each returns its outcome tally (shardline.outcomes) and the times the issue asks
for: until the replica left, until streams resumed, until it was replaced.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shardline.faults.processes import (
    POLL_S,
    EngineProcess,
    alive,
    engine_processes,
    gone_after,
    release,
    replaced_after,
)
from shardline.faults.workload import greedy_batch, reference_tokens
from shardline.outcomes import Plan, Record, Verdict, drive, percentile, tally

ORPHAN_TIMEOUT_S = 10.0


async def engine_death(target: str, app: str, model: str, **options) -> dict:
    """SIGKILL one replica's engine mid-load; see `_engine_fault` for options and figures."""
    return await _engine_fault(target, app, model, signal.SIGKILL, **options)


async def stuck_replica(target: str, app: str, model: str, **options) -> dict:
    """SIGSTOP one replica's engine mid-load; see `_engine_fault` for options and figures."""
    return await _engine_fault(target, app, model, signal.SIGSTOP, **options)


async def _engine_fault(
    target: str,
    app: str,
    model: str,
    sig: signal.Signals,
    *,
    requests: int = 64,
    concurrency: int = 16,
    max_tokens: int = 48,
    replace_timeout_s: float = 180.0,
    reference: dict[str, list[int]] | None = None,
) -> dict:
    """Signals the first replica's engine once a quarter of the batch's tokens arrived
    and more than half the streams in flight are midway (so the victim's are too, not
    still queued on a slow replica: the drill must cut streams, not only calls).

    Figures (seconds from the signal): `left_s` until the replica process exited,
    `resumed_p50_s`/`resumed_max_s`: how long each stream cut on it waited for its
    next token (from the other replica), `replaced_s` until the model had its replicas back
    (none of them the victim; not waited for when `replace_timeout_s` is 0), and
    `orphans`: the victim's processes still alive afterwards. `reference` (from
    `reference_tokens` over `greedy_batch`) saves the fault-free pass."""
    batch = greedy_batch(model, requests, max_tokens)
    if reference is None:
        reference = await reference_tokens(target, batch, concurrency)
    victims = engine_processes(app, model)
    if len(victims) < 2:
        raise RuntimeError(f"need 2 live replicas of {model!r} with engines on this node; found {victims}")
    victim, replicas = victims[0], len(victims)
    fault = _Fault(victim, sig, requests * max_tokens // 4, concurrency // 2 + 1, max_tokens)
    try:
        async with grpc.aio.insecure_channel(target) as channel:
            records = await drive(
                channel, Plan(batch, concurrency=concurrency, reference=reference), on_token=fault.hook
            )
        left_s = await fault.left if fault.left else None
    finally:
        if sig == signal.SIGSTOP:
            release(victim.engine_pid)
    resumed = fault.resume_gaps(records)
    await gone_after(victim.pids, time.monotonic(), ORPHAN_TIMEOUT_S)
    orphans = [pid for pid in victim.pids if alive(pid)]
    replaced_s = None
    if fault.at and replace_timeout_s:
        replaced_s = await replaced_after(app, model, {victim.replica_pid}, replicas, fault.at, replace_timeout_s)
    return {
        "signal": sig.name,
        "fault": tally(records),
        "victim": {"replica_pid": victim.replica_pid, "engine_pid": victim.engine_pid},
        "left_s": left_s,
        "resumed_streams": len(resumed),
        "resumed_p50_s": percentile(resumed, 50),
        "resumed_max_s": max(resumed) if resumed else None,
        "replaced_s": replaced_s,
        "orphans": orphans,
    }


class _Fault:
    """An on_token hook: signals the victim's engine once `after_tokens` tokens arrived
    and at least `midway` streams have some but not all of their `max_tokens`, and
    keeps, for each stream, its longest wait between two chunks after that."""

    def __init__(self, victim: EngineProcess, sig: signal.Signals, after_tokens: int, midway: int, max_tokens: int):
        self.victim, self.sig, self.after_tokens = victim, sig, after_tokens
        self.midway, self.max_tokens = midway, max_tokens
        self.at: float | None = None
        self.left: asyncio.Task | None = None
        """Watches the victim replica's process from the moment of the signal."""
        self._tokens: dict[str, int] = {}
        self._last: dict[str, float] = {}
        self._gap: dict[str, float] = {}

    def hook(self, record: Record) -> None:
        now = time.monotonic()
        rid = record.request_id
        if self.at is not None and rid in self._last:
            self._gap[rid] = max(self._gap.get(rid, 0.0), now - max(self._last[rid], self.at))
        self._last[rid] = now
        self._tokens[rid] = record.tokens
        if self.at is None and sum(self._tokens.values()) >= self.after_tokens and self._midway() >= self.midway:
            os.kill(self.victim.engine_pid, self.sig)
            self.at = time.monotonic()
            self.left = asyncio.get_running_loop().create_task(gone_after((self.victim.replica_pid,), self.at, 30.0))

    def _midway(self) -> int:
        return sum(0 < tokens < self.max_tokens for tokens in self._tokens.values())

    def resume_gaps(self, records: list[Record]) -> list[float]:
        """Streams cut midway on the victim: how long each waited for its resumption."""
        resumed = {r.request_id for r in records if r.verdict is Verdict.OK_AFTER_RETRY and r.resumed_tokens}
        return sorted(gap for rid, gap in self._gap.items() if rid in resumed)


async def all_engines_dead(
    target: str,
    app: str,
    model: str,
    *,
    streams: int = 16,
    probes: int = 8,
    stream_deadline_s: float = 30.0,
    timeout_s: float = 240.0,
) -> dict:
    """SIGKILL every replica's engine of `model` while `streams` long streams run.

    Figures (seconds from the kill): `not_serving_s` until the router's grpc.health
    said NOT_SERVING for the model, `serving_s` until it said SERVING again (one
    replica back), `replaced_s` until all were back. `in_flight` tallies the
    streams (with nowhere to resume, each must end typed), `typed_p50_s` /
    `typed_max_s` say when they ended; `outage` tallies `probes` calls sent while
    the model was NOT_SERVING (UNAVAILABLE at once, retry later)."""
    victims = engine_processes(app, model)
    if not victims:
        raise RuntimeError(f"no live replica of {model!r} with an engine on this node")
    service = f"shardline.v1.Inference/{model}"
    async with grpc.aio.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        flowing = _TokensArrived(streams * 4)
        started = time.perf_counter()
        load = asyncio.create_task(
            drive(
                channel,
                Plan(greedy_batch(model, streams, 400), concurrency=streams, deadline_s=stream_deadline_s),
                on_token=flowing.hook,
            )
        )
        await asyncio.wait_for(flowing.event.wait(), timeout=60)
        for v in victims:
            os.kill(v.engine_pid, signal.SIGKILL)
        killed, began = time.perf_counter(), time.monotonic()
        not_serving_s = await _health_becomes(
            health, service, health_pb2.HealthCheckResponse.NOT_SERVING, began, timeout_s
        )
        outage = await drive(channel, Plan(greedy_batch(model, probes, 8), concurrency=4, deadline_s=10.0))
        in_flight = await load
        serving_s = await _health_becomes(health, service, health_pb2.HealthCheckResponse.SERVING, began, timeout_s)
    replaced_s = await replaced_after(app, model, {v.replica_pid for v in victims}, len(victims), began, timeout_s)
    ended = sorted(
        started + r.start_s + r.e2e_s - killed
        for r in in_flight
        if r.verdict not in (Verdict.OK, Verdict.OK_AFTER_RETRY)
    )
    return {
        "replicas": len(victims),
        "not_serving_s": not_serving_s,
        "serving_s": serving_s,
        "replaced_s": replaced_s,
        "in_flight": tally(in_flight),
        "typed_p50_s": percentile(ended, 50),
        "typed_max_s": ended[-1] if ended else None,
        "outage": tally(outage),
    }


class _TokensArrived:
    """An on_token hook that sets `event` once `tokens` tokens arrived in all."""

    def __init__(self, tokens: int):
        self.tokens, self.event, self._seen = tokens, asyncio.Event(), {}

    def hook(self, record: Record) -> None:
        self._seen[record.request_id] = record.tokens
        if sum(self._seen.values()) >= self.tokens:
            self.event.set()


async def _health_becomes(health, service: str, status: int, began: float, timeout_s: float) -> float | None:
    while time.monotonic() < began + timeout_s:
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        if reply.status == status:
            return time.monotonic() - began
        await asyncio.sleep(POLL_S)
    return None
