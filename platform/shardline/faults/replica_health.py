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
import contextlib
import os
import signal
import time
from dataclasses import dataclass

import grpc
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc
from ray import serve

from shardline.client import make_request
from shardline.outcomes import Plan, Record, Verdict, drive, percentile, tally
from shardline.serve.backend import llm_deployment_name, running_replicas
from shardline.v1 import inference_pb2 as pb
from shardline.v1 import inference_pb2_grpc as pb_grpc

ENGINE_TITLE = "VLLM::EngineCore"
POLL_S = 0.1


@dataclass(frozen=True)
class EngineProcess:
    replica_pid: int
    """The LLMServer replica (a Ray actor process)."""
    engine_pid: int
    """Its vLLM EngineCore child, which schedules (and parents the workers)."""
    worker_pids: tuple[int, ...] = ()
    """The engine's workers (vLLM's mp executor: one per TP x PP rank, even at 1)."""


def engine_processes(app: str, model: str) -> list[EngineProcess]:
    """The live replicas of `model` in `app` on this node, with their engine processes,
    found by the titles Ray (`ray::ServeReplica:<app>:<deployment>`) and vLLM give them."""
    title = f"ray::ServeReplica:{app}:{llm_deployment_name(model)}"
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if not cmdline or not cmdline[0].startswith(title) or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in proc.children():
                if (child.cmdline() or [""])[0].startswith(ENGINE_TITLE):
                    workers = tuple(w.pid for w in child.children(recursive=True))
                    found.append(EngineProcess(proc.pid, child.pid, workers))
    return sorted(found, key=lambda e: e.replica_pid)


