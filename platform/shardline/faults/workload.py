"""The requests fault drills send: greedy and long enough to be cut midway, so a
fault-free pass gives each one reference tokens that a faulty pass must match."""

from __future__ import annotations

import grpc

from shardline.client import make_request
from shardline.outcomes import Plan, drive
from shardline.v1 import inference_pb2 as pb


def prompts(n: int) -> list[str]:
    """Distinct short prompts, so prefix caching cannot make streams identical."""
    return [f"k{i % 97} = v{(i * 37) % 89} ; k{i % 53} = ?" for i in range(n)]


def greedy_batch(model: str, n: int, max_tokens: int) -> list[pb.GenerateRequest]:
    return [
        make_request(model, p, max_tokens=max_tokens, temperature=0.0, ignore_eos=True, request_id=f"r{i}")
        for i, p in enumerate(prompts(n))
    ]


async def reference_tokens(target: str, batch: list[pb.GenerateRequest], concurrency: int = 16) -> dict[str, list[int]]:
    """A fault-free pass: each request's tokens, the reference a faulty pass must match."""
    async with grpc.aio.insecure_channel(target) as channel:
        records = await drive(channel, Plan(batch, concurrency=concurrency))
    return {r.request_id: r.token_ids for r in records if r.code == "OK"}
