"""The shared ledger's logic without Ray: the `Book` every router spends from, and
`LedgerActor` with an in-memory checkpoint standing in for the GCS key-value store."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from shardline.errors import InvalidArgument, ResourceExhausted
from shardline.router.ledger import Book, Terms
from shardline.serve.ledger import LedgerActor


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class MemoryCheckpoint:
    """The GCS key: what was written last, and how many writes."""

    def __init__(self):
        self.value: bytes | None = None
        self.writes = 0

    def load(self) -> bytes | None:
        return self.value

    async def save(self, value: bytes) -> None:
        self.value, self.writes = value, self.writes + 1

    def spent(self, tenant: str) -> float:
        return json.loads(self.value)["tenants"][tenant]["spent"]


TERMS = Terms({"acme": (1.0, 60.0), "trial": (0.5, 60.0)}, rate=2.0, burst=2)


def test_two_routers_spending_one_book_never_pass_the_budget():
    book, rng = Book(TERMS, Clock()), random.Random(7)
    open_by_router: list[list[int]] = [[], []]
    rejected = 0
    for _ in range(2000):
        router = rng.randrange(2)
        if open_by_router[router] and rng.random() < 0.5:
            reservation = open_by_router[router].pop(rng.randrange(len(open_by_router[router])))
            book.settle("acme", reservation, rng.uniform(0, 0.2))
        else:
            try:
                open_by_router[router].append(book.reserve("acme", rng.uniform(0.01, 0.2), lease_s=30.0))
            except ResourceExhausted:
                rejected += 1
        state = book.state()["tenants"]["acme"]
        held = sum(amount for _, amount, _ in state["open"])
        assert state["spent"] + held <= 1.0 + 1e-9
    assert rejected > 0  # the budget was actually reached


async def test_every_reserve_and_settle_is_checkpointed_before_it_returns():
    checkpoint = MemoryCheckpoint()
    actor = LedgerActor("app", TERMS, checkpoint, Clock())
    reservation = await actor.reserve("acme", 0.4, lease_s=30.0)
    assert json.loads(checkpoint.value)["tenants"]["acme"]["open"] == [[reservation, 0.4, 1030.0]]
    await actor.settle("acme", reservation, 0.25)
    assert checkpoint.spent("acme") == pytest.approx(0.25) and checkpoint.writes == 2
    await actor.standing("acme")
    await actor.take("acme")
    assert checkpoint.writes == 2  # reads and rate-limit takes write nothing


class SlowCheckpoint(MemoryCheckpoint):
    """Each write waits until the test lets it finish."""

    def __init__(self):
        super().__init__()
        self.proceed = asyncio.Event()

    async def save(self, value: bytes) -> None:
        await self.proceed.wait()
        await super().save(value)


async def test_changes_made_during_a_write_share_the_next_one_and_none_returns_unwritten():
    checkpoint = SlowCheckpoint()
    actor = LedgerActor("app", TERMS, checkpoint, Clock())
    calls = [asyncio.create_task(actor.reserve("acme", 0.05, lease_s=30.0)) for _ in range(10)]
    await asyncio.sleep(0)  # all ten reserved; the first write waits, the others wait for it
    assert not any(call.done() for call in calls) and checkpoint.writes == 0
    checkpoint.proceed.set()
    reservations = await asyncio.gather(*calls)
    assert checkpoint.writes == 2  # the first call's write, then one for the nine behind it
    stored = {r for r, _, _ in json.loads(checkpoint.value)["tenants"]["acme"]["open"]}
    assert stored == set(reservations)


async def test_a_restarted_actor_recovers_spend_and_open_reservations_from_its_checkpoint():
    checkpoint, clock = MemoryCheckpoint(), Clock()
    first = LedgerActor("app", TERMS, checkpoint, clock)
    await first.settle("acme", await first.reserve("acme", 0.3, lease_s=30.0), 0.3)
    still_open = await first.reserve("acme", 0.5, lease_s=30.0)
    assert not await first.take("trial") and not await first.take("trial")  # trial's burst of 2 is used up...
    await first.settle("trial", await first.reserve("trial", 0.1, lease_s=30.0), 0.1)  # ...saved with this write
    second = LedgerActor("app", TERMS, checkpoint, clock)  # the restart: same args, same key
    assert (await second.standing("acme")).remaining == pytest.approx(0.2)
    with pytest.raises(ResourceExhausted, match="tenant 'acme' has 0.2 credits left of 1"):
        await second.reserve("acme", 0.3, lease_s=30.0)
    assert (await second.settle("acme", still_open, 0.1)).remaining == pytest.approx(0.6)
    assert await second.take("trial") > 0  # the bucket came back empty, not full
    assert await second.reserve("acme", 0.1, lease_s=30.0) != still_open  # reservation ids do not repeat


def test_a_reservation_never_settled_is_charged_in_full_when_its_lease_runs_out():
    clock = Clock()
    book = Book(TERMS, clock)
    lost = book.reserve("acme", 0.4, lease_s=30.0)  # its router dies
    clock.now += 29.0
    assert book.standing("acme").remaining == pytest.approx(0.6)
    clock.now += 1.0
    assert book.standing("acme").remaining == pytest.approx(0.6)
    assert book.state()["tenants"]["acme"]["spent"] == pytest.approx(0.4)  # spent now, not held
    late = book.settle("acme", lost, 0.1)  # a settle after all: refunds the difference
    assert (late.charged, late.remaining) == (pytest.approx(0.1), pytest.approx(0.9))
    assert book.settle("acme", lost, 0.1).charged == 0.0  # a repeated settle charges nothing


def test_spend_resets_when_the_window_ends_but_open_reservations_still_count():
    clock = Clock()
    book = Book(TERMS, clock)
    book.settle("acme", book.reserve("acme", 0.5, lease_s=600.0), 0.5)
    held = book.reserve("acme", 0.3, lease_s=600.0)
    clock.now += 60.0
    assert book.standing("acme").remaining == pytest.approx(0.7)
    assert book.settle("acme", held, 0.3).remaining == pytest.approx(0.7)


def test_new_terms_keep_the_spend_and_take_the_new_budget():
    clock = Clock()
    book = Book(TERMS, clock)
    book.settle("acme", book.reserve("acme", 0.5, lease_s=30.0), 0.5)
    book.retune(Terms({"acme": (2.0, 60.0), "new": (1.0, 60.0)}))
    assert book.standing("acme").remaining == pytest.approx(1.5)
    assert book.standing("new").remaining == pytest.approx(1.0)
    with pytest.raises(InvalidArgument, match="tenant 'trial' has no budget in this ledger; tenants: acme, new"):
        book.standing("trial")
    assert book.take("anyone") == 0.0  # no rate limit in the new terms


async def test_a_restart_takes_the_newest_terms_from_the_checkpoint():
    checkpoint = MemoryCheckpoint()
    await LedgerActor("app", TERMS, checkpoint, Clock()).retune(Terms({"acme": (3.0, 60.0)}))
    restarted = LedgerActor("app", TERMS, checkpoint, Clock())  # Ray passes the creation-time terms again
    assert (await restarted.standing("acme")).remaining == pytest.approx(3.0)