def release(pid: int) -> None:
    """Never leave a stopped process behind: continue it, then kill it."""
    for sig in (signal.SIGCONT, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def prompts(n: int) -> list[str]:
    """Distinct short prompts, so prefix caching cannot make streams identical."""
    return [f"k{i % 89} = v{(i * 31) % 83} ; k{i % 47} = ?" for i in range(n)]


def greedy_batch(model: str, n: int, max_tokens: int) -> list[pb.GenerateRequest]:
    return [make_request(model, p, max_tokens=max_tokens, temperature=0.0, ignore_eos=True, request_id=f"h{i}")
            for i, p in enumerate(prompts(n))]


async def reference_tokens(target: str, batch: list[pb.GenerateRequest], concurrency: int = 16
                           ) -> dict[str, list[int]]:
    """A fault-free pass: each (greedy) request's tokens, the reference a faulty pass must match."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.InferenceStub(channel)
        slots = asyncio.Semaphore(concurrency)

        async def one(request: pb.GenerateRequest) -> tuple[str, list[int]]:
            async with slots:
                ids = []
                async for chunk in stub.GenerateStream(request, timeout=120):
                    ids.extend(chunk.token_ids)
                return request.request_id, ids

        return dict(await asyncio.gather(*(one(r) for r in batch)))


async def engine_death(target: str, app: str, model: str, **options) -> dict:
    """SIGKILL one replica's engine mid-load; see `_engine_fault` for options and figures."""
    return await _engine_fault(target, app, model, signal.SIGKILL, **options)


async def stuck_replica(target: str, app: str, model: str, **options) -> dict:
    """SIGSTOP one replica's engine mid-load; see `_engine_fault` for options and figures."""
    return await _engine_fault(target, app, model, signal.SIGSTOP, **options)


async def _engine_fault(target: str, app: str, model: str, sig: signal.Signals, *, requests: int = 64,
                        concurrency: int = 16, max_tokens: int = 48, replace_timeout_s: float = 180.0,
                        reference: dict[str, list[int]] | None = None) -> dict:
    """Signals the first replica's engine once a quarter of the batch's tokens arrived.

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
    fault = _Fault(victim, sig, requests * max_tokens // 4)
    try:
        async with grpc.aio.insecure_channel(target) as channel:
            records = await drive(channel, Plan(batch, concurrency=concurrency, reference=reference),
                                  on_token=fault.hook)
        left_s = await fault.left if fault.left else None
    finally:
        if sig == signal.SIGSTOP:
            release(victim.engine_pid)
    resumed = fault.resume_gaps(records)
    orphans = await _survivors(victim, timeout_s=10.0)
    replaced_s = None
    if fault.at and replace_timeout_s:
        replaced_s = await _replaced_after(app, model, {victim.replica_pid}, replicas, fault.at, replace_timeout_s)
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
    """An on_token hook: signals the victim's engine once `after_tokens` tokens arrived,
    and keeps, for each stream, its longest wait between two chunks after that."""

    def __init__(self, victim: EngineProcess, sig: signal.Signals, after_tokens: int):
        self.victim, self.sig, self.after_tokens = victim, sig, after_tokens
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
        if self.at is None and sum(self._tokens.values()) >= self.after_tokens:
            os.kill(self.victim.engine_pid, self.sig)
            self.at = time.monotonic()
            self.left = asyncio.get_running_loop().create_task(_gone_after(self.victim.replica_pid, self.at, 30.0))

    def resume_gaps(self, records: list[Record]) -> list[float]:
        """Streams cut midway on the victim: how long each waited for its resumption."""
        resumed = {r.request_id for r in records if r.verdict is Verdict.OK_AFTER_RETRY and r.resumed_tokens}
        return sorted(gap for rid, gap in self._gap.items() if rid in resumed)


async def all_engines_dead(target: str, app: str, model: str, *, streams: int = 16, probes: int = 8,
                           stream_deadline_s: float = 30.0, timeout_s: float = 240.0) -> dict:
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
        load = asyncio.create_task(drive(channel, Plan(greedy_batch(model, streams, 400), concurrency=streams,
                                                       deadline_s=stream_deadline_s), on_token=flowing.hook))
        await asyncio.wait_for(flowing.event.wait(), timeout=60)
        for v in victims:
            os.kill(v.engine_pid, signal.SIGKILL)
        killed, began = time.perf_counter(), time.monotonic()
        not_serving_s = await _health_becomes(health, service, health_pb2.HealthCheckResponse.NOT_SERVING,
                                              began, timeout_s)
        outage = await drive(channel, Plan(greedy_batch(model, probes, 8), concurrency=4, deadline_s=10.0))
        in_flight = await load
        serving_s = await _health_becomes(health, service, health_pb2.HealthCheckResponse.SERVING, began, timeout_s)
    replaced_s = await _replaced_after(app, model, {v.replica_pid for v in victims}, len(victims), began, timeout_s)
    ended = sorted(started + r.start_s + r.e2e_s - killed for r in in_flight
                   if r.verdict not in (Verdict.OK, Verdict.OK_AFTER_RETRY))
    return {"replicas": len(victims), "not_serving_s": not_serving_s, "serving_s": serving_s,
            "replaced_s": replaced_s, "in_flight": tally(in_flight), "typed_p50_s": percentile(ended, 50),
            "typed_max_s": ended[-1] if ended else None, "outage": tally(outage)}


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


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def _survivors(victim: EngineProcess, timeout_s: float) -> list[int]:
    """The victim's processes still alive after `timeout_s` (should be none)."""
    pids = (victim.replica_pid, victim.engine_pid, *victim.worker_pids)
    deadline = time.monotonic() + timeout_s
    while (alive := [p for p in pids if _alive(p)]) and time.monotonic() < deadline:
        await asyncio.sleep(POLL_S * 5)
    return alive


async def _gone_after(pid: int, since: float, timeout_s: float) -> float | None:
    while time.monotonic() < since + timeout_s:
        if not _alive(pid):
            return time.monotonic() - since
        await asyncio.sleep(POLL_S / 2)
    return None


async def _replaced_after(app: str, model: str, victims: set[int], replicas: int, since: float,
                          timeout_s: float) -> float | None:
    """Seconds from `since` until `model` had `replicas` RUNNING replicas with live
    engines again, none of them a victim (replica pids)."""
    while time.monotonic() < since + timeout_s:
        status = await asyncio.to_thread(serve.status)
        deployment = status.applications[app].deployments[llm_deployment_name(model)]
        live = engine_processes(app, model)
        if (running_replicas(deployment) >= replicas and len(live) >= replicas
                and not victims & {e.replica_pid for e in live}):
            return time.monotonic() - since
        await asyncio.sleep(POLL_S * 5)
    return None
