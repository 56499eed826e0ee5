"""The shared tenant ledger on a real local Ray cluster, without an engine: the
detached ledger actor (serve/ledger.py), its GCS checkpoint, and router-side
clients in separate worker processes.

- Two clients spending one budget at once never pass it (0 violations, counted).
- The actor killed mid-window (Ray restarts it) comes back with every acknowledged
  charge from its checkpoint, and spend is never under-counted across the crash.
- A "router restart" (a new client) finds the spend where it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import uuid

import pytest
import ray
from ray import serve
from ray.serve._private.constants import SERVE_NAMESPACE

from builders import make_spec
from shardline.errors import ResourceExhausted, Unavailable
from shardline.serve import lifecycle
from shardline.serve.ledger import KV_NAMESPACE, SharedLedgers, actor_name, checkpoint_key
from waiting import eventually_async

pytestmark = pytest.mark.integration

NAMESPACE = "shardline-ledger-it"
BUDGET = 5.0
LEASE_S = 600.0
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # `spend` runs in Ray workers


def ledger_spec(app: str):
    return make_spec(name=app, policies={"tenants": [{"name": "acme", "budget": BUDGET, "window_s": 3600}]})


async def spend_until_refused(spec, concurrency: int, cost: float) -> dict:
    """One router's worth of requests: reserve `cost`, settle it in full, until the
    ledger refuses every one. Returns what this client was told it spent."""
    ledgers = await SharedLedgers.connect(spec, NAMESPACE)
    counts = {"charged": 0.0, "settled": 0, "refused": 0, "unavailable": 0}

    async def worker():
        while True:
            try:
                reservation = await ledgers.reserve("acme", cost, LEASE_S)
            except ResourceExhausted:
                counts["refused"] += 1
                return
            except Unavailable:  # the ledger is restarting
                counts["unavailable"] += 1
                await asyncio.sleep(0.05)
                continue
            settled = await ledgers.settle("acme", reservation, cost)
            counts["charged"] += settled.charged
            counts["settled"] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return counts


@ray.remote(num_cpus=0)
def spend(spec, concurrency: int, cost: float) -> dict:
    return asyncio.run(spend_until_refused(spec, concurrency, cost))


@pytest.fixture
def app(ray_cluster):
    name = f"ledger-it-{uuid.uuid4().hex[:8]}"
    yield name
    for namespace in (NAMESPACE, SERVE_NAMESPACE):
        with contextlib.suppress(ValueError):  # no actor: the test failed before it made one
            ray.kill(ray.get_actor(actor_name(name), namespace=namespace), no_restart=True)
    ray.experimental.internal_kv._internal_kv_del(checkpoint_key(name), namespace=KV_NAMESPACE)


async def spent(ledgers: SharedLedgers) -> float:
    return (await ledgers.actor.state.remote())["tenants"]["acme"]["spent"]


async def test_two_routers_spending_one_budget_concurrently_never_pass_it(app):
    spec = ledger_spec(app)
    cost = 0.07  # 71 fit in 5.0; the last one's 0.03 does not
    counts = ray.get([spend.remote(spec, 8, cost) for _ in range(2)])
    ledgers = await SharedLedgers.connect(spec, NAMESPACE)
    total = sum(c["charged"] for c in counts)
    settled = sum(c["settled"] for c in counts)
    print(f"\nshared ledger: {settled} settled across 2 clients, refused {[c['refused'] for c in counts]}")
    assert settled == int(BUDGET / cost)  # every credit that fits was spent, no more: 0 violations
    assert all(c["settled"] > 0 for c in counts)  # both clients really spent from it
    assert await spent(ledgers) == pytest.approx(total) and total <= BUDGET
    assert (await ledgers.standing("acme")).remaining < cost


async def test_a_killed_ledger_restarts_with_its_spend_and_never_under_counts(app):
    spec = ledger_spec(app)
    ledgers = await SharedLedgers.connect(spec, NAMESPACE)
    held = await ledgers.reserve("acme", 1.0, LEASE_S)  # open across the crash
    pid = await pid_of(ledgers)
    first = spend.remote(spec, 4, 0.02)
    await eventually_async(lambda: _spent_at_least(ledgers, 0.5), message="the client's spend reaches 0.5")
    ray.kill(ledgers.actor, no_restart=False)  # mid-window, mid-spend: Ray restarts it
    counts = await asyncio.wrap_future(first.future())
    assert await pid_of(ledgers) != pid  # a new process: its state came from the checkpoint
    ledger_spent = await spent(ledgers)
    print(f"\nkilled mid-spend: client charged {counts['charged']:.2f}, ledger spent {ledger_spent:.2f}, {counts}")
    assert ledger_spent >= counts["charged"] - 1e-9  # every acknowledged charge survived the crash
    assert ledger_spent + 1.0 <= BUDGET + 1e-9  # the open reservation still counted
    assert (await ledgers.settle("acme", held, 0.5)).charged == pytest.approx(0.5)


async def test_a_new_router_finds_the_spend_where_it_was(app):
    spec = ledger_spec(app)
    before = await SharedLedgers.connect(spec, NAMESPACE)
    await before.settle("acme", await before.reserve("acme", 1.25, LEASE_S), 1.25)
    after = await SharedLedgers.connect(spec, NAMESPACE)  # a restarted router: a new client, the same actor
    assert (await after.standing("acme")).remaining == pytest.approx(BUDGET - 1.25)


async def test_down_stops_the_ledger_and_a_redeploy_finds_the_spend(app):
    spec = ledger_spec(app)
    before = await SharedLedgers.connect(spec)  # in Serve's namespace, as a router does
    await before.settle("acme", await before.reserve("acme", 1.25, LEASE_S), 1.25)
    serve.start(proxy_location="Disabled")
    lifecycle.undeploy(app)  # no Serve app by that name: the ledger is all there is to stop
    with pytest.raises(ValueError):  # no actor by that name any more: no process left behind
        ray.get_actor(actor_name(app), namespace=SERVE_NAMESPACE)
    after = await SharedLedgers.connect(spec)  # the next deploy's first router
    assert (await after.standing("acme")).remaining == pytest.approx(BUDGET - 1.25)


async def pid_of(ledgers: SharedLedgers) -> int:
    return await ledgers.actor.__ray_call__.remote(lambda _: os.getpid())


async def _spent_at_least(ledgers: SharedLedgers, amount: float):
    return await spent(ledgers) >= amount
