"""One tenant budget under two router replicas and a rolling update of the router,
on the real stack: Ray Serve, the gRPC router deployment (2 replicas sharing one
port), the shared ledger actor (serve/ledger.py) and vLLM serving kv-small.

The tenant is the one its bearer token belongs to (`router.auth`). Every request
opens a new connection, so the kernel spreads them over both router replicas
(SO_REUSEPORT) and, during the update, over old and new ones. Three phases:

1. before: spend part of the budget; both routers charged it, and the ledger's
   spend is what the clients were told and what the routers' metrics say.
2. update: an operator raises `router.limits.max_concurrent_requests`; Serve
   replaces both router replicas (new replica ids, old processes gone) while
   requests keep flowing, and keeps the engine replica: its version (serve/app.py)
   did not change, so the update restarts no engine.
3. after: spend with long prompts until the planner refuses (RESOURCE_EXHAUSTED).

Then the ledger's spend equals the sum of every charge the clients were told
(nothing lost, nothing counted twice), it never passed the budget (0 violations),
and the budget was reached to within the cheapest long request. Every request ends in
exactly one verdict; none is lost, none corrupt.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import socket
import time
import urllib.request
from collections.abc import Callable

import grpc
import pytest
import ray
from prometheus_client.parser import text_string_to_metric_families
from ray import serve
from ray.serve._private.constants import SERVE_NAMESPACE

from live import DEPLOY_TIMEOUT_S, ROOT
from shardline import wire
from shardline.client import RetryPolicy, channel_options, make_request
from shardline.faults.processes import alive, engine_processes
from shardline.outcomes import Plan, Record, Verdict, drive
from shardline.policies.decoding.costs import Tier
from shardline.router.pipeline import SPECIAL_TOKENS
from shardline.router.scorers import counter_for
from shardline.serve import lifecycle
from shardline.serve.app import ROUTER_DEPLOYMENT
from shardline.serve.ledger import KV_NAMESPACE, actor_name, checkpoint_key
from shardline.spec import validate_spec
from waiting import eventually, eventually_async

pytestmark = pytest.mark.integration

APP = "shardline-ledger-rollout"
MODEL = "kv-small"
TENANT, TOKEN = "acme", "acme-" + "t" * 32
PRICES = {"input_per_1k": 1.0, "output_per_1k": 1.0}
BUDGET = 200.0
SHORT = "k3 = v8 ; k5 = v2 ; k3 = ?"
"""16 prompt tokens: with MAX_TOKENS, 0.026 credits. Before and during the update."""
LONG = " ; ".join(f"k{i % 97} = v{(i * 7) % 89}" for i in range(200)) + " ; k3 = ?"
"""About 1550 prompt tokens (1.5 credits, a quick prefill on kv-small): after the
update, so the rest of the budget goes in about a hundred requests."""
MAX_TOKENS = 8
CLIENTS = 3
BEFORE = 24
"""Requests in phase 1."""
SETTLE_S = 2.0
"""Requests keep flowing this long after the update returns."""
PAUSE_S = 0.1
"""A client that got an error waits this long before its next request."""
# gRPC shares one connection among channels with equal arguments (its global
# subchannel pool); a local pool gives each request's channel its own connection.
CHANNEL = [*channel_options(RetryPolicy()), ("grpc.use_local_subchannel_pool", 1)]


def free_port() -> int:
    """A fixed port: the new routers of a rolling update must bind the one clients use."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_spec(tokens_file: str, port: int) -> dict:
    return {
        "name": APP,
        "models": [
            {
                "name": MODEL,
                "path": str(ROOT / "models" / "trained" / MODEL),
                "dtype": "float32",
                "max_model_len": 2048,
                "resources": {"cpu": 0.5},
                "engine_args": {"enforce_eager": True, "gpu_memory_utilization": 0.3},
                "cost": PRICES,
            }
        ],
        "router": {"port": port, "replicas": 2, "cpu": 0.5, "auth": {"tokens_file": tokens_file}},
        "rollout": {"drain_timeout_s": 10.0, "surge_percent": 100},
        "policies": {"tenants": [{"name": TENANT, "budget": BUDGET, "window_s": 3600}]},
    }


@pytest.fixture(scope="module")
def app(ray_cluster, tmp_path_factory):
    tokens = tmp_path_factory.mktemp("ledger-rollout") / "tokens.env"
    tokens.write_text(f"{TENANT}={TOKEN}\n")
    data = app_spec(str(tokens), free_port())
    try:
        endpoint = lifecycle.deploy(validate_spec(data), DEPLOY_TIMEOUT_S)
        yield data, f"127.0.0.1:{endpoint.port}"
    finally:
        if APP in serve.status().applications:
            lifecycle.undeploy(APP)
        ray.experimental.internal_kv._internal_kv_del(checkpoint_key(APP), namespace=KV_NAMESPACE)


def raised_limit(data: dict) -> dict:
    """What an operator changes: the routers' concurrency cap (a router-only field)."""
    data = copy.deepcopy(data)
    data["router"]["limits"] = {"max_concurrent_requests": 300}
    return data


async def spend(target: str, phase: str, prompt: str, until: Callable[[Record], bool]) -> list[Record]:
    """CLIENTS closed-loop clients, each request on a new connection, until a client's
    last record satisfies `until`."""
    records: list[Record] = []

    async def client(c: int) -> None:
        for n in itertools.count():
            request = make_request(
                MODEL, prompt, max_tokens=MAX_TOKENS, temperature=0.0, ignore_eos=True, request_id=f"{phase}-{c}-{n}"
            )
            async with grpc.aio.insecure_channel(target, options=CHANNEL) as channel:
                (record,) = await drive(channel, Plan([request], metadata=(wire.bearer(TOKEN),)))
            records.append(record)
            if until(record):
                return
            if record.code != "OK":
                await asyncio.sleep(PAUSE_S)  # a client that got an error does not spin

    await asyncio.gather(*(client(c) for c in range(CLIENTS)))
    return records


