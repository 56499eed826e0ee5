"""Scenario: SIGKILL one of a model's replicas while streams run through the router.

A fault-free pass first gives each (greedy) request its reference tokens and the
baseline latency; the second pass kills one replica process once a quarter of
the expected tokens have arrived. Requests without a token yet are retried on
the survivor; streams cut midway are resumed there (OK_AFTER_RETRY), or end
ABORTED with the tokens they had. Then it waits for Serve to bring the replica back.
"""

from __future__ import annotations

import time

import grpc

from shardline.faults.processes import engine_processes, gone_after, kill, replaced_after
from shardline.faults.workload import greedy_batch
from shardline.outcomes import Plan, Record, drive, tally


async def replica_kill(
    target: str,
    app: str,
    model: str,
    *,
    requests: int = 200,
    concurrency: int = 16,
    max_tokens: int = 64,
    replace_timeout_s: float = 180.0,
) -> dict:
    """Runs both passes against `target` (the router of `app`); returns their tallies,
    the p99 TTFT ratio (fault / baseline), seconds until the victim's engine processes
    were gone, and seconds until the replica was replaced."""
    batch = greedy_batch(model, requests, max_tokens)
    async with grpc.aio.insecure_channel(target) as channel:
        baseline = await drive(channel, Plan(batch, concurrency=concurrency))
        reference = {r.request_id: r.token_ids for r in baseline if r.code == "OK"}
        replicas = engine_processes(app, model)
        if len(replicas) < 2:
            raise RuntimeError(f"need 2 live replicas of {model!r} on this node; found {replicas}")
        victim = replicas[0]
        killed_at: list[float] = []
        streams: dict[str, Record] = {}

        def kill_a_quarter_in(record: Record) -> None:
            streams[record.request_id] = record
            if not killed_at and sum(r.tokens for r in streams.values()) >= requests * max_tokens // 4:
                kill(victim.replica_pid)
                killed_at.append(time.monotonic())

        faulted = await drive(
            channel, Plan(batch, concurrency=concurrency, reference=reference), on_token=kill_a_quarter_in
        )
    gone_s = replaced_s = None
    if killed_at:
        gone_s = await gone_after(victim.pids, killed_at[0], replace_timeout_s)
        replaced_s = await replaced_after(
            app, model, {victim.replica_pid}, len(replicas), killed_at[0], replace_timeout_s
        )
    base, fault = tally(baseline), tally(faulted)
    return {
        "baseline": base,
        "fault": fault,
        "killed_pid": victim.replica_pid,
        "ttft_p99_ratio": _ratio(fault["ttft_p99_s"], base["ttft_p99_s"]),
        "replaced_s": replaced_s,
        "engine_processes": len(victim.pids) - 1,
        "engine_processes_gone_s": gone_s,
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b
