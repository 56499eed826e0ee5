"""Scenario: SIGKILL one of a model's replicas while streams run through the router.

A fault-free pass first gives each (greedy) request its reference tokens and the
baseline latency; the second pass kills one replica once a quarter of the
expected tokens have arrived. Requests without a token yet are retried on the
survivor; streams cut midway are resumed there (OK_AFTER_RETRY), or end ABORTED
with the tokens they had. Then it waits for Serve to bring the replica back.
"""

from __future__ import annotations

import asyncio
import time

import grpc
from ray import serve

from shardline.client import make_request
from shardline.faults.processes import alive, descendants, kill, replica_pids
from shardline.outcomes import Plan, Record, drive, tally
from shardline.serve.backend import llm_deployment_name, running_replicas

POLL_S = 0.5


def prompts(n: int) -> list[str]:
    """Distinct short prompts, so prefix caching cannot make streams identical."""
    return [f"k{i % 97} = v{(i * 37) % 89} ; k{i % 53} = ?" for i in range(n)]


async def replica_kill(target: str, app: str, model: str, *, requests: int = 200, concurrency: int = 16,
                       max_tokens: int = 64, replace_timeout_s: float = 180.0) -> dict:
    """Runs both passes against `target` (the router of `app`); returns their tallies,
    the p99 TTFT ratio (fault / baseline) and seconds until the replica was replaced."""
    batch = [make_request(model, p, max_tokens=max_tokens, temperature=0.0, ignore_eos=True, request_id=f"r{i}")
             for i, p in enumerate(prompts(requests))]
    async with grpc.aio.insecure_channel(target) as channel:
        baseline = await drive(channel, Plan(batch, concurrency=concurrency))
        reference = {r.request_id: r.token_ids for r in baseline if r.code == "OK"}
        victims = replica_pids(app, model)
        if len(victims) < 2:
            raise RuntimeError(f"need 2 live replicas of {model!r} on this node; found pids {victims}")
        killed_at: list[float] = []
        children: list[int] = []
        streams: dict[str, Record] = {}

        def kill_a_quarter_in(record: Record) -> None:
            streams[record.request_id] = record
            if not killed_at and sum(r.tokens for r in streams.values()) >= requests * max_tokens // 4:
                children.extend(descendants(victims[0]))
                kill(victims[0])
                killed_at.append(time.monotonic())

        faulted = await drive(channel, Plan(batch, concurrency=concurrency, reference=reference),
                              on_token=kill_a_quarter_in)
    orphans_gone_s = await _gone_after(children, killed_at[0], replace_timeout_s) if killed_at else None
    replaced_s = await _replaced_after(app, model, victims[0], killed_at[0], replace_timeout_s) if killed_at else None
    base, fault = tally(baseline), tally(faulted)
    return {
        "baseline": base,
        "fault": fault,
        "killed_pid": victims[0],
        "ttft_p99_ratio": _ratio(fault["ttft_p99_s"], base["ttft_p99_s"]),
        "replaced_s": replaced_s,
        "engine_processes": len(children),
        "engine_processes_gone_s": orphans_gone_s,
    }


async def _replaced_after(app: str, model: str, victim: int, killed_at: float, timeout_s: float) -> float | None:
    """Seconds from the kill until the model has as many RUNNING replicas as before,
    none of them the victim."""
    deadline = killed_at + timeout_s
    while time.monotonic() < deadline:
        status = await asyncio.to_thread(serve.status)
        deployment = status.applications[app].deployments[llm_deployment_name(model)]
        pids = replica_pids(app, model)
        if running_replicas(deployment) >= 2 and victim not in pids and len(pids) >= 2:
            return time.monotonic() - killed_at
        await asyncio.sleep(POLL_S)
    return None


async def _gone_after(pids: list[int], since: float, timeout_s: float) -> float | None:
    """Seconds from the kill until the victim's engine processes exited (no orphans)."""
    while time.monotonic() < since + timeout_s:
        if not any(alive(pid) for pid in pids):
            return time.monotonic() - since
        await asyncio.sleep(POLL_S / 5)
    return None


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b
