"""Prefix affinity on the real stack: two kv-small replicas on vLLM, `routing.policy:
prefix_affinity`. Where requests went is read from the replicas themselves (each
engine's prefix-cache counters and started requests, serve/replica_stats.py), never
from the router's own prediction.

- Multi-turn conversations, each re-sending a long system prompt and its history:
  every turn of a conversation lands on one replica, whose prefix cache serves the
  earlier turns' blocks.
- One hot prefix under a burst: the load guard spreads it over both replicas.

Health probes every 600 s, so no probe runs on either engine while a test counts.
"""

import asyncio
import random

import grpc
import pytest
import yaml

from live import ROOT, deployed
from shardline.client import make_request
from shardline.router.scorers import tokenizer
from shardline.serve.replica_stats import replica_stats
from shardline.v1 import inference_pb2_grpc as pb_grpc
from waiting import eventually

pytestmark = pytest.mark.integration

APP = "shardline-routing"
MODEL = "kv-small"
BLOCK = 128  # vLLM's CPU block size: the engine's and the router's
SYSTEM_WORDS = 450  # > 3 whole blocks
TURNS = 3


@pytest.fixture(scope="module")
def two_replicas(ray_cluster):
    data = yaml.safe_load((ROOT / "deployments" / "kv-tiers.yaml").read_text())
    small = next(m for m in data["models"] if m["name"] == MODEL)
    small.pop("compression")
    small.update(
        replicas={"min": 2, "max": 2},
        health={"period_s": 600, "probe_timeout_s": 10, "timeout_s": 60},
        routing={"policy": "prefix_affinity"},
    )
    with deployed({"name": APP, "models": [small]}) as app:
        yield app


def words(rng: random.Random, n: int) -> str:
    """`n` words of kv-small's vocabulary (so no two prompts collapse into <unk>s)."""
    vocab = sorted(
        w for w in tokenizer(str(ROOT / "models/trained/kv-small/tokenizer.json")).get_vocab() if w.isalnum()
    )
    return " ".join(rng.choice(vocab) for _ in range(n))


def snapshot() -> dict[str, dict[str, int]]:
    return replica_stats(APP, MODEL)


def delta(before, after, field):
    return {r: after[r][field] - before.get(r, {}).get(field, 0) for r in after}


async def generate(target, prompts, max_tokens):
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.InferenceStub(channel)
        calls = [stub.Generate(make_request(MODEL, p, max_tokens=max_tokens, ignore_eos=True)) for p in prompts]
        return await asyncio.gather(*calls)


def test_every_turn_of_a_conversation_lands_on_the_replica_that_cached_it(two_replicas):
    rng = random.Random(16)
    for conversation in range(3):
        system = words(rng, SYSTEM_WORDS)
        before, history = snapshot(), system
        for _ in range(TURNS):
            history += " " + words(rng, 30)
            (reply,) = asyncio.run(generate(two_replicas.target, [history], 8))
            history += reply.text
        after = eventually(lambda b=before: _settled(b, TURNS), message="every turn counted by an engine")
        started, hits = delta(before, after, "started_requests"), delta(before, after, "prefix_cache_hits")
        print(f"conversation {conversation}: started {started}, prefix-cache hits {hits}")
        served = [r for r, n in started.items() if n]
        assert len(served) == 1 and started[served[0]] == TURNS, started
        # Turns 2 and 3 each found at least the system prompt's whole blocks cached.
        assert hits[served[0]] >= (TURNS - 1) * (SYSTEM_WORDS // BLOCK) * BLOCK, hits


def test_a_hot_prefix_under_a_burst_is_spread_by_the_load_guard(two_replicas):
    rng, burst = random.Random(61), 24
    hot = words(rng, SYSTEM_WORDS)
    before = snapshot()
    asyncio.run(generate(two_replicas.target, [f"{hot} {words(rng, 10)}" for _ in range(burst)], 64))
    after = eventually(lambda: _settled(before, burst), message="every request counted by an engine")
    started = delta(before, after, "started_requests")
    print(f"hot prefix burst of {burst}: started {started}")
    assert sorted(started.values())[0] >= burst // 4, started  # neither replica took it all
    assert max(started.values()) <= 2 * burst / len(started)


def _settled(before, requests):
    after = snapshot()
    return after if sum(delta(before, after, "started_requests").values()) >= requests else None