def refused_by_budget(record: Record) -> bool:
    """The planner's refusal: not even one output token fits what is left. (A reserve
    that lost a race to another request's says "this request may cost": retried.)"""
    return record.code == "RESOURCE_EXHAUSTED" and "the cheapest plan" in record.message


def charged(records: list[Record]) -> float:
    return sum(r.charged for r in records)


def assert_one_verdict_each(records: list[Record], codes: set[str]) -> None:
    """Each request ended once, as OK or an expected refusal: none lost, corrupt or
    failed midway; an OK one was charged, a refused one never was."""
    bad = [f"{r.request_id} {r.code}: {r.message[:120]} {r.problem}" for r in records if r.code not in codes]
    assert not bad, bad[:10]
    assert all(r.verdict in (Verdict.OK, Verdict.REJECTED_RETRYABLE) for r in records)
    assert all((r.charged > 0) == (r.code == "OK") for r in records)


async def ledger_book() -> dict:
    """The tenant's entry in the ledger actor's book (spent, open reservations, ...)."""
    actor = ray.get_actor(actor_name(APP), namespace=SERVE_NAMESPACE)
    return (await actor.state.remote())["tenants"][TENANT]


async def routers(count: int, exclude: frozenset[str] = frozenset()) -> dict[str, dict]:
    """`count` router replicas (none of `exclude`) by replica id, with their endpoints:
    a handle call reaches one replica of Serve's choosing, so ask until each answered."""
    handle = serve.get_deployment_handle(ROUTER_DEPLOYMENT, app_name=APP)
    seen: dict[str, dict] = {}

    async def answered() -> bool:
        info = await handle.endpoint.remote()
        if info["replica_id"] not in exclude:
            seen[info["replica_id"]] = info
        return len(seen) >= count

    await eventually_async(answered, timeout_s=60, message=f"{count} router replicas answer")
    return seen


def charged_by(router: dict) -> float:
    """What this router replica says it charged the tenant (its `shardline_cost` metric)."""
    text = urllib.request.urlopen(f"http://{router['host']}:{router['metrics_port']}/metrics", timeout=10).read()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
        if sample.name == "shardline_cost_total" and sample.labels.get("tenant") == TENANT
    )


async def test_one_budget_holds_across_two_routers_and_their_rolling_update(app):
    data, target = app
    began = time.monotonic()

    # 1. before: both routers spend the one budget.
    counter = itertools.count(1)
    before = await spend(target, "before", SHORT, lambda _: next(counter) >= BEFORE)
    assert_one_verdict_each(before, {"OK"})
    old = await routers(2)
    book = await ledger_book()
    by_router = [charged_by(r) for r in old.values()]
    assert all(by_router), by_router  # both router replicas charged the tenant
    assert book["spent"] == pytest.approx(charged(before)) == pytest.approx(sum(by_router))

    # 2. update: Serve replaces both routers while requests flow; the engine stays.
    engines = engine_processes(APP, MODEL)
    assert len(engines) == 1, engines
    done = asyncio.Event()
    during = asyncio.create_task(spend(target, "during", SHORT, lambda _: done.is_set()))
    update_began = time.monotonic()
    await asyncio.to_thread(lifecycle.deploy, validate_spec(raised_limit(data)), DEPLOY_TIMEOUT_S)
    update_s = time.monotonic() - update_began
    await asyncio.sleep(SETTLE_S)
    done.set()
    during = await during
    new = await routers(2, exclude=frozenset(old))
    assert {r["pid"] for r in new.values()}.isdisjoint(r["pid"] for r in old.values())
    eventually(lambda: not any(alive(r["pid"]) for r in old.values()), message="the old router processes exit")
    assert_one_verdict_each(during, {"OK", "UNAVAILABLE"})
    assert engine_processes(APP, MODEL) == engines  # the same engine processes: none restarted
    mid = (await ledger_book())["spent"]
    assert mid < BUDGET / 2, f"{mid:.1f} of {BUDGET} spent by the end of the update: not mid-window"

    # 3. after: spend on the new routers until the planner refuses.
    after = await spend(target, "after", LONG, refused_by_budget)
    assert_one_verdict_each(after, {"OK", "RESOURCE_EXHAUSTED"})
    assert all(charged_by(r) > 0 for r in new.values())  # both new routers charged it too

    book = await ledger_book()
    records = before + during + after
    told = charged(records)
    spec = validate_spec(data)
    prompt_tokens = counter_for(spec.model(MODEL))(LONG)  # as the router counts it
    cheapest = Tier(MODEL, *PRICES.values()).cost(prompt_tokens + SPECIAL_TOKENS, 1)
    print(
        f"\nledger under a router rolling update: {len(records)} requests "
        f"(before {len(before)}, during {len(during)}, after {len(after)}), update {update_s:.1f} s, "
        f"total {time.monotonic() - began:.1f} s; ledger spent {book['spent']:.4f}, clients told {told:.4f}, "
        f"budget {BUDGET} ({mid:.2f} spent after the update), cheapest long request {cheapest:.4f}; "
        f"not OK during the update: {[f'{r.code}: {r.message[:100]}' for r in during if r.code != 'OK'][:5]}"
    )
    assert not book["open"] and not book["lapsed"]  # every reservation settled, none by its lease
    assert book["spent"] == pytest.approx(told, abs=1e-9)  # nothing lost, nothing counted twice
    assert told <= BUDGET + 1e-9  # 0 violations
    assert BUDGET - book["spent"] < cheapest  # the budget was reached: not one more token of LONG fits
