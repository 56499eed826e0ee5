"""Scenario: re-deploy a changed spec while streams run (a rolling update).

A re-deploy through `lifecycle.deploy` replaces the replicas of every deployment
whose spec changed (serve/app.py `versioned`); a changed model replaces its engine
replicas and the router's (the router's spec holds every model's). Two groups of
clients send greedy streams back to back through the same update: one channel with
the client's UNAVAILABLE retry policy, one without, so the update is scored both
ways at once. A fault-free pass first gives each prompt
its reference tokens (a stream resumed on a new replica must match them).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import grpc

from shardline.client import RetryPolicy, channel_options, make_request
from shardline.outcomes import Plan, Record, drive, tally
from shardline.v1 import inference_pb2_grpc as pb_grpc

FAILED_PAUSE_S = 0.1
CONNECT_FAILED = "failed to connect to all addresses"
"""gRPC's own message when a channel has no connection: the call never left the client."""
PROMPTS = [f"k{i} = v{(i * 7) % 13} ; k{(i * 5) % 11} = ?" for i in range(8)]


async def rolling_update(
    target: str,
    model: str,
    update: Callable[[], object],
    *,
    concurrency: int = 4,
    max_tokens: int = 48,
    settle_s: float = 2.0,
) -> dict:
    """Run `update()` (blocking, e.g. `lifecycle.deploy(v2, ...)`) in a thread while
    `concurrency` clients per group stream; stop `settle_s` after it returns (or
    raises). Returns each group's tally, the update's duration and its error, if any."""
    reference = await _reference(target, model, max_tokens)
    done = asyncio.Event()
    began = time.monotonic()
    groups = {"client_retry": RetryPolicy(), "no_client_retry": None}
    loads = {
        name: asyncio.create_task(_load(target, model, policy, concurrency, max_tokens, reference, done, name))
        for name, policy in groups.items()
    }
    error = ""
    try:
        await asyncio.to_thread(update)
    except Exception as exc:  # a failing update is a scenario too: what did the clients see?
        error = f"{type(exc).__name__}: {exc}"
    update_s = time.monotonic() - began
    await asyncio.sleep(settle_s)
    done.set()
    result: dict = {"update_s": update_s, "update_error": error}
    for name, load in loads.items():
        records = await load
        result[name] = tally(records)
        # The router replica being replaced closes its listener: a connection the kernel
        # had queued on it is reset, and a channel without retries fails its calls fast
        # until it reconnects (to the new router). Nothing reached a router: not the
        # "no ready replica" refusal, which the router must never give here.
        result[name]["connection_failures"] = sum(
            r.code == "UNAVAILABLE" and CONNECT_FAILED in r.message for r in records
        )
        result[name]["failed"] = [
            f"{r.request_id} {r.code} at {r.start_s:.1f} s: {r.message[:120]}" for r in records if r.code != "OK"
        ][:10]
    return result


async def _reference(target: str, model: str, max_tokens: int) -> list[list[int]]:
    """Each prompt's greedy tokens before the update."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.InferenceStub(channel)

        async def tokens(request) -> list[int]:
            return [t async for chunk in stub.GenerateStream(request) for t in chunk.token_ids]

        return list(await asyncio.gather(*(tokens(r) for r in _requests(model, max_tokens, "ref"))))


def _requests(model: str, max_tokens: int, prefix: str):
    return [
        make_request(model, p, max_tokens=max_tokens, temperature=0.0, ignore_eos=True, request_id=f"{prefix}{i}")
        for i, p in enumerate(PROMPTS)
    ]


async def _load(
    target: str,
    model: str,
    retry: RetryPolicy | None,
    concurrency: int,
    max_tokens: int,
    reference: list[list[int]],
    done: asyncio.Event,
    name: str,
) -> list[Record]:
    """Closed-loop clients on one channel; `start_s`: seconds after the load began."""
    records: list[Record] = []
    began = time.monotonic()
    async with grpc.aio.insecure_channel(target, options=channel_options(retry)) as channel:

        async def client(c: int) -> None:
            n = 0
            while not done.is_set():
                i = (c + n * concurrency) % len(PROMPTS)
                rid = f"{name}-{c}-{n}"
                request = make_request(
                    model, PROMPTS[i], max_tokens=max_tokens, temperature=0.0, ignore_eos=True, request_id=rid
                )
                (record,) = await drive(channel, Plan([request], lost_after_s=120.0, reference={rid: reference[i]}))
                record.start_s = time.monotonic() - began
                records.append(record)
                n += 1
                if record.code != "OK":
                    await asyncio.sleep(FAILED_PAUSE_S)  # a client that got an error does not spin

        await asyncio.gather(*(client(c) for c in range(concurrency)))
    return records
